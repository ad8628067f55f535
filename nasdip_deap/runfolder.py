"""The run folder: one writer at a time, atomic JSON writes, result entries, refusal to overwrite."""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import socket
import time
from pathlib import Path

from .errors import UserError

LOCK_NAME = "nasdip.lock"
log = logging.getLogger("nasdip")


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """One writer per run folder: ``nasdip.lock`` holds the owner's host and pid under an exclusive
    ``flock`` for the whole run (the kernel drops it when the owner dies, however it dies). A second
    writer is refused with one line naming the owner; a lock left by a dead process of this host is
    taken over with a warning; one naming another host is refused (its liveness cannot be checked
    here). Readers (``nasdip report``) do not take it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def _owner(self, fd: int) -> tuple[str, int] | None:
        os.lseek(fd, 0, os.SEEK_SET)
        parts = os.read(fd, 256).decode(errors="replace").split()
        if len(parts) >= 2 and parts[1].isdigit():
            return parts[0], int(parts[1])
        return None

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot write to the run folder {str(self.path.parent)!r}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = self._owner(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise UserError(f"cannot lock the run folder {str(self.path.parent)!r}: {exc.strerror}") from None
            who = f"host {owner[0]}, pid {owner[1]}" if owner else "another process"
            raise UserError(f"the run folder {str(self.path.parent)!r} is being written by another nasdip run "
                            f"({who}); wait for it to end or choose another --out") from None
        owner, host = self._owner(fd), socket.gethostname()
        if owner and owner[0] != host:
            os.close(fd)
            raise UserError(f"the run folder {str(self.path.parent)!r} is locked by host {owner[0]} (pid "
                            f"{owner[1]}); if that run has ended, delete {str(self.path)!r}")
        if owner and owner[1] != os.getpid():
            state = "still running but not holding it" if _alive(owner[1]) else "no longer running"
            log.warning("taking over the lock of %s: its owner (pid %d) is %s", self.path.parent, owner[1], state)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{host} {os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # a clean end leaves no owner behind
        finally:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


# what a search writes, besides cache.jsonl (kept on purpose: a run repeated into its folder reuses it)
RUN_FILES = ("config.json", "degraded.png", "clean.png", "best.json", "checkpoint.pkl", "logbook.json",
             "hall_of_fame.json", "pareto_front.json", "evaluations.jsonl", "errors.jsonl", "restored.png",
             "baseline.png", "report.html", "summary.json")


def clear_previous_run(run_dir: Path) -> list[str]:
    """Remove the files an earlier run left in a folder a new run is forced into (``--force``), so that
    the folder never mixes two runs; the evaluation cache and files of other programs stay."""
    removed = []
    for name in RUN_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    return removed


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
    return {"key": record["key"], "bits": list(map(int, individual)), "spec": search.spec.to_dict(),
            "architecture": record["architecture"],
            "summary": search.spec.decode(individual).summary(),
            "fitness": list(individual.fitness.values), "objectives": record["objectives"],
            "metrics": record["metrics"], "parameters": record["parameters"],
            "iterations": record["iterations"], "fit_seconds": record["seconds"],
            "generation_born": getattr(individual, "born", record.get("generation", 0))}
