"""Checkpoints of a search run.

``checkpoint.pkl`` (written by ``CheckpointHook`` after every generation) holds everything needed to
continue: population, hall of fame or Pareto front, logbook, evaluation cache, generation, compute
totals, the algorithm's own state (``state_dict()``), the RNG states (Python, numpy, torch) and the
run's saved settings. It is written
atomically (temporary file, fsync, rename), so a kill at any moment leaves the previous one intact.

Checkpoints are this program's own pickles. Unpickling runs code named in the file: never load a
checkpoint from an untrusted source. (The checksum in the header catches damage, not tampering.)
Genomes and results stay JSON.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle
import random
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from . import deap_types  # noqa: F401  # creator classes must exist before a checkpoint is unpickled
from .errors import UserError

log = logging.getLogger("nasdip")

CHECKPOINT_NAME = "checkpoint.pkl"
MAGIC = b"NASDIP-CHECKPOINT 1\n"
# 2 adds the algorithm's state; a format-1 checkpoint loads as one of a stateless algorithm (every
# algorithm of version 0.2 was), so runs interrupted before the upgrade still resume
FORMAT = 2
READABLE_FORMATS = (1, 2)
STATE_KEYS = ("generation", "population", "archive", "logbook", "cache", "totals", "rng", "settings", "context")


# -- checkpoint state -----------------------------------------------------------------------------
def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state().numpy().copy()}
    if torch.cuda.is_available():
        states["cuda"] = [s.numpy().copy() for s in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(torch.from_numpy(np.asarray(states["torch"], dtype=np.uint8)))
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.from_numpy(np.asarray(s, dtype=np.uint8)) for s in cuda])


def capture(search, settings: dict) -> dict:
    """Everything needed to continue ``search`` after its current generation."""
    return {"format": FORMAT, "nasdip_deap": __version__, "written": time.time(),
            "generation": search.generation, "population": search.population, "archive": search.archive,
            "logbook": search.logbook, "cache": search.cache, "totals": dataclasses.asdict(search.totals),
            "replicates": search.replicates, "failed": search.failed, "seen": search.seen,
            "fit_outputs": search.fit_outputs.entries, "algorithm": search.algorithm.state_dict(),
            "rng": rng_states(),
            "settings": settings,
            "context": search.evaluator.context}


def restore(search, state: dict, rng: bool = True) -> None:
    """Put a captured state back into a freshly built ``search`` and (unless ``rng`` is False; then
    call ``set_rng_states`` just before ``search.run()``) the global RNGs, so that ``search.run()``
    continues with the next generation exactly as the interrupted run would have."""
    from .loop import Compute

    search.population = state["population"]
    search.archive = state["archive"]
    search.logbook = state["logbook"]
    search.cache = dict(state["cache"])
    search.generation = state["generation"]
    search.totals = Compute(**state["totals"])
    search.replicates = dict(state.get("replicates", {}))
    search.failed = dict(state.get("failed", {}))
    search.seen = set(state.get("seen", search.cache))
    for key, (quality, output) in state.get("fit_outputs", {}).items():
        search.fit_outputs.offer(key, quality, output)
    search.algorithm.load_state_dict(state.get("algorithm") or {})
    if rng:
        set_rng_states(state["rng"])


# -- atomic file -----------------------------------------------------------------------------------
def write_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Pickle ``state`` to ``path`` atomically: header + SHA-256 + pickle into a temporary file in the
    same folder, fsync, rename over the old checkpoint, fsync the folder."""
    path = Path(path)
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = temporary_path(path)
    with open(tmp, "wb") as fh:
        fh.write(MAGIC)
        fh.write(hashlib.sha256(payload).hexdigest().encode() + b"\n")
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by ``write_checkpoint``; any problem is a one-line ``UserError``.

    Only for this program's own checkpoints: unpickling an untrusted file can run arbitrary code.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise UserError(f"cannot resume: no checkpoint {where!r}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot resume: cannot read checkpoint {where!r}: {exc.strerror}") from None
    header_end = len(MAGIC) + 65
    if not data.startswith(MAGIC) or len(data) < header_end or data[header_end - 1:header_end] != b"\n":
        raise UserError(f"cannot resume: {where!r} is not a nasdip checkpoint (bad header); "
                        f"the run folder was left as it is")
    digest, payload = data[len(MAGIC):header_end - 1].decode("ascii", "replace"), data[header_end:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise UserError(f"cannot resume: checkpoint {where!r} is damaged (checksum mismatch, "
                        f"{len(payload)} bytes of data); the run folder was left as it is")
    try:
        state = pickle.loads(payload)
    except Exception as exc:  # a damaged or foreign pickle can raise nearly anything
        message = " ".join(str(exc).split())[:200]
        raise UserError(f"cannot resume: checkpoint {where!r} cannot be read ({type(exc).__name__}: "
                        f"{message}); the run folder was left as it is") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS or \
            any(k not in state for k in STATE_KEYS):
        raise UserError(f"cannot resume: {where!r} is not a checkpoint of this nasdip version "
                        f"(format {state.get('format') if isinstance(state, dict) else '?'}, expected {FORMAT})")
    return state


class CheckpointHook:
    """Hook: write ``checkpoint.pkl`` after every generation (after the results files)."""

    def __init__(self, run_dir: str | os.PathLike, settings: dict):
        self.path = Path(run_dir) / CHECKPOINT_NAME
        self.settings = settings

    def on_finalists(self, search):
        self.on_generation(search)  # the re-fits of the finalists survive an interruption too

    def on_generation(self, search):
        started = time.perf_counter()
        write_checkpoint(self.path, capture(search, self.settings))
        log.debug("checkpoint: generation %d written to %s in %.2fs", search.generation, self.path,
                  time.perf_counter() - started)


