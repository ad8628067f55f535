"""The run folder: atomic JSON writes, result entries, refusal to overwrite."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .errors import UserError


def prepare_run_dir(path: str | os.PathLike | None, force: bool, prefix: str) -> Path:
    """Create the output folder. An existing non-empty folder is refused unless ``force``; even then
    nothing is deleted (files of the same name are replaced as the new run writes them)."""
    if path is None:
        path = Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while path.exists():
            n += 1
            path = Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output {str(path)!r} exists and is not a folder")
    if path.exists() and any(path.iterdir()) and not force:
        raise UserError(f"output folder {str(path)!r} already exists and is not empty; "
                        f"choose another --out or pass --force to write into it")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {str(path)!r}: {exc.strerror}") from None
    return path


def _clean(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data) -> None:
    """Write JSON atomically: temporary file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(_clean(data), fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def append_jsonl(path: str | os.PathLike, data) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(_clean(data), separators=(",", ":")) + "\n")


def read_json(path: str | os.PathLike, what: str):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {str(path)!r} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None


def result_entry(search, individual) -> dict:
    """One hall-of-fame / Pareto-front entry: bits, decoded architecture, all objectives, born."""
    record = search.record_for(individual)
    return {"key": record["key"], "bits": list(map(int, individual)), "architecture": record["architecture"],
            "summary": search.spec.decode(individual).summary(),
            "fitness": list(individual.fitness.values), "objectives": record["objectives"],
            "metrics": record["metrics"], "parameters": record["parameters"],
            "iterations": record["iterations"], "fit_seconds": record["seconds"],
            "generation_born": getattr(individual, "born", record.get("generation", 0))}
