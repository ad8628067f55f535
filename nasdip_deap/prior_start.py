"""A first population ranked by what earlier runs learned: draw many random genomes, fit only those a model
of earlier runs' records ranks best.

The random start of the paper fits architectures that nobody looked at; many of them are poor for any image
(too few channels, a learning rate that diverges). Which architectures fit well transfers across images and
even across tasks: a forest over ``predictor.architecture_features`` trained on the 32 px recorded tables of
two problems ranks the random architectures of the third (benchmarks/prior_transfer.py; the figures are in
docs/results.md). ``PriorStart`` draws ``pool`` random genomes per slot of the first
population and keeps the best-ranked, plus a share ``EXPLORE`` drawn from the pool at random, so that the
start never rests on the prior's opinion alone. Classical DIP keeps its seeded slot.

The records are those of ``evaluations.jsonl`` or ``cache.jsonl`` files of earlier runs, or of the recorded
tables of ``benchmarks/recorded`` (``.jsonl.gz``). Blind fitness has a different scale on every image, so
each file's quality is standardised (z-score) before they are pooled: the model learns a ranking.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import random
from pathlib import Path

import numpy as np

from .architecture import Architecture
from .errors import UserError

EXPLORE = 0.2  # the share of the prior-ranked slots drawn from the pool at random instead
MIN_RECORDS = 8  # fewer usable records than this in all files: the prior cannot rank, one line says so
# The start's forest, trained by every default search: 30 trees, each split looking at a third of the features,
# ranked the recorded problems about as well as 100 trees over all features, in far less time (docs/results.md)
TREES = 30
FEATURES = 0.33
# ``--init-prior recorded``: the fits of benchmarks/recorded (3 x 1,000 fits of 32 px problems: denoising chelsea,
# inpainting coffee, 2x super-resolution of astronaut), genome and blind fitness alone, shipped in the package
RECORDED = "recorded"
RECORDED_SPEC = {"levels": 5, "evolve_iterations": False}  # the genome spec those tables were fitted with


def recorded_paths() -> tuple[str, ...]:
    """The files of the built-in prior (one per recorded problem, each standardised on its own)."""
    return tuple(str(p) for p in sorted((Path(__file__).parent / "priors").glob("*.jsonl.gz")))


def resolve(paths) -> tuple[str, ...]:
    """``paths`` with the name ``recorded`` replaced by the built-in prior's files."""
    out: list[str] = []
    for path in paths:
        out += recorded_paths() if path == RECORDED else [path]
    return tuple(out)


def read_records(path: str, what: str = "--init-prior") -> list[dict]:
    """The dict lines of a JSON-lines file (gzip when it ends in ``.gz``); unreadable lines are skipped.
    ``what`` names the setting in the error line of an unreadable file."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", errors="replace") as fh:
                lines = fh.read().splitlines()
        else:
            lines = Path(path).read_text(errors="replace").splitlines()
    except (OSError, EOFError) as exc:
        raise UserError(f"{what} {path!r}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def architecture_and_quality(record: dict, spec) -> tuple[Architecture, float] | None:
    """(architecture, quality) of a finished record of a run (``architecture``, ``objectives``) or of a recorded
    table (``bits`` of ``spec``'s length, ``fitness``), or None when it has neither or failed."""
    if record.get("error") is not None:
        return None
    quality = (record.get("objectives") or {}).get("quality")
    if quality is None and isinstance(record.get("fitness"), list) and record["fitness"]:
        quality = record["fitness"][0]
    if not isinstance(quality, (int, float)) or not math.isfinite(quality):
        return None
    try:
        if isinstance(record.get("architecture"), dict):
            arch = Architecture.from_dict(record["architecture"])
        elif isinstance(record.get("bits"), (list, str)) and len(record["bits"]) == spec.length:
            bits = [int(b) for b in record["bits"]]  # a list of 0/1, or a string of them (the built-in prior)
            arch = spec.decode(bits)
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    if len(arch.encoders) != spec.levels:
        return None
    return arch, float(quality)


_ROWS: dict = {}  # training rows by (files and their mtimes, genome spec): see PriorStart.training_rows


class PriorStart:
    """Chooses the first population's random slots by a model of earlier runs' records (``paths``)."""

    def __init__(self, paths, spec, pool: int = 20, model: str = "forest", trees: int = TREES,
                 features: float = FEATURES):
        self.paths = resolve(paths)
        self.pool, self.model, self.trees, self.features = pool, model, trees, features
        self.X, self.y = self.training_rows(spec)  # read now: a file without usable records fails before any fit

    def training_rows(self, spec) -> tuple[np.ndarray, np.ndarray]:
        """Features and per-file standardised quality of every usable record of ``paths`` (genomes of ``spec``),
        read once per process and set of files (a process may build several searches on the same prior)."""
        stamp = tuple((p, os.stat(p).st_mtime_ns) if os.path.exists(p) else (p, None) for p in self.paths)
        key = (stamp, spec.levels, spec.evolve_iterations)
        if key not in _ROWS:
            _ROWS[key] = self._read_rows(spec)
        X, y = _ROWS[key]
        return X.copy(), y.copy()

    def _read_rows(self, spec) -> tuple[np.ndarray, np.ndarray]:
        from .predictor import architecture_features

        X, y = [], []
        for path in self.paths:
            rows = [row for row in (architecture_and_quality(r, spec) for r in read_records(path)) if row]
            if len(rows) < 2:
                continue
            quality = np.array([q for _, q in rows])
            spread = quality.std() or 1.0
            X += [architecture_features(arch, spec.levels) for arch, _ in rows]
            y += list((quality - quality.mean()) / spread)
        if len(y) < MIN_RECORDS:
            raise UserError(f"--init-prior: {len(y)} usable records of a {spec.levels}-level genome in "
                            f"{', '.join(self.paths)}; the prior needs at least {MIN_RECORDS}")
        return np.array(X), np.array(y)

    def choose(self, candidates: list, k: int, spec) -> list:
        """``k`` of ``candidates`` (random genomes): the best-ranked by the prior, and a share ``EXPLORE`` at random.
        Draws from ``random`` alone, so a seeded run chooses the same start."""
        from .predictor import RecordModel, architecture_features

        if k <= 0 or len(candidates) <= k:
            return list(candidates[:k])
        model = RecordModel(self.model, self.trees, random.randrange(2 ** 31), self.features)
        model.fit(self.X, self.y[:, None])
        mean, _ = model.predict(np.array([architecture_features(spec.decode(c), spec.levels) for c in candidates]))
        explore = int(round(EXPLORE * k)) if k > 1 else 0
        ranked = sorted(range(len(candidates)), key=lambda i: (-mean[i, 0], i))
        best = ranked[:k - explore]
        extra = random.sample(ranked[k - explore:], explore)
        return [candidates[i] for i in best + extra]
