"""The ``dask`` backend: fits as Dask tasks (``pip install 'nasdip-deap[dask]'``).

- No ``--scheduler``: a ``distributed.LocalCluster`` on 127.0.0.1, started and stopped by the run, with
  one single-threaded worker process per GPU, or per core on a machine without GPUs (``--workers N``).
- ``--scheduler tcp://HOST:PORT`` or ``--scheduler FILE`` (a scheduler file): the workers of a running
  cluster (``dask scheduler`` / ``dask worker`` on any hosts, or ``dask-jobqueue``). The run leaves them
  running when it ends.

Rules shared with the other backends, and how Dask meets them:

- Each worker process takes a GPU of its host through the lock files of ``workers.py`` the first time
  it runs a fit (a Dask resource tag only schedules; it does not choose the device).
- Submissions are not ``pure``: the same genome twice (finalists' re-fits) is two fits.
- The fit function (the evaluator, holding the observation and the mask) is pickled once, made the
  result of a task of its own and copied once to each worker (``replicate``, again for workers that
  join later); the fits depend on it. It is sent again only when it changes, not once per fit. Being a
  task, not scattered data, the scheduler recomputes it when every worker holding it is gone.
- A worker holds one fit at a time (``worker-saturation`` 1.0 on a local cluster), so a worker's death
  affects only the fit it was running.
- A worker that dies mid-fit: the scheduler sends the fit to another worker; after ``retries`` deaths
  of workers running it (the scheduler's ``allowed-failures``) the item gets the ``lost`` fallback, a
  machine failure that is never cached.
- A fit still running ``kill_after`` seconds after it started is cancelled, its worker is stopped (a
  nanny starts a new one) and the item gets the ``lost`` fallback.
- An interrupted run cancels its fits; a local cluster's worker processes are stopped, and checked
  dead by pid.

Dask is imported only when a run uses this backend, so the registry lists it without the extra.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import queue
import signal
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from .backends import BACKENDS, Backend, BackendOptions, WorkerLost, check_worker_count
from .errors import UserError
from .workers import _ThisProcess, _parent_of, running, start_worker

log = logging.getLogger("nasdip")

# Dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers; a fixed threshold also turns off glibc's
# adaptive mmap threshold, so every large tensor of a CPU fit is mmapped and faulted in afresh
NO_MALLOC_TRIM = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
STARTED_TOPIC = "nasdip-fit-started"  # worker -> client events: which worker began which fit, for kill_after
CONNECT_TIMEOUT = 20.0  # seconds to reach a scheduler that accepted the TCP connection


def import_distributed():
    """``distributed``, or a UserError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise UserError(f"--backend dask needs the dask extra: pip install 'nasdip-deap[dask]' ({exc})") from None
    _private_randomness()
    return distributed


def _private_randomness() -> None:
    """Give Dask's modules in this process a random generator of their own. The search draws its
    variation from Python's global ``random`` (DEAP's way), and a scheduler in this process (a local
    cluster's) draws from it too, from its own threads (``random.sample`` when it copies data,
    ``random.choice`` when it gathers results): the search would then depend on Dask's timing and
    leave the hall of fame that the same seed gives on every other backend."""
    import random
    import sys

    own = random.Random(0)
    shared = {name: getattr(random, name) for name in ("random", "randint", "choice", "sample", "shuffle",
                                                      "uniform", "randbytes", "getrandbits", "randrange")}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "distributed" or name.startswith("distributed.")):
            continue
        if getattr(module, "random", None) is random:
            module.random = own
        for attr, fn in shared.items():
            if attr != "random" and getattr(module, attr, None) is fn:
                setattr(module, attr, getattr(own, attr))


def scheduler_target(text: str) -> tuple[str, str]:
    """("address", URL) or ("file", path) of ``--scheduler``; UserError for one that cannot be either."""
    if "://" in text:
        parts = urlsplit(text)
        if not parts.hostname or parts.port is None and parts.scheme in ("tcp", "tls"):
            raise UserError(f"--scheduler {text!r} is not an address: give tcp://HOST:PORT "
                            f"(dask scheduler's default port is 8786) or a scheduler file")
        return "address", text
    if ":" in text and text.rsplit(":", 1)[1].isdigit() and not Path(text).exists():
        return "address", f"tcp://{text}"
    if not Path(text).is_file():
        raise UserError(f"--scheduler {text!r}: no such scheduler file (give tcp://HOST:PORT, or the file "
                        f"written by `dask scheduler --scheduler-file FILE`)")
    return "file", text


def _probe(address: str) -> None:
    """Fail at once, with one line, when nothing listens at a TCP address (Dask would retry for long)."""
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls") or parts.port is None:
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError as exc:
        raise UserError(f"no Dask scheduler answers at {address} ({exc.strerror or exc}); start one with "
                        f"`dask scheduler` or check the address") from None


# -- the worker side ------------------------------------------------------------------------------
class _Shipped:
    """The pickled fit function, the result of a task of its own (``_load``)."""

    def __init__(self, digest: str, data: bytes, setup: dict):
        self.digest, self.data, self.setup = digest, data, setup


_FUNCTIONS: dict[str, Callable] = {}  # in a worker process: digest -> the unpickled fit function


def _fit_function(shipped: _Shipped) -> Callable:
    """The fit function, unpickled once per worker process (the worker keeps ``shipped`` in memory)."""
    fn = _FUNCTIONS.get(shipped.digest)
    if fn is None:
        fn = pickle.loads(shipped.data)
        while len(_FUNCTIONS) >= 2:  # the previous generation's is kept for a late fit of it
            _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
        _FUNCTIONS[shipped.digest] = fn
    return fn


def _setup_worker(setup: dict) -> None:
    """Make this Dask worker process a nasdip worker (its id, its GPU) on its first fit."""
    worker = _ThisProcess.worker
    if worker is not None and worker.pid == os.getpid() and worker.worker_id.startswith("dask-"):
        return
    from distributed import get_worker

    name = get_worker().name
    prefer = name if isinstance(name, int) else None  # a local cluster's workers are 0, 1, ...: one GPU each
    start_worker(f"dask-{name}", setup["gpu_count"], setup.get("lock_dir"), prefer_gpu=prefer)
    if setup.get("watch_parent"):
        _watch_parent(os.getppid())


def _watch_parent(parent: int) -> None:
    """A local cluster's worker that has run a fit ends within a second when the search process is gone,
    however it ended (even kill -9), so no worker keeps fitting or holding a GPU."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="nasdip-parent-watch", daemon=True).start()


def _load(shipped: _Shipped) -> _Shipped:
    """The task whose result the fits depend on: the shipped function itself."""
    return shipped


def _run_fit(shipped: _Shipped, item):
    """The Dask task: one call of the shipped function."""
    _setup_worker(shipped.setup)
    fn = _fit_function(shipped)
    if shipped.setup.get("report_start"):
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(STARTED_TOPIC, {"key": worker.get_current_task(), "address": worker.address})
    return fn(item)


def _exit_worker() -> None:
    """Run on a worker whose fit ran past the hard limit: a thread cannot be stopped, its process can."""
    threading.Timer(0.2, os._exit, (70,)).start()  # after the reply, so the client's call returns


# -- the client side ------------------------------------------------------------------------------
@BACKENDS.register("dask")
class DaskBackend(Backend):
    """Dask: a local cluster, or the workers of a running scheduler (--scheduler ADDRESS|FILE)."""

    name = "dask"
    options = ("workers", "scheduler")

    @classmethod
    def check(cls, options: BackendOptions) -> None:
        import_distributed()
        check_worker_count(options.workers)
        if options.workers is not None and options.scheduler is not None:
            raise UserError("--workers applies to a local Dask cluster; with --scheduler the fits run on that "
                            "cluster's workers (start more with `dask worker ADDRESS`)")
        if options.scheduler is not None:
            kind, target = scheduler_target(options.scheduler)
            if kind == "address":
                _probe(target)  # a TCP connect only, so that a wrong address fails before anything is written

    @classmethod
    def from_options(cls, options: BackendOptions) -> "DaskBackend":
        return cls(options)

    def __init__(self, options: BackendOptions, retries: int = 2, lock_dir: str | os.PathLike | None = None,
                 kill_after: float | None = None):
        """``retries``: deaths of a fit's workers that a local cluster's scheduler retries (a running
        scheduler keeps its own ``allowed-failures``); ``kill_after``: the hard time limit (default: the
        options')."""
        self.check(options)
        distributed = import_distributed()
        self.lost = options.lost
        self.kill_after = options.kill_after if kill_after is None else kill_after
        self.cluster = None
        self._own_pids: set[int] = set()
        self._running: dict = {}
        self._threads, self._capacity_at = 1, -1e9
        self._started: dict[str, tuple[str, float]] = {}
        self._shipped = None
        if options.scheduler is None:
            workers = options.workers or options.default_workers()
            gpus = 0 if options.gpu_count == 0 else _local_gpus()
            import dask

            # the scheduler runs in this process: its retry rule is ours (3 deaths of a fit: lost), and a
            # worker is given one fit at a time, so a death (or a stop past the time limit) hits one fit
            # (the nannies keep this config for the workers they start again); and no statistical profiler
            # in the workers, a thread that takes the GIL 100 times a second for a dashboard nobody shows
            with dask.config.set({"distributed.scheduler.allowed-failures": retries,
                                  "distributed.scheduler.worker-saturation": 1.0,
                                  "distributed.worker.profile.enabled": False,
                                  **NO_MALLOC_TRIM}):
                self.cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, resources={"GPU": 1} if gpus else None,
                    # no dashboard, and the scheduler's HTTP server on a free port of 127.0.0.1, not 8787
                    scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                    silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster, set_as_default=False)
            self.address = self.cluster.scheduler_address
        else:
            kind, target = scheduler_target(options.scheduler)
            try:
                if kind == "address":
                    self.client = distributed.Client(target, timeout=CONNECT_TIMEOUT, set_as_default=False)
                else:
                    self.client = distributed.Client(scheduler_file=target, timeout=CONNECT_TIMEOUT,
                                                     set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise UserError(f"cannot reach the Dask scheduler of --scheduler {options.scheduler!r} "
                                f"({type(exc).__name__}: {exc})") from None
            self.address = self.client.scheduler.address
        _private_randomness()  # again: starting the cluster imported more of Dask's modules
        self.setup = {"gpu_count": options.gpu_count, "lock_dir": None if lock_dir is None else str(lock_dir),
                      "watch_parent": self.cluster is not None, "report_start": self.kill_after is not None}
        if self.kill_after is not None:
            self.client.subscribe_topic(STARTED_TOPIC, self._on_started)
        info = self.client.scheduler_info().get("workers", {})
        self.workers = len(info)
        self.resources = {"GPU": 1} if info and all(w.get("resources", {}).get("GPU") for w in info.values()) \
            else None  # ask for a GPU only where every worker offers one, or fits would wait forever
        for address, w in info.items():
            if w.get("nthreads", 1) > 1:
                log.warning("Dask worker %s runs %d threads: its fits share one process and GPU; start workers "
                            "with `dask worker --nthreads 1`", address, w["nthreads"])
        if not info:
            log.warning("the Dask scheduler at %s has no workers yet: fits wait for them", self.address)
        if self.cluster is not None:
            self._own_pids.update(self._local_pids())

    # -- fits --
    def _on_started(self, event) -> None:
        _, message = event
        self._started[message["key"]] = (message["address"], time.monotonic())

    def _ship(self, fn: Callable):
        """The future of the fit function, made again only when its pickle changes."""
        data = pickle.dumps(fn)
        digest = hashlib.sha1(data).hexdigest()
        if self._shipped is None or self._shipped[0] != digest:
            future = self.client.submit(_load, _Shipped(digest, data, self.setup), resources=self.resources,
                                        key=f"nasdip-fn-{digest}-{time.time_ns()}")
            made = threading.Event()  # made (or waiting for the first worker) before any fit depends on it
            future.add_done_callback(lambda _: made.set())
            made.wait()
            self._shipped = (digest, future)
            self._copied_to: frozenset = frozenset()
            self._capacity_at = -1e9  # copy it now
        return self._shipped[1]

    def _copy_function(self, workers: frozenset) -> None:
        """Put the fit function on every worker (once each): the scheduler sends a fit only to workers
        that hold what it depends on, so a worker without it would stay idle."""
        if self._shipped is not None and workers - self._copied_to:
            with contextlib.suppress(Exception):
                self.client.replicate([self._shipped[1]])
            self._copied_to = workers

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """Yields ``fn(item)`` in order as results come in. Fits are submitted as workers free up, no
        more at once than the cluster has threads, so that a worker holds only the fit it runs."""
        items = list(items)
        if not items:
            return iter(())
        return self._results(self._ship(fn), items)

    def _capacity(self) -> int:
        """The cluster's threads (workers come and go: asked again after 2 s, not at every fit, since
        each ask is a round trip to the scheduler), with the function copied to new workers."""
        now = time.monotonic()
        if now - self._capacity_at > 2.0:
            with contextlib.suppress(Exception):
                threads = self.client.nthreads()
                self._copy_function(frozenset(threads))
                self._threads, self._capacity_at = max(1, sum(threads.values())), now
        return self._threads

    def _results(self, shipped, items: list) -> Iterator:
        pending = deque(range(len(items)))
        running: dict[str, tuple[int, object]] = {}  # key -> (item index, future)
        self._running = running
        done: queue.Queue = queue.Queue()
        results: dict[int, object] = {}
        next_out = 0
        try:
            while next_out < len(items):
                free = self._capacity() - len(running) if pending else 0
                for _ in range(min(free, len(pending))):
                    i = pending.popleft()
                    future = self.client.submit(_run_fit, shipped, items[i], pure=False, resources=self.resources)
                    running[future.key] = (i, future)
                    future.add_done_callback(done.put)
                try:
                    future = done.get(timeout=1.0)
                except queue.Empty:
                    future = None
                if future is not None and future.key in running:
                    i, _ = running.pop(future.key)
                    results[i] = self._outcome(future, items[i])
                if self.kill_after is not None:
                    self._stop_overdue(running, items, results)
                while next_out in results:
                    yield results.pop(next_out)
                    next_out += 1
        finally:
            if running:  # an interrupted or abandoned map: its fits are not wanted any more
                with contextlib.suppress(Exception):
                    self.client.cancel([f for _, f in running.values()], force=True)

    def _outcome(self, future, item):
        from distributed import KilledWorker

        if future.status == "finished":
            return future.result()
        if future.status == "error":
            exc = future.exception()
            if isinstance(exc, KilledWorker):
                return self._give_up(item, f"workers died running it ({exc})")
            raise exc.with_traceback(future.traceback())
        raise RuntimeError(f"Dask dropped a fit ({future.status}): was the scheduler at {self.address} stopped? "
                           f"Continue the run with nasdip search --resume RUN_DIR")

    def _stop_overdue(self, running: dict, items: list, results: dict) -> None:
        now = time.monotonic()
        for key, (i, future) in list(running.items()):
            started = self._started.get(key)
            if started is None or now - started[1] <= self.kill_after:
                continue
            address = started[0]
            log.warning("fit %d ran past %.0fs on Dask worker %s: stopping the worker", i, self.kill_after, address)
            del running[key]
            self.client.cancel([future])  # first, so the scheduler does not send it to another worker
            with contextlib.suppress(Exception):
                self.client.run(_exit_worker, workers=[address], wait=True)
            results[i] = self._give_up(items[i], f"timed out: no result after {self.kill_after:.0f}s "
                                                 f"(worker stopped)")

    def _give_up(self, item, reason: str):
        if self.lost is None:
            raise WorkerLost(reason)
        log.warning("giving up on a fit: %s", reason)
        return self.lost(item, reason)

    # -- workers --
    def _worker_pids(self) -> set[int]:
        with contextlib.suppress(Exception):
            return set(self.client.run(os.getpid, wait=True).values())
        return set()

    def _local_pids(self) -> set[int]:
        """A local cluster's worker processes, read from its nannies (in this process: no call to
        workers that may be busy or stuck)."""
        pids = set()
        for nanny in list(getattr(self.cluster, "workers", {}).values()):
            with contextlib.suppress(Exception):
                if nanny.pid:
                    pids.add(int(nanny.pid))
        return pids

    def pids(self) -> list[int]:
        """The worker processes' pids (now)."""
        return sorted(self._worker_pids())

    def close(self) -> None:
        self._shutdown(cancel=False)

    def terminate(self) -> None:
        """Cancel this run's fits; a local cluster's workers are stopped, and killed if they linger."""
        self._shutdown(cancel=True)

    def _shutdown(self, cancel: bool) -> None:
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # a cluster torn down mid-fit logs every dropped connection
        try:
            if self.cluster is not None:
                self._own_pids.update(self._local_pids())
            if cancel:
                with contextlib.suppress(Exception):
                    self.client.cancel([f for _, f in self._running.values()], force=True)
            with contextlib.suppress(Exception):
                self.client.close(timeout=5)
            if self.cluster is not None:
                with contextlib.suppress(Exception):
                    self.cluster.close(timeout=10)
                _kill_leftovers(self._own_pids)
        finally:
            quiet.setLevel(level)


def _local_gpus() -> int:
    from .workers import count_gpus

    return count_gpus()


def _kill_leftovers(pids: set[int], grace: float = 5.0) -> None:
    """SIGKILL any of this process's own worker processes still alive after the cluster closed."""
    deadline = time.monotonic() + grace
    mine = {pid for pid in pids if _parent_of(pid) == os.getpid()}
    while mine and time.monotonic() < deadline:
        mine = {pid for pid in mine if _parent_of(pid) == os.getpid() and running(pid)}
        time.sleep(0.1)
    for pid in mine:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
