"""A failure of the machine is never an architecture's score; SIGTERM stops every process of a run and
leaves it resumable; one writer per run folder; values that cannot be right, and options that do not
apply, are one-line errors with exit code 2."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasdip_deap import memory
from nasdip_deap.runfolder import LOCK_NAME, RunLock
from nasdip_deap.workers import proc_stat, running as alive

from .conftest import REPO, run_main
from .helpers import read_jsonl_safely

TINY = ["search", "--crop", "16", "--levels", "3", "--population", "4", "--generations", "1", "--iterations", "8",
        "--seed", "2", "--quiet"]


def last_line(proc) -> str:
    """The one error line of a refused command (exit code 2, no traceback; log lines may precede it)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and [i for i, line in enumerate(lines) if "error:" in line] == \
        [len(lines) - 1], proc.stderr
    return lines[-1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- failures of the machine ----------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable CUDA device")
def test_an_unusable_device_is_refused_before_any_fit_and_nothing_is_cached(tmp_path):
    out = tmp_path / "run"
    line = last_line(run_main(*TINY, "--device", "cuda", "--out", str(out)))
    assert "CUDA is not available" in line and not out.exists()
    assert "unsupported device 'tpu'" in last_line(run_main(*TINY, "--device", "tpu", "--out", str(out))) or \
        "unknown device 'tpu'" in last_line(run_main(*TINY, "--device", "tpu", "--out", str(out)))
    done = run_main(*TINY, "--device", "cpu", "--force", "--out", str(out))
    assert done.returncode == 0, done.stderr
    logbook = json.loads((out / "logbook.json").read_text())
    assert sum(row["cache_hits"] for row in logbook) == 0
    assert sum(row["fits"] for row in logbook) == len(read_jsonl(out / "evaluations.jsonl")) > 0


def test_out_of_memory_fits_are_recorded_never_cached_and_fitted_again_later(tmp_path, monkeypatch):
    """Every fit refused for lack of memory: the search goes on (worst scores, errors.jsonl), nothing
    reaches cache.jsonl, and the final fit is refused with one line. Run again into the same folder with
    memory to spare, every architecture is fitted (no failure was taken for a score)."""
    out = tmp_path / "run"
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**20)  # 1 MiB free
    line = last_line(run_main(*TINY, "--out", str(out)))
    assert "needs about" in line and "1 MiB free" in line and "--crop" in line
    errors = read_jsonl(out / "errors.jsonl")
    assert errors and all(e["error"].startswith("OutOfMemory: estimated") for e in errors)
    assert all(r["failure"] == "machine" for r in read_jsonl(out / "evaluations.jsonl"))
    assert read_jsonl(out / "cache.jsonl") == []
    monkeypatch.undo()
    done = run_main(*TINY, "--force", "--out", str(out))
    assert done.returncode == 0, done.stderr
    logbook = json.loads((out / "logbook.json").read_text())
    assert sum(row["cache_hits"] for row in logbook) == 0 and logbook[0]["fits"] == 4
    assert all(r["error"] is None for r in read_jsonl(out / "cache.jsonl"))


def test_the_memory_estimate_refuses_a_fit_that_cannot_fit(monkeypatch, tmp_path, write_png, tiny_image):
    from nasdip_deap import classical_dip
    from nasdip_deap.errors import UserError

    big = memory.estimate_fit_bytes(classical_dip(), (4096, 4096), 3)
    small = memory.estimate_fit_bytes(classical_dip(), (64, 64), 3)
    assert big > 16 * small > 0 and big > 8 * 2**30  # a 4096 px classical fit needs many GiB
    monkeypatch.setattr(memory, "free_bytes", lambda device: 8 * 2**30)
    assert not memory.check_memory(classical_dip(), (4096, 4096), 3, torch.device("cpu")).fits
    assert memory.check_memory(classical_dip(), (64, 64), 3, torch.device("cpu")).fits
    with pytest.raises(UserError, match="needs about .* 8.0 GiB free"):
        memory.require_memory(classical_dip(), (4096, 4096), 3, torch.device("cpu"))
    image = write_png("img.png", tiny_image)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1)
    out = tmp_path / "b"
    line = last_line(run_main("baseline", "--image", str(image), "--iterations", "2", "--quiet", "--out", str(out)))
    assert "needs about" in line
    assert sorted(p.name for p in out.iterdir()) == ["clean.png", "degraded.png", LOCK_NAME]  # only the inputs


def test_machine_failures_in_a_cache_file_of_an_older_version_are_not_used(tmp_path):
    """Older versions cached failures of the machine as scores, under a key without the device."""
    from nasdip_deap import cache, classical_dip

    from .helpers import evaluator_for
    from .test_tasks import make_task

    # cache files of older versions hold fp32 fits alone
    evaluator = evaluator_for(make_task("denoise", torch.rand(3, 32, 32)), iterations=2, levels=3, search_fits=0,
                              precision="fp32")
    legacy = evaluator.legacy_context()
    good = evaluator.record(evaluator.spec.encode(classical_dip(3)))
    oom = {**good, "key": "0" * 20, "fitness": [0.0], "error": "RuntimeError: CUDA out of memory"}
    path = tmp_path / "cache.jsonl"
    path.write_text("".join(json.dumps({"context": legacy, **{k: v for k, v in r.items() if k != "failure"}}) + "\n"
                            for r in (good, oom)))
    entries = cache.load_cache_file(path, evaluator)
    assert list(entries) == [evaluator.cache_key(good["key"])]


# -- SIGTERM ---------------------------------------------------------------------------------------
def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(entry.name)
            if fields and int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


SLOW = ["search", "--crop", "32", "--levels", "3", "--population", "4", "--generations", "1", "--iterations", "6",
        "--mutation", "flip-bit:indpb=0.1", "--mutpb", "1.0", "--seed", "4", "--quiet"]


@pytest.mark.slow
def test_sigterm_stops_every_worker_and_the_run_resumes_to_the_uninterrupted_result(tmp_path):
    reference = tmp_path / "reference"
    assert run_main(*SLOW, "--out", str(reference)).returncode == 0
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nasdip_deap", *SLOW, "--backend", "processes", "--workers", "2",
                             "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: set[int] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        workers |= children_of(proc.pid)
        records = read_jsonl_safely(out / "evaluations.jsonl")
        if (out / "checkpoint.pkl").exists() and any(r.get("generation") == 1 for r in records):
            break  # in the middle of generation 1
        time.sleep(0.05)
    workers |= children_of(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated" in stderr and f"nasdip search --resume {out}" in stderr and "Traceback" not in stderr
    assert workers, "the run had no worker processes to check"
    time.sleep(0.5)
    assert not [pid for pid in workers if alive(pid)], "a worker outlived the run"
    assert not (out / "best.json").exists()
    resumed = run_main("search", "--resume", str(out), "--backend", "serial")  # where it runs changes nothing
    assert resumed.returncode == 0, resumed.stderr
    entries = [json.loads((run / "hall_of_fame.json").read_text()) for run in (out, reference)]
    assert [(e["key"], e["fitness"]) for e in entries[0]] == [(e["key"], e["fitness"]) for e in entries[1]]
    compute = [json.loads((run / "best.json").read_text())["compute"] for run in (out, reference)]
    for name in ("fits", "iterations", "cache_hits", "failures", "pixel_steps"):
        assert compute[0][name] == compute[1][name], name


# -- one writer per run folder ------------------------------------------------------------------------
def test_a_second_writer_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert run_main(*TINY, "--out", str(out)).returncode == 0
    holder = RunLock(out).acquire()  # a run writing into the folder
    try:
        before = snapshot(out)
        for extra in ([], ["--force"]):
            line = last_line(run_main(*TINY, *extra, "--out", str(out)))
            assert "not empty" in line or f"pid {os.getpid()}" in line
        line = last_line(run_main("search", "--resume", str(out)))
        assert f"being written by another nasdip run (host {socket.gethostname()}, pid {os.getpid()})" in line
        assert snapshot(out) == before
        assert run_main("report", str(out)).returncode == 0, "report reads without the lock"
    finally:
        holder.release()


def test_a_second_run_into_a_folder_another_process_writes_is_refused(tmp_path):
    """The lock is held by another live process (as a running search holds it): a new run, even with
    --force, is refused naming that process, and nothing in the folder changes (a resume is refused
    the same way: test_a_second_writer_is_refused_and_changes_nothing)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"population": 4}')
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nasdip_deap.runfolder import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)",
                               str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        assert f"pid {holder.pid}" in last_line(run_main(*TINY, "--force", "--out", str(out)))
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.communicate()


def test_a_stale_lock_is_taken_over_and_a_foreign_host_is_refused(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{socket.gethostname()} {dead.pid}\n")
    done = run_main(*TINY, "--force", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "taking over the lock" in done.stderr and (out / LOCK_NAME).read_text() == ""
    (out / LOCK_NAME).write_text("some-other-host 4242\n")
    assert "locked by host some-other-host" in last_line(run_main(*TINY, "--force", "--out", str(out)))


def test_an_unwritable_output_folder_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert "cannot create output folder" in last_line(run_main(*TINY, "--out", str(blocker / "run")))
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("nasdip_deap.runfolder.os.open", denied)
    assert "Permission denied" in last_line(run_main(*TINY, "--out", str(tmp_path / "denied")))


# -- values that cannot be right, options that do not apply ------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--population", "100000000"], "--population must be a whole number between 1 and 100,000"),
    (["--iterations", "1000000000"], "--iterations must be a whole number between 1 and 1,000,000"),
    (["--generations", "-1"], "--generations must be a whole number between 0"),
    (["--ensemble", "0"], "--ensemble must be a whole number between 1"),
    (["--cxpb", "1.5"], "--cxpb must be a number between 0 and 1"),
    (["--mutation", "flip-bit:indpb=2"], "indpb must be a number between 0 and 1, got 2"),
    (["--crossover", "uniform:indpb=7"], "indpb must be a number between 0 and 1, got 7"),
    (["--mutation", "flip-bit:indpb=abc"], "indpb must be a number between 0 and 1, got 'abc'"),
    (["--selection", "tournament:tournsize=0"], "tournsize must be a whole number >= 1, got 0"),
    (["--fidelity", "halving:eta=1"], "eta must be a whole number >= 2, got 1"),
    (["--proxy", "crops:n=0"], "n must be a whole number between 1 and 64, got 0"),
    (["--proxy", "crops:size=4"], "below the 8 px a 3-level network needs"),
    (["--proxy", "crops:size=64"], "not smaller than the 16x16 px image"),
    (["--proxy", "downscale"], "cannot be halved and keep 96 px"),
    (["--proxy", "downscale:size=4"], "below the 8 px a 3-level network needs"),
    (["--mask", "m.png"], "--mask applies to task inpaint, not denoise"),
    (["--holdout", "0.2", "--fitness", "reference"], "--holdout applies to blind fitness"),
    (["--cost", "fit_seconds"], "--cost is the second objective of a multi-objective algorithm"),
    (["--finalist-repeats", "3"], "--finalist-repeats applies with --finalists N"),
    (["--final-holdout", "--fitness", "reference"], "--final-holdout applies to blind fitness"),
    (["--crop", "40000"], "--crop 40000 is larger than the image"),
])
def test_values_that_cannot_be_right_or_do_not_apply(args, needle, tmp_path):
    out = tmp_path / "run"
    line = last_line(run_main(*TINY, *args, "--out", str(out)))
    assert needle in line, line
    assert not out.exists()


def test_a_bad_number_prints_one_line_not_the_usage_block(tmp_path):
    proc = run_main("search", "--population", "two", "--out", str(tmp_path / "run"))
    line = last_line(proc)
    assert line.startswith("nasdip search: error: argument --population") and "see `nasdip search --help`" in line
    assert "usage:" not in proc.stderr


def test_restore_refuses_levels_that_do_not_match_the_genome(tmp_path):
    from nasdip_deap import GenomeSpec, classical_dip

    genome = tmp_path / "genome.json"
    genome.write_text(json.dumps({"bits": GenomeSpec(levels=5).encode(classical_dip(5)),
                                  "spec": GenomeSpec(levels=5).to_dict()}))
    line = last_line(run_main("restore", "--genome", str(genome), "--levels", "3", "--crop", "32",
                              "--out", str(tmp_path / "r")))
    assert "--levels 3 does not apply" in line and "5 levels" in line


def test_a_damaged_best_json_makes_report_fail_with_one_line(tmp_path):
    out = tmp_path / "run"
    assert run_main(*TINY, "--out", str(out)).returncode == 0
    (out / "best.json").write_text('{"bits": [0, 1')
    assert "best.json" in last_line(run_main("report", str(out)))


def test_a_forced_rerun_replaces_the_previous_runs_files_but_keeps_the_cache(tmp_path):
    out = tmp_path / "run"
    assert run_main(*TINY, "--out", str(out)).returncode == 0
    (out / "notes.txt").write_text("mine")
    assert run_main(*TINY, "--seed", "5", "--force", "--out", str(out)).returncode == 0
    records = read_jsonl(out / "evaluations.jsonl")
    logbook = json.loads((out / "logbook.json").read_text())
    assert len(records) == sum(row["fits"] for row in logbook)  # this run's fits only
    assert json.loads((out / "config.json").read_text())["seed"] == 5
    assert (out / "notes.txt").read_text() == "mine" and len(read_jsonl(out / "cache.jsonl")) > len(records)


def test_resume_saves_file_options_as_absolute_paths(tmp_path, monkeypatch):
    from argparse import Namespace

    from nasdip_deap.resume import saved_settings

    monkeypatch.chdir(tmp_path)
    saved = saved_settings(Namespace(command="search", image="img.png", mask="mask.png", cache=["c.jsonl"]), tmp_path)
    assert saved["mask"] == str(tmp_path / "mask.png") and saved["image"] == str(tmp_path / "img.png")
    assert saved["cache"] == [str(tmp_path / "c.jsonl")]


def test_resume_on_another_kind_of_device_says_so(tmp_path):
    from nasdip_deap.errors import UserError
    from nasdip_deap.resume import check_context

    from .helpers import evaluator_for
    from .test_tasks import make_task

    evaluator = evaluator_for(make_task("denoise", torch.rand(3, 32, 32)), iterations=2, levels=3, search_fits=0)
    with pytest.raises(UserError, match="its fits ran on cuda.*--device cuda"):
        check_context({"context": "other", "cache": {"k": {"device": "cuda:0"}}}, evaluator, tmp_path)
    with pytest.raises(UserError, match="was an input image changed"):
        check_context({"context": "other", "cache": {"k": {"device": "cpu"}}}, evaluator, tmp_path)


def test_a_hall_of_fame_entry_restores_an_evolved_iterations_genome(tmp_path):
    out = tmp_path / "run"
    assert run_main(*TINY, "--evolve-iterations", "--out", str(out)).returncode == 0
    done = run_main("restore", "--genome", str(out / "hall_of_fame.json"), "--crop", "32", "--iterations", "4",
                    "--quiet", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr


def session_members(sid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(entry.name)
            if fields and int(fields[3]) == sid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("target", ["launcher", "group"])
def test_sigterm_to_a_scoop_run_leaves_no_process(tmp_path, target):
    """SIGTERM to SCOOP's launcher alone (SCOOP does not pass it on), or to the run's whole process group
    (timeout, a scheduler): the origin and every worker stop."""
    out = tmp_path / "run"
    proc = subprocess.Popen(["timeout", "600", sys.executable, "-m", "scoop", "-n", "2",
                             str(REPO / "nasdip_deap" / "__main__.py"), *SLOW, "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out / "checkpoint.pkl").exists() and proc.poll() is None:
        time.sleep(0.1)
    members = session_members(proc.pid)
    assert len(members) >= 4, members  # timeout, the launcher, the origin and a worker at least
    launcher = next(pid for pid in members if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3]
                    == [b"-m", b"scoop"])
    if target == "launcher":
        os.kill(launcher, signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    output = proc.communicate(timeout=30)[0]
    assert not session_members(proc.pid), output
    assert (out / "checkpoint.pkl").exists() and not (out / "best.json").exists()
