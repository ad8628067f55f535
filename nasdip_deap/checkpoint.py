"""Checkpoints and the persistent evaluation cache of a search run.

``checkpoint.pkl`` (written by ``CheckpointHook`` after every generation) holds everything needed to
continue: population, hall of fame or Pareto front, logbook, evaluation cache, generation, compute
totals, the RNG states (Python, numpy, torch) and the run's saved settings. It is written
atomically (temporary file, fsync, rename), so a kill at any moment leaves the previous one intact.

Checkpoints are this program's own pickles. Unpickling runs code named in the file: never load a
checkpoint from an untrusted source. (The checksum in the header catches damage, not tampering.)
Genomes and results stay JSON.

``cache.jsonl`` (written by ``CacheFile``) has one line per fitted architecture: the evaluation
record plus the evaluator's context hash (task, image, fitness settings, genome spec). A later run
with the same context, resumed, repeated with ``--force`` into the same folder or given the file with
``--cache``, takes its scores from there instead of training the architecture again.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import pickle
import random
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from . import deap_types  # noqa: F401  (creator classes must exist before a checkpoint is unpickled)
from .errors import UserError
from .runfolder import append_jsonl, read_json, write_json

log = logging.getLogger("nasdip")

CHECKPOINT_NAME = "checkpoint.pkl"
CACHE_NAME = "cache.jsonl"
MAGIC = b"NASDIP-CHECKPOINT 1\n"
FORMAT = 1
STATE_KEYS = ("generation", "population", "archive", "logbook", "cache", "totals", "rng", "settings", "context")
# options that may be given again on --resume with a new value: they change how the run is shown or
# where it runs, or (generations) extend it, never what it computes
RUNTIME_OPTIONS = frozenset({"quiet", "verbose", "device", "generations", "cache", "resume", "force", "out",
                             "backend", "workers", "given_options"})
PATH_OPTIONS = ("image", "observed", "clean")


# -- saved settings -------------------------------------------------------------------------------
def saved_settings(args: argparse.Namespace, run_dir: Path) -> dict:
    """The parsed command line as JSON-able data, with file paths made absolute so that a resumed
    run finds its images from any working directory."""
    settings = {k: v for k, v in vars(args).items() if k not in ("resume", "given_options")}
    for name in PATH_OPTIONS:
        if settings.get(name):
            settings[name] = os.path.abspath(settings[name])
    if settings.get("cache"):
        settings["cache"] = [os.path.abspath(p) for p in settings["cache"]]
    settings["out"] = os.path.abspath(run_dir)
    return settings


def _flag(dest: str) -> str:
    return "--" + dest.rstrip("_").replace("_", "-")


def _same(name: str, given, saved) -> bool:
    if name in PATH_OPTIONS and given and saved:
        return os.path.abspath(given) == os.path.abspath(saved)
    return given == saved


def resume_arguments(args: argparse.Namespace) -> tuple[argparse.Namespace, dict]:
    """Load ``RUN_DIR/checkpoint.pkl`` and merge the run's saved settings with the command line.

    Options given explicitly (``args.given_options``; argparse defaults do not count) must equal the
    saved ones, except the run-time options (``--quiet``, ``--verbose``, ``--device``, ``--backend``,
    ``--workers``, ``--cache``, and ``--generations``, which may extend the run). Nothing is written.
    """
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UserError(f"cannot resume: {str(run_dir)!r} is not a run folder")
    state = read_checkpoint(run_dir / CHECKPOINT_NAME)
    saved = state["settings"]
    given = set(getattr(args, "given_options", ()) or ())
    conflicts = []
    for name in sorted(given - RUNTIME_OPTIONS - {"command"}):
        value = getattr(args, name, None)
        if name in saved and not _same(name, value, saved[name]):
            conflicts.append(f"{_flag(name)} {value!r} (the run used {saved[name]!r})")
    if "out" in given and args.out and os.path.abspath(args.out) != os.path.abspath(run_dir):
        conflicts.append(f"--out {args.out!r} (resuming writes into {str(run_dir)!r})")
    if conflicts:
        raise UserError(f"cannot resume {str(run_dir)!r}: conflicting option(s) {'; '.join(conflicts)}; "
                        f"leave them out to use the run's saved settings")
    merged = {**vars(args), **saved}
    for name in ("quiet", "verbose", "device", "generations", "backend", "workers"):
        if name in given:
            merged[name] = getattr(args, name)
    merged.update(cache=getattr(args, "cache", None), resume=str(run_dir), out=str(run_dir), force=True,
                  given_options=sorted(given))
    return argparse.Namespace(**merged), state


def check_context(state: dict, evaluator, run_dir: Path) -> None:
    """The rebuilt evaluator must score exactly as the checkpointed run did (same image, task, settings)."""
    if state["context"] != evaluator.context:
        raise UserError(f"cannot resume {str(run_dir)!r}: the image, task or fitness settings rebuilt from the "
                        f"saved settings differ from the run's (context {evaluator.context} != "
                        f"{state['context']}); was an input image changed?")


def record_resume(run_dir: Path, args: argparse.Namespace, state: dict) -> dict:
    """Note the resume in config.json (its generations and arguments follow an extended run, so the
    report agrees); returns the degraded image's metrics saved there. Reads before it writes."""
    config = read_json(run_dir / "config.json", "run settings")
    if not isinstance(config, dict):
        raise UserError(f"cannot resume: {str(run_dir / 'config.json')!r} is not a run's settings")
    config["generations"] = args.generations
    config["arguments"] = saved_settings(args, run_dir)
    config.setdefault("resumed", []).append({"after_generation": state["generation"],
                                             "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                             "options": list(getattr(args, "given_options", []))})
    write_json(run_dir / "config.json", config)
    return config.get("degraded") or {}


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
            "replicates": search.replicates, "rng": rng_states(), "settings": settings, "context": search.evaluator.context}


def restore(search, state: dict, rng: bool = True) -> None:
    """Put a captured state back into a freshly built ``search`` and (unless ``rng`` is False; then
    call ``set_rng_states`` just before ``search.run()``) the global RNGs, so that ``search.run()``
    continues with the next generation exactly as the interrupted run would have."""
    from .search import Compute

    search.population = state["population"]
    search.archive = state["archive"]
    search.logbook = state["logbook"]
    search.cache = dict(state["cache"])
    search.generation = state["generation"]
    search.totals = Compute(**state["totals"])
    search.replicates = dict(state.get("replicates", {}))
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
        raise UserError(f"cannot resume: no checkpoint {where!r} (the run stopped before its first generation "
                        f"finished; start it again with --force --out {str(path.parent)!r}, which reuses its "
                        f"cached evaluations)")
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
    if not isinstance(state, dict) or state.get("format") != FORMAT or any(k not in state for k in STATE_KEYS):
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


# -- evaluation cache file ------------------------------------------------------------------------
def repair_jsonl_tail(path: str | os.PathLike) -> None:
    """Cut a half-written last line (left by a kill during an append) so that appends stay valid."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)


def append_records(path: str | os.PathLike, context: str, records) -> None:
    """Append evaluation records, each a JSON line tagged with the evaluator's ``context``."""
    for record in records:
        append_jsonl(path, {"context": context, **record})


def load_cache_file(path: str | os.PathLike, evaluator, what: str = "evaluation cache") -> dict:
    """``{cache_key: record}`` for the lines of ``path`` whose context matches ``evaluator`` (same task,
    image, fitness settings and genome spec). Unreadable lines (a kill mid-append) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r} does not exist or is not a file")
    entries, bad, other = {}, 0, 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    for line in lines:
        try:
            record = json.loads(line)
            usable = isinstance(record, dict) and isinstance(record.get("key"), str) and \
                all(isinstance(v, (int, float)) for v in record.get("fitness") or [None])
        except json.JSONDecodeError:
            usable = False
        if not usable:
            bad += 1
        elif record.get("context") != evaluator.context:
            other += 1
        else:
            record.pop("context")
            entries[evaluator.cache_key(record["key"])] = record
    if lines and not entries and not bad and other:
        log.warning("%s %s: none of its %d entries match this run's task, image and fitness settings",
                    what, path, other)
    if bad:
        log.warning("%s %s: skipped %d unreadable line(s)", what, path, bad)
    return entries


class CacheFile:
    """Hook: append every newly fitted architecture's record to ``cache.jsonl`` as it arrives."""

    def __init__(self, run_dir: str | os.PathLike, context: str):
        self.path = Path(run_dir) / CACHE_NAME
        self.context = context

    def on_evaluation(self, search, record):
        append_records(self.path, self.context, [record])


def read_cache_files(files, evaluator) -> dict:
    """The entries of ``--cache`` files that fit this run (checked before anything is written)."""
    entries: dict = {}
    for name in files or ():
        for key, record in load_cache_file(name, evaluator, "--cache file").items():
            entries.setdefault(key, record)
    return entries


def preload_cache(search, run_dir: Path, imported: dict) -> int:
    """Fill ``search.cache`` from the run folder's ``cache.jsonl`` and from ``imported`` entries (of
    ``--cache`` files); entries already in the cache win. Imported entries are appended to this run's
    ``cache.jsonl`` so the folder stays self-contained. Returns the number of entries added."""
    own_path = Path(run_dir) / CACHE_NAME
    repair_jsonl_tail(own_path)
    own = load_cache_file(own_path, search.evaluator) if own_path.exists() else {}
    new = {key: record for key, record in imported.items() if key not in own}
    if new:
        append_records(own_path, search.evaluator.context, new.values())
    added = 0
    for key, record in {**new, **own}.items():
        if key not in search.cache:
            search.cache[key] = record
            added += 1
    if added:
        log.info("evaluation cache: %d scored architecture(s) loaded; they will not be trained again", added)
    return added
