"""Who this process is as an evaluation worker, and the GPU it holds.

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
import os
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


# -- environment ----------------------------------------------------------------------------------
def running_under_scoop() -> bool:
    """True inside a program started by ``python -m scoop`` (origin or worker)."""
    try:
        import scoop
    except ImportError:  # pragma: no cover - scoop is a dependency
        return False
    return bool(getattr(scoop, "IS_RUNNING", False))


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


def die_with_parent(parent: int | None = None) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies, however the parent dies, so that no
    worker outlives its run (keeps fitting, or holds a GPU) after a SIGTERM or ``kill -9`` of the search.
    Returns False when the parent (``parent``, else any parent but init) is gone already."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
    return os.getppid() == parent if parent is not None else os.getppid() != 1


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first, then the parent's pid, ...;
    field N of proc(5) is item N - 3), or None when the process is gone or this is not Linux. The name is
    cut at its last ')' because a command name may hold spaces and brackets."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` still runs: a process gone, or a zombie waiting for its parent to reap it, has ended."""
    fields = proc_stat(pid)
    return bool(fields) and fields[0] != "Z"


def _parent_of(pid: int) -> int | None:
    fields = proc_stat(pid)
    try:
        return int(fields[1]) if fields else None
    except (ValueError, IndexError):
        return None


def watch_scoop_launcher(period: float = 1.0) -> None:
    """In SCOOP's origin: when the launcher (``python -m scoop``) is stopped on its own (a SIGTERM to its
    pid only), SCOOP leaves the origin and the workers running without it. A watchdog thread then stops
    every process of the run's group and exits with 143, as a SIGTERM to the whole run would."""
    import sys
    import threading
    import time

    launcher = _parent_of(os.getppid())  # origin -> scoop.launch -> the launcher
    if launcher is None or launcher <= 1:
        return

    def watch() -> None:
        while True:
            time.sleep(period)
            if not Path(f"/proc/{launcher}").exists():
                print("nasdip: the SCOOP launcher has stopped, so this run stops too; continue it with "
                      "nasdip search --resume RUN_DIR", file=sys.stderr, flush=True)
                with contextlib.suppress(OSError):
                    os.killpg(os.getpgid(0), signal.SIGTERM)
                os._exit(143)

    threading.Thread(target=watch, name="nasdip-scoop-watchdog", daemon=True).start()


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
        if running_under_scoop() and not die_with_parent():
            os._exit(0)  # a SCOOP process whose launcher is gone: its run has ended
        worker = start_worker(_default_worker_id())
        if worker.worker_id.startswith("scoop-origin"):
            watch_scoop_launcher()
    return worker
