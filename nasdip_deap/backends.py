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
- ``dask`` (``dask_backend.py``, the ``dask`` extra): Dask tasks on a local cluster or on the workers of
  a running scheduler.

Backends are plugins: a ``Backend`` subclass registered in ``BACKENDS`` (``@BACKENDS.register(name)``,
or an entry point of the ``nasdip_deap.backends`` group) is built from the run's ``BackendOptions``.
Any ``concurrent.futures.Executor`` becomes a backend through ``ExecutorBackend``. Every backend yields
the records in the items' order and answers a lost worker with a retry or the ``lost`` fallback.

GPU placement and worker identity live in ``workers.py``.
"""
from __future__ import annotations

import concurrent.futures
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
from .registry import Registry
from .workers import count_gpus, die_with_parent, running_under_scoop, start_worker, usable_cores

log = logging.getLogger("nasdip")

# built in here and in dask_backend.py (which imports Dask only when a run uses it)
BACKENDS = Registry("backend", "nasdip_deap.backends", ("nasdip_deap.backends", "nasdip_deap.dask_backend"))

# the options some backends take, with their command-line flags (for "applies to" errors)
OPTION_FLAGS = {"workers": "--workers", "scheduler": "--scheduler"}


@dataclass(frozen=True)
class BackendOptions:
    """What a backend is built from: the run's settings on where and how its fits run."""

    workers: int | None = None  # None: the backend's default (one per GPU, else one per core)
    threads: int | None = 1  # torch threads per fit (sets how many workers share the cores)
    device: str = "auto"
    eval_timeout: float | None = None  # the fit stops itself then; see kill_after
    lost: Callable[[object, str], object] | None = None  # the record of an item whose workers kept dying
    scheduler: str | None = None  # the address (or scheduler file) of a running Dask scheduler

    @property
    def kill_after(self) -> float | None:
        """When a worker still busy with one fit is killed: 1.5 x ``eval_timeout`` + 10 s (the fit stops
        itself at ``eval_timeout``; this catches one stuck outside the fit loop)."""
        return None if self.eval_timeout is None else 1.5 * self.eval_timeout + 10.0

    @property
    def gpu_count(self) -> int | None:
        """0 for fits on the CPU (one worker per core), None: count the GPUs where the worker runs."""
        return 0 if str(self.device).startswith("cpu") else None

    def default_workers(self) -> int:
        """One worker per GPU of this machine, else one per core (cores divided by the fit's threads)."""
        gpus = count_gpus() if self.gpu_count is None else self.gpu_count
        return gpus or max(1, usable_cores() // max(1, self.threads or 1))


# -- backends -------------------------------------------------------------------------------------
class Backend:
    """Where the fits of a run go. Subclasses declare the options they take and build themselves from
    ``BackendOptions``. An instance is a context manager: leaving the block normally closes the backend
    politely; leaving it by an exception (an interrupt, SIGTERM) stops its workers at once, so no fit
    outlives the run."""

    name = "?"
    options: tuple[str, ...] = ()  # the keys of OPTION_FLAGS this backend takes
    workers_hint = ""  # how to get more workers, for a --workers it does not take
    workers = 1

    @classmethod
    def check(cls, options: BackendOptions) -> None:
        """Refuse bad options with a UserError; starts nothing (runs before the run folder is made)."""

    @classmethod
    def from_options(cls, options: BackendOptions) -> "Backend":
        return cls()

    @classmethod
    def launched_here(cls) -> bool:
        """True when this program was started by the backend's own launcher (it is then the default)."""
        return False

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        raise NotImplementedError

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


@BACKENDS.register("serial")
class SerialBackend(Backend):
    """In this process, one fit after another."""

    name = "serial"
    workers = 1
    workers_hint = "for more workers use --backend processes or --backend dask"

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        return map(fn, items)


def _call(fn: Callable, item):
    return fn(item)


@BACKENDS.register("scoop")
class ScoopBackend(Backend):
    """The workers of `python -m scoop`, on one host or many (the default under SCOOP)."""

    name = "scoop"
    workers_hint = "for more workers use python -m scoop -n N"

    @classmethod
    def check(cls, options: BackendOptions) -> None:
        if not running_under_scoop():
            raise UserError("--backend scoop needs the program to run under SCOOP, e.g. "
                            "python -m scoop -n 2 nasdip_deap/__main__.py search ... "
                            "(SCOOP has no -m option: give the path of nasdip_deap/__main__.py)")

    @classmethod
    def launched_here(cls) -> bool:
        return running_under_scoop()

    def __init__(self):
        self.check(BackendOptions())
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


@BACKENDS.register("processes")
class ProcessBackend(Backend):
    """Worker processes on this machine, one per GPU or per core, restarted when they die."""

    name = "processes"
    options = ("workers",)

    @classmethod
    def check(cls, options: BackendOptions) -> None:
        check_worker_count(options.workers)

    @classmethod
    def from_options(cls, options: BackendOptions) -> "ProcessBackend":
        return cls(workers=options.workers, threads=options.threads, gpu_count=options.gpu_count,
                   kill_after=options.kill_after, lost=options.lost)

    def __init__(self, workers: int | None = None, threads: int | None = 1, gpu_count: int | None = None,
                 lock_dir: str | os.PathLike | None = None, retries: int = 2, kill_after: float | None = None,
                 lost: Callable[[object, str], object] | None = None, max_respawns: int = 20):
        self.gpu_count = count_gpus() if gpu_count is None else gpu_count
        if workers is None:
            workers = self.gpu_count or max(1, usable_cores() // max(1, threads or 1))
        check_worker_count(workers)
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
        self._reap()

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        for slot in self._slots:
            with contextlib.suppress(OSError, ValueError):
                slot.conn.send(None)
        self._reap()

    def _reap(self) -> None:
        """Wait up to 5 s for the workers told to stop, kill the ones still running, close every pipe."""
        deadline = time.monotonic() + 5
        for slot in self._slots:
            slot.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            with contextlib.suppress(OSError):
                slot.conn.close()


class ExecutorBackend(Backend):
    """Any ``concurrent.futures.Executor`` (a thread or process pool, an MPI or cluster executor) as a
    backend. The executor is the caller's: closing the backend leaves it running; an interrupted run
    cancels the fits not yet started. A fit whose worker was lost (a broken process pool) gets the
    ``lost`` fallback; the fit stops itself at ``--eval-timeout``, since an executor cannot stop one."""

    name = "executor"

    def __init__(self, executor: concurrent.futures.Executor, lost: Callable | None = None):
        self.executor = executor
        self.lost = lost
        self.workers = int(getattr(executor, "_max_workers", 0) or 1)
        self._futures: list = []

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        items = list(items)
        futures = [self.executor.submit(fn, item) for item in items]
        self._futures = futures
        return self._results(futures, items)

    def _results(self, futures: list, items: list) -> Iterator:
        for future, item in zip(futures, items):
            try:
                yield future.result()
            except concurrent.futures.BrokenExecutor as exc:  # its worker died mid-fit
                if self.lost is None:
                    raise WorkerLost(f"the executor lost its worker ({type(exc).__name__}: {exc})") from exc
                log.warning("giving up on a fit: the executor lost its worker (%s)", exc)
                yield self.lost(item, f"the executor lost its worker ({type(exc).__name__})")

    def terminate(self) -> None:
        for future in self._futures:
            future.cancel()


def check_worker_count(workers: int | None) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UserError(f"--workers must be a whole number >= 1, got {workers!r}")


def default_backend() -> str:
    """The backend whose launcher started this program (scoop under ``python -m scoop``), else serial."""
    return next((e.name for e in BACKENDS.entries() if e.obj.launched_here()), "serial")


def _is_backend_object(choice) -> bool:
    return isinstance(choice, (Backend, concurrent.futures.Executor)) or (
        isinstance(choice, type) and issubclass(choice, Backend))


def check_backend(choice, options: BackendOptions | None = None) -> str | object:
    """The backend to use: a registered name (None: the default, see ``default_backend``), or a
    ``Backend`` class, a ``Backend`` or an ``Executor`` given as they are; UserError for bad choices
    and for options the backend does not take. Starts nothing, so the command line can be checked
    before the run folder is made."""
    options = options or BackendOptions()
    if _is_backend_object(choice) and not isinstance(choice, type):
        for field, flag in OPTION_FLAGS.items():
            if getattr(options, field) is not None:
                raise UserError(f"{flag} applies to a backend given by name, not to {type(choice).__name__}")
        return choice
    if choice is not None and not isinstance(choice, (str, type)):
        raise UserError(f"backend must be a name ({', '.join(BACKENDS.names())}), a Backend or a "
                        f"concurrent.futures.Executor, got {type(choice).__name__}")
    name = choice or default_backend()
    cls = name if isinstance(name, type) else BACKENDS.get(name)
    for field, flag in OPTION_FLAGS.items():
        if getattr(options, field) is not None and field not in cls.options:
            takers = " or ".join(f"--backend {e.name}" for e in BACKENDS.entries() if field in e.obj.options)
            hint = f"; {cls.workers_hint}" if field == "workers" and cls.workers_hint else ""
            raise UserError(f"{flag} applies to {takers}, not to --backend {cls.name}{hint}")
    cls.check(options)
    return name


def make_backend(choice, options: BackendOptions | None = None) -> Backend:
    """Start the backend ``choice`` (see ``check_backend``) with ``options``; ``close()`` it after, or
    use it as a context manager. An ``Executor`` is wrapped in ``ExecutorBackend``; a ``Backend`` is
    used as it is."""
    options = options or BackendOptions()
    choice = check_backend(choice, options)
    if isinstance(choice, Backend):
        return choice
    if isinstance(choice, concurrent.futures.Executor):
        return ExecutorBackend(choice, lost=options.lost)
    cls = choice if isinstance(choice, type) else BACKENDS.get(choice)
    return cls.from_options(options)
