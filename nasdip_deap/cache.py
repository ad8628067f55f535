"""The persistent evaluation cache of a run: ``cache.jsonl``.

``CacheFile`` appends one line per fitted architecture: the evaluation record plus the evaluator's
context (task, image, fitness settings, proxy, genome spec, device type, threads and engine options).
A later run with the same context, resumed, repeated with ``--force`` into the same folder or given
the file with ``--cache``, takes its scores from there instead of training the architecture again.
Fits that failed for a reason outside the architecture (out of memory, a time limit, a lost worker)
are never written, and are skipped in files of older versions, so a later run fits them again.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .engine import resolve_device
from .errors import UserError
from .fitness import MACHINE, record_failure
from .runfolder import append_jsonl

log = logging.getLogger("nasdip")

CACHE_NAME = "cache.jsonl"


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


def _usable(record: dict, evaluator, legacy: str | None) -> bool:
    """An entry scored in this run's context: the same context key, or (files of older versions, whose
    key did not name the device) the older key with the same device type and thread count."""
    if record.get("context") == evaluator.context:
        return True
    if legacy is None or record.get("context") != legacy:
        return False
    device = str(record.get("device") or "cpu").split(":")[0]
    return device == resolve_device(evaluator.runner.device).type and record.get("threads") == evaluator.runner.threads


def load_cache_file(path: str | os.PathLike, evaluator, what: str = "evaluation cache") -> dict:
    """``{cache_key: record}`` for the lines of ``path`` scored in ``evaluator``'s context (same task,
    image, fitness settings, proxy, genome spec and way of fitting). Unreadable lines (a kill
    mid-append) and failures of the machine (older files kept them) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r} does not exist or is not a file")
    entries, bad, other = {}, 0, 0
    legacy = evaluator.legacy_context()
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
        elif not _usable(record, evaluator, legacy):
            other += 1
        elif record_failure(record) == MACHINE:
            continue
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
        if record_failure(record) != MACHINE:  # a machine's failure is not the architecture's score
            append_records(self.path, self.context, [record])


def read_cache_files(files, evaluator) -> dict:
    """The entries of ``--cache`` files that fit this run (checked before anything is written)."""
    entries: dict = {}
    for name in files or ():
        for key, record in load_cache_file(name, evaluator, "--cache file").items():
            entries.setdefault(key, record)
    return entries


def preload_cache(search, run_dir: Path | None, imported: dict, resuming: bool = False) -> int:
    """Fill ``search.cache`` from the run folder's ``cache.jsonl`` (when there is a run folder) and from
    ``imported`` entries (of ``--cache`` files); entries already in the cache win. Imported entries are
    appended to this run's ``cache.jsonl`` so the folder stays self-contained. When ``resuming``, the
    folder's own entries that the checkpoint does not hold were fitted by this run before it stopped: they
    are charged as fits when the search reaches them again (``search.uncharged``), so the compute totals
    match an uninterrupted run's. Returns the number of entries added."""
    own: dict = {}
    if run_dir is not None:
        own_path = Path(run_dir) / CACHE_NAME
        repair_jsonl_tail(own_path)
        own = load_cache_file(own_path, search.evaluator) if own_path.exists() else {}
    new = {key: record for key, record in imported.items() if key not in own}
    if new and run_dir is not None:
        append_records(own_path, search.evaluator.context, new.values())
    added = 0
    for key, record in {**new, **own}.items():
        if key not in search.cache:
            search.cache[key] = record
            added += 1
            if resuming and key in own:
                search.uncharged.add(key)
    if added:
        log.info("evaluation cache: %d scored architecture(s) loaded; they will not be trained again", added)
    return added
