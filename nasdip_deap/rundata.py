"""The run folder as data, for the report: config, logbook, hall of fame or Pareto front, best.json,
evaluations, and what they say about compute, settings and classical DIP.

It reads only the folder's JSON files and pictures, so it works on a finished run, on a run still in
progress (before best.json exists) and on a copy of a run folder on another machine.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .genome import classical_dip
from .runfolder import read_json


def _optional_json(path: Path):
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    """The readable lines of a JSON-lines file (a kill mid-append can leave a broken last line)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class Run:
    """What the report needs from a run folder; missing optional files become None or []."""

    def __init__(self, run_dir: Path):
        if not run_dir.is_dir():
            raise UserError(f"{str(run_dir)!r} is not a run folder (no such folder)")
        if not (run_dir / "config.json").exists():
            raise UserError(f"{str(run_dir)!r} is not a search run folder: it has no config.json")
        self.dir = run_dir
        self.config = read_json(run_dir / "config.json", "run settings")
        if not isinstance(self.config, dict) or self.config.get("command") != "search":
            raise UserError(f"{str(run_dir / 'config.json')!r} is not the config of a `nasdip search` run")
        logbook = _optional_json(run_dir / "logbook.json")
        self.logbook = [row for row in logbook if isinstance(row, dict)] if isinstance(logbook, list) else []
        self.multi_objective = (run_dir / "pareto_front.json").exists()
        archive = _optional_json(run_dir / ("pareto_front.json" if self.multi_objective else "hall_of_fame.json"))
        self.archive = [e for e in archive if isinstance(e, dict)] if isinstance(archive, list) else []
        best_path = run_dir / "best.json"
        best = read_json(best_path, "the run's result") if best_path.exists() else None
        if best is not None and not isinstance(best, dict):
            raise UserError(f"{str(best_path)!r} is damaged: it is not a run's result")
        self.best = best
        self.evaluations = _jsonl(run_dir / "evaluations.jsonl")
        fitness = self.config.get("fitness", {}).get("settings", {})
        self.mode = fitness.get("mode", "reference")
        self.objectives = list(fitness.get("objectives", ["quality"]))
        self.arguments = self.config.get("arguments") or {}

    @property
    def name(self) -> str:
        return self.dir.resolve().name

    @property
    def quality_label(self) -> str:
        return "held-out PSNR (dB, blind)" if self.mode == "blind" else "PSNR vs ground truth (dB)"

    def best_entry(self) -> dict | None:
        if self.best is not None:
            return self.best
        return max(self.archive, key=lambda e: e["fitness"][0]) if self.archive else None

    def picture(self, name: str) -> Path | None:
        path = self.dir / name
        return path if path.exists() else None


def classical_record(run: Run) -> dict | None:
    """Classical DIP's search fit in evaluations.jsonl (individual 0 of the first population)."""
    levels = (run.config.get("spec") or {}).get("levels", 5)
    classical = json.loads(classical_dip(levels).to_json())  # lists, as in the JSON records
    for e in run.evaluations:
        arch = dict(e.get("architecture") or {})
        if arch.get("iterations_fraction") == 1.0:  # a spec that evolves T encodes classical DIP with 1.0
            arch["iterations_fraction"] = None
        if arch == classical and e.get("error") is None:
            return e
    return None


def baseline_of(run: Run) -> dict | None:
    """Classical DIP's result: from best.json, or (unfinished runs) its search fit in evaluations.jsonl."""
    if run.best is not None:
        return run.best.get("baseline")
    e = classical_record(run)
    if e is None:
        return None
    return {"label": "classical DIP", "source": "search fit", "picture": None, "iterations": e.get("iterations"),
            "fitness": e.get("fitness"), **(e.get("metrics") or {})}


