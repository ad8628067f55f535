"""Evaluation backends: where the DIP fits of a generation run. Each backend's ``map(fn, items)`` is
the toolbox's ``map``; it yields ``fn(item)`` for every item, in the items' order.

- ``serial``: in this process, one fit after another.
- ``processes``: persistent worker processes on this machine (spawn context, so CUDA is never
  inherited from the parent), one per GPU by default, or one per core on a CPU-only machine. A worker
  that dies mid-fit is replaced and its fit is sent again to a live worker (up to ``retries`` times;
  then the item gets the ``lost`` fallback, for the search a failed record with worst fitness). A fit
  that runs far past ``kill_after`` seconds has its worker killed and counts as failed.
- ``scoop``: SCOOP's ``futures.map`` over the workers of every host of ``python -m scoop``; SCOOP
  re-sends the futures of a worker it loses.

GPU placement and worker identity live in ``workers.py``.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import pickle
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator

from .errors import UserError
from .workers import count_gpus, die_with_parent, running_under_scoop, start_worker, usable_cores

log = logging.getLogger("nasdip")

BACKENDS = ("serial", "processes", "scoop")


def default_backend() -> str:
    return "scoop" if running_under_scoop() else "serial"


# -- backends -------------------------------------------------------------------------------------
class Backend:
    """A context manager: leaving the block normally closes the backend politely; leaving it by an
    exception (an interrupt, SIGTERM) stops its workers at once, so no fit outlives the run."""

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()


class SerialBackend(Backend):
    """Fits in this process, in order."""

    name = "serial"
    workers = 1

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        return map(fn, items)


def _call(fn: Callable, item):
    return fn(item)


class ScoopBackend(Backend):
    """SCOOP's ``futures.map``: the futures run on every worker of every host (the origin too)."""

    name = "scoop"

    def __init__(self):
        check_backend("scoop")
        import scoop

        self.workers = int(getattr(scoop, "SIZE", 1))

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        from scoop import futures

        # SCOOP treats a bound method (evaluator.record) as code to marshal and fails; a partial of
        # a module-level function is pickled like any object.
        return futures.map(functools.partial(_call, fn), list(items))

    def terminate(self) -> None:
        """Tell SCOOP's workers to stop (the origin's own exit would wait for their futures)."""
        try:
            from scoop import futures

            futures.shutdown(wait=False)
        except Exception:  # SCOOP already torn down
            pass


@dataclass(frozen=True)
class WorkerConfig:
    """What a ``processes`` worker needs to set itself up (picklable)."""

    worker_id: str
    slot: int
    threads: int | None
    gpu_count: int | None
    lock_dir: str | None


@dataclass
class _Slot:
    """The parent's view of one worker process."""

    slot: int
    process: object
    conn: object
    started: bool = False
    task: tuple | None = None  # (call id, item index)
    since: float = 0.0
    fn_token: int | None = None
    respawns: int = 0


class WorkerLost(RuntimeError):
    """A task whose workers kept dying (or ran past the kill limit) and no fallback was given."""


def _worker_main(conn, config: WorkerConfig, parent: int) -> None:
    """Body of a ``processes`` worker: set up, then run (token, fn, item) messages until told to stop."""
    if not die_with_parent(parent):  # the search is gone already
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if config.threads:  # so that workers sharing the cores do not oversubscribe them
        import torch

        torch.set_num_threads(config.threads)
    worker = start_worker(config.worker_id, config.gpu_count, config.lock_dir, prefer_gpu=config.slot)
    conn.send(("ready", worker.describe()))
    token, fn = None, None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if message is None:
            return
        call, index, fn_token, fn_bytes, item = message
        try:
            if fn_token != token:
                token, fn = fn_token, pickle.loads(fn_bytes)
            reply = ("done", call, index, True, fn(item))
        except Exception as exc:  # the caller decides what an exception means
            try:
                pickle.dumps(exc)
                payload = exc
            except Exception:
                payload = RuntimeError(f"{type(exc).__name__}: {exc}")
            reply = ("done", call, index, False, (payload, traceback.format_exc()))
        conn.send(reply)


class ProcessBackend(Backend):
    """Persistent spawn-context worker processes on this machine, restarted when they die."""

    name = "processes"

    def __init__(self, workers: int | None = None, threads: int | None = 1, gpu_count: int | None = None,
                 lock_dir: str | os.PathLike | None = None, retries: int = 2, kill_after: float | None = None,
                 lost: Callable[[object, str], object] | None = None, max_respawns: int = 20):
        self.gpu_count = count_gpus() if gpu_count is None else gpu_count
        if workers is None:
            workers = self.gpu_count or max(1, usable_cores() // max(1, threads or 1))
        if workers < 1:
            raise UserError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads
        self.lock_dir = None if lock_dir is None else str(lock_dir)
        self.retries = retries
        self.kill_after = kill_after
        self.lost = lost
        self.max_respawns = max_respawns
        self.respawned = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._calls = 0
        self._slots = [self._spawn(slot) for slot in range(workers)]
        self.worker_info: dict[int, dict] = {}

    # -- worker processes --
    def _spawn(self, slot: int, respawns: int = 0) -> _Slot:
        parent_end, child_end = self._ctx.Pipe()
        config = WorkerConfig(f"w{slot}", slot, self.threads, self.gpu_count, self.lock_dir)
        process = self._ctx.Process(target=_worker_main, args=(child_end, config, os.getpid()), daemon=True,
                                    name=f"nasdip-worker-{slot}")
        process.start()
        child_end.close()
        return _Slot(slot, process, parent_end, respawns=respawns)

    def _replace(self, dead: _Slot, why: str) -> None:
        if not dead.started:
            self.close()
            raise RuntimeError(f"evaluation worker w{dead.slot} failed to start ({why})")
        self.respawned += 1
        if self.respawned > self.max_respawns:
            self.close()
            raise RuntimeError(f"evaluation workers died {self.respawned} times; giving up ({why})")
        with contextlib.suppress(OSError):
            dead.conn.close()
        dead.process.join(timeout=5)
        self._slots[dead.slot] = self._spawn(dead.slot, dead.respawns + 1)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots]

    # -- map --
    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """Yields ``fn(item)`` in order as results come in (so progress hooks stay live)."""
        items = list(items)
        self._calls += 1
        return self._run(self._calls, pickle.dumps(fn), items)

    def _run(self, call: int, fn_bytes: bytes, items: list) -> Iterator:
        pending = deque(range(len(items)))
        attempts = [0] * len(items)
        results: dict[int, object] = {}
        next_out = 0
        while next_out < len(items):
            self._dispatch(call, fn_bytes, items, pending)
            self._collect(call, items, pending, attempts, results)
            while next_out in results:
                yield results.pop(next_out)
                next_out += 1

    def _dispatch(self, call: int, fn_bytes: bytes, items: list, pending: deque) -> None:
        for slot in self._slots:
            if not pending:
                return
            if slot.task is None and slot.process.is_alive():
                index = pending.popleft()
                send_fn = fn_bytes if slot.fn_token != call else None
                try:
                    slot.conn.send((call, index, call, send_fn, items[index]))
                except (BrokenPipeError, OSError):
                    pending.appendleft(index)  # the death is noticed by _collect
                    continue
                slot.fn_token = call
                slot.task = (call, index)
                slot.since = time.monotonic()

    def _collect(self, call: int, items: list, pending: deque, attempts: list, results: dict) -> None:
        waitables = [s.conn for s in self._slots] + [s.process.sentinel for s in self._slots]
        ready = set(wait(waitables, timeout=1.0))
        for slot in list(self._slots):
            if slot.conn in ready or slot.process.sentinel in ready:
                self._drain(slot, call, results)
            if not slot.process.is_alive():
                self._on_death(slot, call, items, pending, attempts, results)
            elif self.kill_after is not None and slot.started and slot.task is not None and slot.task[0] == call \
                    and time.monotonic() - slot.since > self.kill_after:
                index = slot.task[1]
                log.warning("fit %d ran past %.0fs on worker w%d (pid %d): killing the worker",
                            index, self.kill_after, slot.slot, slot.process.pid)
                slot.task = None
                slot.process.kill()
                slot.process.join(timeout=5)
                results[index] = self._give_up(items[index], f"timed out: no result after {self.kill_after:.0f}s "
                                                             f"(worker killed)")
                self._replace(slot, "killed after the time limit")

    def _drain(self, slot: _Slot, call: int, results: dict) -> None:
        """Read every message the worker has sent."""
        try:
            while slot.conn.poll():
                message = slot.conn.recv()
                if message[0] == "ready":
                    slot.started = True
                    slot.since = time.monotonic()  # the time limit counts from a started worker
                    self.worker_info[slot.slot] = message[1]
                    continue
                _, msg_call, index, ok, value = message
                slot.task = None
                if msg_call != call:
                    continue  # a result of an abandoned earlier map
                if not ok:
                    exc, text = value
                    raise exc from RuntimeError(f"in worker w{slot.slot}:\n{text}")
                results[index] = value
        except (EOFError, OSError):
            pass  # the worker died; _collect sees it

    def _on_death(self, slot: _Slot, call: int, items: list, pending: deque, attempts: list,
                  results: dict) -> None:
        code = slot.process.exitcode
        if slot.task is not None and slot.task[0] == call:
            index = slot.task[1]
            attempts[index] += 1
            if attempts[index] > self.retries:
                results[index] = self._give_up(items[index], f"worker died {attempts[index]} times "
                                                             f"(last exit code {code})")
            else:
                log.warning("worker w%d (pid %d) died (exit code %s) during a fit: sending it to another "
                            "worker", slot.slot, slot.process.pid, code)
                pending.appendleft(index)
        slot.task = None
        self._replace(slot, f"exit code {code}")

    def _give_up(self, item, reason: str):
        if self.lost is None:
            raise WorkerLost(reason)
        log.warning("giving up on a fit: %s", reason)
        return self.lost(item, reason)

    def terminate(self) -> None:
        """Stop every worker now (SIGTERM, then SIGKILL) and wait for them: an interrupted run."""
        for slot in self._slots:
            with contextlib.suppress(OSError, ValueError):
                slot.process.terminate()
        deadline = time.monotonic() + 5
        for slot in self._slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            with contextlib.suppress(OSError):
                slot.conn.close()

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        for slot in self._slots:
            with contextlib.suppress(OSError, ValueError):
                slot.conn.send(None)
        deadline = time.monotonic() + 5
        for slot in self._slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            with contextlib.suppress(OSError):
                slot.conn.close()


def check_backend(name: str | None, workers: int | None = None) -> str:
    """The backend name to use (None: scoop under SCOOP, else serial); UserError for bad choices.
    Starts nothing, so the command line can be checked before the run folder is made."""
    name = name or default_backend()
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    if name != "processes" and workers is not None:
        hint = "python -m scoop -n N" if name == "scoop" else "--backend processes"
        raise UserError(f"--workers applies to --backend processes; for more workers use {hint}")
    if name == "scoop" and not running_under_scoop():
        raise UserError("--backend scoop needs the program to run under SCOOP, e.g. "
                        "python -m scoop -n 2 nasdip_deap/__main__.py search ... "
                        "(SCOOP has no -m option: give the path of nasdip_deap/__main__.py)")
    return name


def make_backend(name: str | None, workers: int | None = None, threads: int | None = 1,
                 eval_timeout: float | None = None, lost: Callable | None = None, device: str = "auto"):
    """Start the backend called ``name`` (None: scoop under SCOOP, else serial); ``close()`` it after.
    ``processes`` kills a worker whose fit is still running 1.5 x ``eval_timeout`` + 10 s after it
    started (the fit itself stops at ``eval_timeout``; this catches one stuck outside the fit loop)."""
    name = check_backend(name, workers)
    if name == "serial":
        return SerialBackend()
    if name == "scoop":
        return ScoopBackend()
    kill_after = None if eval_timeout is None else 1.5 * eval_timeout + 10.0
    gpu_count = 0 if str(device).startswith("cpu") else None  # fits on the CPU: one worker per core
    return ProcessBackend(workers=workers, threads=threads, gpu_count=gpu_count, kill_after=kill_after, lost=lost)
