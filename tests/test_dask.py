"""The dask backend with real Dask processes on 127.0.0.1: a local cluster started by the run, a
``dask scheduler`` with two ``dask worker`` processes started here, a worker killed mid-fit, SIGTERM
and --resume, the rules every backend keeps (order, lost workers, time limit, one shipment of the fit
function per worker), a user's own executor, and the one-line errors."""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

from nasdip_deap.backends import BACKENDS, Backend, BackendOptions, check_backend, make_backend  # noqa: E402
from nasdip_deap.dask_backend import DaskBackend  # noqa: E402
from nasdip_deap.workers import proc_stat, running as alive  # noqa: E402
from tests import backend_helpers as helpers  # noqa: E402
from tests.conftest import REPO, run_main  # noqa: E402
from tests.helpers import TINY_SEARCH  # noqa: E402
from tests.helpers import read_jsonl_safely as read_jsonl  # noqa: E402

pytestmark = pytest.mark.xdist_group("dask")  # one xdist worker: the clusters would share 2 cores anyway

TINY16 = ["--crop", "16", "--levels", "3", "--population", "4", "--generations", "2", "--iterations", "12",
          "--seed", "3", "--quiet"]
DASK_CLI = Path(sys.executable).with_name("dask")  # the `dask` command of this environment


def hall_of_fame(run_dir: Path) -> list:
    return [(e["key"], e["fitness"]) for e in json.loads((run_dir / "hall_of_fame.json").read_text())]


def assert_every_individual_fitted(out: Path) -> list[dict]:
    """Every generation's individuals have a fit of their own, none failed, none twice."""
    logbook = json.loads((out / "logbook.json").read_text())
    records = read_jsonl(out / "evaluations.jsonl")
    assert [row["gen"] for row in logbook] == [0, 1, 2]
    assert sum(row["fits"] for row in logbook) == len(records) == len({r["key"] for r in records})
    assert all(row["fits"] + row["cache_hits"] + row["duplicates"] == row["nevals"] for row in logbook)
    assert all(r["error"] is None for r in records) and not (out / "errors.jsonl").exists()
    return records


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(entry.name)
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def stop(proc: subprocess.Popen) -> None:
    """End a process this test started (in its own session) and whatever is left of its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """The uninterrupted reference: the same tiny search, serially, in this process."""
    out = tmp_path_factory.mktemp("dask-serial") / "run"
    result = run_main("search", *TINY16, "--out", str(out), "--backend", "serial")
    assert result.returncode == 0, result.stderr
    return out


# -- the backend's rules, on a local cluster ------------------------------------------------------
def lost_marker(item, reason):
    return ("lost", item, reason)


@pytest.fixture(scope="module")
def local_dask():
    """A local cluster of 2 workers; a fit is lost at its first worker death (retries=0), and a fit still
    running after 3 s is stopped, so that the tests of those rules take seconds."""
    backend = DaskBackend(BackendOptions(workers=2, device="cpu", lost=lost_marker), retries=0, kill_after=3.0)
    try:
        yield backend
    finally:
        backend.close()


def test_dask_yields_in_order_from_two_worker_processes_running_this_code(local_dask):
    assert local_dask.workers == 2
    assert list(local_dask.map(helpers.slow_square, range(10))) == [x * x for x in range(10)]
    assert list(local_dask.map(helpers.square, [])) == []
    seen = list(local_dask.map(helpers.hold_then_whoami, [0.5] * 4))
    assert {s["worker"] for s in seen} == {"dask-0", "dask-1"} and len({s["pid"] for s in seen}) == 2
    assert os.getpid() not in {s["pid"] for s in seen}
    paths = set(local_dask.map(helpers.code_path, range(4)))
    assert paths == {str(REPO / "nasdip_deap" / "__init__.py")}


def test_dask_runs_the_same_item_twice_as_two_fits(local_dask):
    tokens = list(local_dask.map(helpers.token, [7, 7, 7]))
    assert len(set(tokens)) == 3  # pure submissions would share one key and run once


def test_dask_sends_the_fit_function_once_per_worker(local_dask):
    heavy = helpers.Heavy(4 << 20)  # like an evaluator holding the observation and the mask
    first = list(local_dask.map(heavy, range(8)))
    second = list(local_dask.map(heavy, range(8)))  # the next generation: the same function
    copies: dict[int, set[int]] = {}
    for pid, copy in first + second:
        copies.setdefault(pid, set()).add(copy)
    assert len(copies) == 2 and all(len(c) == 1 for c in copies.values())  # one unpickled copy per worker
    other = helpers.Heavy(16)
    assert len({copy for _, copy in local_dask.map(other, range(4))} & set().union(*copies.values())) == 0


def test_dask_task_exception_reaches_the_caller(local_dask):
    with pytest.raises(ValueError, match="three is not allowed"):
        list(local_dask.map(helpers.fail_on_three, range(6)))
    assert list(local_dask.map(helpers.square, range(3))) == [0, 1, 4]


def test_dask_fit_whose_workers_die_gets_the_lost_record(local_dask):
    results = list(local_dask.map(helpers.DieAlways(2), range(4)))
    assert results[:2] == [0, 10] and results[3] == 30
    assert results[2][:2] == ("lost", 2) and "workers died running it" in results[2][2]
    assert list(local_dask.map(helpers.square, range(4))) == [0, 1, 4, 9]  # the nanny replaced the worker


def test_dask_hard_time_limit_stops_a_hung_fit(local_dask):
    before = set(local_dask.pids())
    start = time.monotonic()
    results = list(local_dask.map(helpers.sleep_forever_on, range(4)))
    assert time.monotonic() - start < 60
    assert results[0] == 0 and results[2:] == [2, 3]
    assert results[1][:2] == ("lost", 1) and "timed out" in results[1][2]
    deadline = time.monotonic() + 30
    while len(set(local_dask.pids()) - before) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(set(local_dask.pids()) - before) == 1  # the hung worker's process was replaced


# -- searches: the CLI against a local cluster, a running scheduler, SIGTERM and --resume ---------------
@pytest.mark.slow
def test_sigterm_stops_every_dask_worker_and_resume_reaches_the_uninterrupted_result(serial_run, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasdip_deap", "search", *TINY16, "--out", str(out), "--backend", "dask",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoint.pkl").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (out / "checkpoint.pkl").exists(), "the run wrote no checkpoint"
        workers = descendants(proc.pid)
        first = read_jsonl(out / "evaluations.jsonl")
        proc.send_signal(signal.SIGTERM)  # generation 1 is being fitted
        output, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 143, output
    assert "terminated; files written so far are kept; continue it with: nasdip search --resume" in output
    assert {r["worker"] for r in first} == {"dask-0", "dask-1"} and len({r["pid"] for r in first}) == 2
    assert {r["pid"] for r in first} <= workers
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)]
    # where the rest runs changes nothing (and a second local cluster would only add its start-up)
    resumed = run_main("search", "--resume", str(out), "--backend", "serial", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_every_individual_fitted(out)
    assert hall_of_fame(out) == hall_of_fame(serial_run)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes (with their nannies) on 127.0.0.1."""
    if not DASK_CLI.exists():
        pytest.skip(f"no `dask` command next to {sys.executable}")
    folder = tmp_path_factory.mktemp("dask-cluster")
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    common = {"cwd": folder, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
              "start_new_session": True}
    procs = [subprocess.Popen([str(DASK_CLI), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--dashboard-address", "127.0.0.1:0",
                               "--scheduler-file", str(scheduler_file)], **common)]
    client = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for name in ("ext-0", "ext-1"):
            procs.append(subprocess.Popen([str(DASK_CLI), "worker", "--scheduler-file", str(scheduler_file),
                                           "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--host",
                                           "127.0.0.1", "--name", name], **common))
        client = distributed.Client(scheduler_file=str(scheduler_file), timeout=30, set_as_default=False)
        client.wait_for_workers(2, timeout=90)
        yield client, json.loads(scheduler_file.read_text())["address"], scheduler_file
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):
            stop(proc)


def worker_address(client, name: str) -> str | None:
    return next((a for a, w in client.scheduler_info()["workers"].items() if w["name"] == name), None)


@pytest.mark.slow
def test_search_on_a_dask_scheduler_survives_a_worker_killed_mid_fit(dask_cluster, serial_run, tmp_path):
    client, address, _ = dask_cluster
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasdip_deap", "search", *TINY16, "--out", str(out), "--backend", "dask",
           "--scheduler", address]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    victim = None
    try:
        deadline = time.monotonic() + 180
        while victim is None and proc.poll() is None and time.monotonic() < deadline:
            target = worker_address(client, "ext-0")
            busy = client.processing().get(target, ()) if target else ()
            if any(str(key).startswith("_run_fit") for key in busy):  # it holds a fit of the search
                victim = client.run(os.getpid, workers=[target])[target]
                os.kill(victim, signal.SIGKILL)
            time.sleep(0.05)
        assert victim is not None, "worker ext-0 never ran a fit of the search"
        output, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        stop(proc)
    assert proc.returncode == 0, output
    records = assert_every_individual_fitted(out)
    assert {r["worker"] for r in records} <= {"dask-ext-0", "dask-ext-1"} and len({r["pid"] for r in records}) >= 2
    assert hall_of_fame(out) == hall_of_fame(serial_run)
    client.wait_for_workers(2, timeout=60)  # ext-0's nanny started a new worker process
    assert victim not in client.run(os.getpid).values()


# -- a user's executor, a plugin backend ------------------------------------------------------------
def tiny_task():
    from tests.test_backends import crop16_task

    return crop16_task()


def keys_of_archive(result) -> list[str]:
    return [result.search.spec.decode(ind).key() for ind in result.search.archive]


def test_a_users_executors_run_the_search():
    import nasdip_deap as nd

    task = tiny_task()
    settings = {**TINY_SEARCH, "generations": 1}
    serial = nd.search(task, **settings, backend="serial")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        pooled = nd.search(task, **settings, backend=pool)
        assert pool.submit(helpers.square, 3).result() == 9  # the caller's executor is left running
    assert keys_of_archive(pooled) == keys_of_archive(serial)
    assert os.getpid() not in {r["pid"] for r in pooled.records} and len(pooled.records) == len(serial.records)
    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        threaded = nd.search(task, **settings, backend=threads)
    assert len(threaded.records) == len(serial.records) and all(r["error"] is None for r in threaded.records)
    assert {r["pid"] for r in threaded.records} == {os.getpid()}


class InlineBackend(Backend):
    """Test-only backend: fits in this process, counted."""

    name = "test-inline"
    calls = 0

    def map(self, fn, items):
        InlineBackend.calls += 1
        return map(fn, items)


def test_a_registered_backend_is_used_by_name_and_names_collide():
    import nasdip_deap as nd

    BACKENDS.add("test-inline", InlineBackend)
    try:
        assert "test-inline" in BACKENDS.names() and check_backend("test-inline") == "test-inline"
        InlineBackend.calls = 0
        nd.search(tiny_task(), **{**TINY_SEARCH, "generations": 1}, backend="test-inline")
        assert InlineBackend.calls >= 2  # one map per generation
        with pytest.raises(ValueError, match="already registered"):
            BACKENDS.add("test-inline", DaskBackend)
        with pytest.raises(Exception, match="--workers applies to --backend dask or --backend processes"):
            make_backend("test-inline", BackendOptions(workers=2))
    finally:
        BACKENDS.unregister("test-inline")
    listing = run_main("list")
    assert "dask" in listing.stdout and "Dask: a local cluster" in listing.stdout


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra, message", [
    (["--scheduler", "tcp://127.0.0.1:{port}"], "no Dask scheduler answers at tcp://127.0.0.1:{port}"),
    (["--scheduler", "tcp://127.0.0.1:{port}", "--workers", "2"], "--workers applies to a local Dask cluster"),
    (["--scheduler", "{tmp}/missing.json"], "no such scheduler file"),
    (["--scheduler", "tcp://127.0.0.1:{port}", "--backend", "processes"], "--scheduler applies to --backend dask"),
])
def test_bad_dask_options_are_one_line_errors(tmp_path, extra, message):
    port = closed_port()
    extra = [e.format(port=port, tmp=tmp_path) for e in extra]
    out = tmp_path / "run"
    if "--backend" not in extra:
        extra += ["--backend", "dask"]
    result = run_main("search", "--crop", "16", "--levels", "3", "--out", str(out), *extra)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("nasdip: error: ") and message.format(port=port) in lines[-1]
    assert "Traceback" not in result.stderr and not out.exists()


def test_dask_backend_without_the_extra_is_a_one_line_error(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "distributed" or m.startswith("distributed.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "distributed", None)  # what an environment without the extra imports
    out = tmp_path / "run"
    result = run_main("search", "--crop", "16", "--out", str(out), "--backend", "dask")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "nasdip: error: --backend dask needs the dask extra: pip install 'nasdip-deap[dask]'")
    assert not out.exists()
