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

GPU placement (the same for every backend): each worker process binds one GPU of its host for its
whole life. SCOOP gives its workers no rank, so the binding is made through lock files: one file per
visible GPU in ``<tmp>/nasdip-gpu-locks-<uid>/<hostname>/`` (``gpu-<id>.lock``, ``<id>`` the
``CUDA_VISIBLE_DEVICES`` entry, or the index when that is unset). A worker takes the first GPU whose
file it can ``fcntl.flock`` (non-blocking, exclusive), starting from a preferred index (its slot for
``processes``, its pid otherwise), and keeps the file open: the kernel releases the lock when the
process ends however it ends, so a replacement worker can take the GPU. When every GPU is taken, the
worker shares its preferred GPU (recorded as ``gpu_shared``). The binding applies to ``--device auto``
and ``--device cuda``; an explicit ``cuda:N`` is obeyed as given. GPUs are counted with
``torch.cuda.device_count()``, which asks NVML and does not initialise CUDA.

Threads: on the CPU the result of a fit depends (in the second or third decimal of PSNR) on torch's
intra-op thread count, so every fit runs with a fixed count (``FitnessSettings.threads``, default 1)
whatever the backend or the number of workers; parallelism comes from workers, not threads.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import tempfile
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import UserError

log = logging.getLogger("nasdip")

BACKENDS = ("serial", "processes", "scoop")


# -- environment ----------------------------------------------------------------------------------
def running_under_scoop() -> bool:
    """True inside a program started by ``python -m scoop`` (origin or worker)."""
    try:
        import scoop
    except ImportError:  # pragma: no cover - scoop is a dependency
        return False
    return bool(getattr(scoop, "IS_RUNNING", False))


def default_backend() -> str:
    return "scoop" if running_under_scoop() else "serial"


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def count_gpus() -> int:
    """Visible CUDA devices, counted without initialising CUDA (torch asks NVML)."""
    import torch

    return int(torch.cuda.device_count())


def visible_gpu_ids(count: int) -> list[str]:
    """Host-wide names of the visible GPUs: the CUDA_VISIBLE_DEVICES entries, else the indices."""
    entries = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    return [entries[i] if i < len(entries) else str(i) for i in range(count)]


def default_lock_dir() -> Path:
    """Per user and per host, so hosts sharing a /tmp (or a network home) do not block each other."""
    return Path(tempfile.gettempdir()) / f"nasdip-gpu-locks-{os.getuid()}" / socket.gethostname()


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with torch's intra-op thread count set to ``n`` (None: leave it)."""
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- GPU placement --------------------------------------------------------------------------------
@dataclass
class GpuBinding:
    """One GPU held by this process (``shared`` when every GPU was already taken)."""

    index: int  # torch device index in this process
    gpu_id: str  # host-wide name of the GPU
    lock_path: str | None
    shared: bool
    fd: int | None = field(default=None, repr=False)

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def bind_gpu(count: int, lock_dir: str | os.PathLike, prefer: int = 0,
             ids: list[str] | None = None) -> GpuBinding | None:
    """Take the lock of one of ``count`` GPUs, starting at index ``prefer % count``; see the module
    docstring for the scheme. None when there is no GPU."""
    if count <= 0:
        return None
    ids = ids or visible_gpu_ids(count)
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    order = [(prefer + k) % count for k in range(count)]
    for index in order:
        path = folder / f"gpu-{ids[index].replace('/', '_')}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people looking at the folder
        return GpuBinding(index, ids[index], str(path), shared=False, fd=fd)
    return GpuBinding(order[0], ids[order[0]], None, shared=True)


# -- this process as a worker ---------------------------------------------------------------------
@dataclass
class Worker:
    """Who this process is, for provenance, and the GPU it holds."""

    worker_id: str
    host: str
    pid: int
    gpu: GpuBinding | None = None

    def device_for(self, requested: str) -> str:
        """The device a fit asked for ``requested`` runs on: the bound GPU for auto/cuda."""
        if self.gpu is not None and requested in ("auto", "cuda"):
            return self.gpu.device
        return requested

    def describe(self) -> dict:
        return {"worker": self.worker_id, "host": self.host, "pid": self.pid,
                "gpu": None if self.gpu is None else self.gpu.gpu_id,
                "gpu_shared": None if self.gpu is None else self.gpu.shared}


class _ThisProcess:
    """Holds this process's ``Worker``. The pid check makes a forked child start afresh."""

    worker: Worker | None = None


def start_worker(worker_id: str, gpu_count: int | None = None, lock_dir: str | os.PathLike | None = None,
                 prefer_gpu: int | None = None) -> Worker:
    """Make this process a worker: bind a GPU (if any) for the rest of its life."""
    previous = _ThisProcess.worker
    if previous is not None and previous.pid == os.getpid() and previous.gpu is not None:
        previous.gpu.release()
    count = count_gpus() if gpu_count is None else gpu_count
    pid = os.getpid()
    gpu = bind_gpu(count, lock_dir or default_lock_dir(), pid if prefer_gpu is None else prefer_gpu)
    worker = Worker(worker_id, socket.gethostname(), pid, gpu)
    _ThisProcess.worker = worker
    return worker


def _default_worker_id() -> str:
    if running_under_scoop():
        import scoop

        ident = getattr(scoop, "worker", None)
        ident = ident.decode() if isinstance(ident, bytes) else ident
        return f"scoop-{'origin' if getattr(scoop, 'IS_ORIGIN', False) else 'worker'}-{ident or os.getpid()}"
    return "main"


def current_worker() -> Worker:
    """This process's worker identity, binding a GPU on first use (SCOOP workers, the serial main)."""
    worker = _ThisProcess.worker
    if worker is None or worker.pid != os.getpid():
        worker = start_worker(_default_worker_id())
    return worker


# -- backends -------------------------------------------------------------------------------------
class SerialBackend:
    """Fits in this process, in order."""

    name = "serial"
    workers = 1

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        return map(fn, items)

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"backend": self.name, "workers": self.workers}


def _call(fn: Callable, item):
    return fn(item)


class ScoopBackend:
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

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"backend": self.name, "workers": self.workers}


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


def _worker_main(conn, config: WorkerConfig) -> None:
    """Body of a ``processes`` worker: set up, then run (token, fn, item) messages until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
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


class ProcessBackend:
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
        process = self._ctx.Process(target=_worker_main, args=(child_end, config), daemon=True,
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

    def describe(self) -> dict:
        return {"backend": self.name, "workers": self.workers, "threads": self.threads,
                "gpus": self.gpu_count, "retries": self.retries, "respawned": self.respawned}


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
