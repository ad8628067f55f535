"""The search-cost scripts run on tiny settings, print their tables and refuse bad rows in one line.
They run in this process (``main(argv)``, conftest puts benchmarks/ on the path); the parts that
use processes still spawn real ones."""
import importlib
import json
import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import torch

from .conftest import call_main


def run_script(name: str, *args: str, data: Path) -> subprocess.CompletedProcess:
    """``python benchmarks/NAME ARGS`` with ``NASDIP_DATA=data`` (no shared images: the embedded
    default image), run as ``main(ARGS)``: its exit code, stdout and stderr."""
    module = importlib.import_module(name.removesuffix(".py"))
    threads = torch.get_num_threads()  # the scripts fit with one thread, as a search does
    try:
        with mock.patch.dict(os.environ, {"NASDIP_DATA": str(data)}):
            return call_main(module.main, list(args), [name, *args])
    finally:
        torch.set_num_threads(threads)


def test_search_cost_prints_a_row_per_fidelity(tmp_path):
    proc = run_script("search_cost.py", "--crop", "32", "--population", "2", "--generations", "1", "--iterations",
                      "8", "--rows", "full", "adaptive", "full/es=2", "--final-seeds", "1", data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "image astronaut crop 32" in proc.stdout
    assert "adaptive: iterations ratio" in proc.stdout and "full/es=2: iterations ratio" in proc.stdout
    table = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()}
    assert table["full"][-1] == "-"  # early-stopped rows also re-fit stopping on their own peak; full does not
    assert float(table["adaptive"][-1]) > 0 and float(table["full/es=2"][-1]) > 0


def test_search_cost_refuses_a_bad_row_before_any_search(tmp_path):
    for row in ("full/es=x", "quarter", "full/es=0"):
        proc = run_script("search_cost.py", "--rows", row, data=tmp_path)
        assert proc.returncode == 2 and "bad row" in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stdout == ""  # refused before the first search started


def test_learning_curves_prints_its_rank_table(tmp_path):
    proc = run_script("learning_curves.py", "--crop", "32", "--iterations", "24", "--log-every", "4",
                      "--mutants", "2", "--random", "1", "--jobs", "1", data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("4 architectures") or "left out" in proc.stdout
    assert any(line.split()[0] == "100%" for line in lines if line.strip())
    assert "output at the held-out peak" in lines[-1]


def test_gpu_report_runs_its_parts_on_the_cpu(tmp_path):
    """The report's code paths (step rows for every engine option, the PSNR comparison, concurrent
    processes, whole-photo sizes, the whole-process timing), smoke-tested on the CPU where the GPU-only
    options are no-ops."""
    proc = run_script("gpu_report.py", "--device", "cpu", "--size", "32", "--step-sizes", "32", "--steps", "2",
                      "--warmup", "1",
                      "--iterations", "2", "--seeds", "1", "--concurrency", "1", "--fits", "1",
                      "--graph-modes", "0", "--concurrency-iterations", "2", "--large-sizes", "32x40",
                      "--large-iterations", "2", "--parts", "steps", "psnr", "concurrency", "large", "process",
                      data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "## DIP step, classical DIP, 32x32" in out and "nasdip bf16 channels-last" in out
    assert "nasdip fp32 cuda-graph" not in out  # no graph rows on the CPU: they would repeat the eager ones
    assert "mean fp32 graph - fp32: +0.000 dB" in out  # CUDA graphs are a no-op on the CPU
    assert "eager      1 concurrent: 1 fits" in out
    assert "40x32: 1 concurrent:" in out and "fits/hour" in out
    assert "whole process: skipped" in out or "ratio" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_gpu_report_without_cuda_says_so(tmp_path):
    proc = run_script("gpu_report.py", data=tmp_path)
    assert proc.returncode == 2 and "no CUDA device here" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [("--device", "cpu", "--size", "0"), ("--device", "cpu", "--step-sizes", "8"),
                                  ("--device", "cpu", "--concurrency-iterations", "0"), ("--device", "nope"),
                                  ("--device", "cpu", "--steps", "x"), ("--device", "cuda", "--warmup", "2")])
def test_gpu_report_refuses_bad_input_in_one_line(tmp_path, args):
    proc = run_script("gpu_report.py", *args, data=tmp_path)
    assert proc.returncode == 2 and "error:" in proc.stderr.splitlines()[-1] and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # refused before any measurement


def test_precision_quality_compares_bf16_with_fp32(tmp_path):
    out = tmp_path / "precision.json"
    proc = run_script("precision_quality.py", "--cells", "denoise:astronaut", "inpaint:astronaut", "--size", "32",
                      "--iterations", "2", "--seeds", "1", "--out", str(out), data=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["task"] for r in rows] == ["denoise", "inpaint"]
    assert all(r["fp32"]["psnr"] != r["bf16 channels-last"]["psnr"] for r in rows)  # really two precisions
    assert "| all | 2 |" in proc.stdout and "Rule (the mean drops by no more than 0.1 dB" in proc.stdout


@pytest.mark.parametrize("mean, worst_task, met", [
    (+0.42, +0.20, True),    # a gain passes (the old rule, |mean| <= 0.1, failed it)
    (+0.21, -0.20, True),    # AMX's measured table: one task at the bound
    (-0.10, -0.05, True),
    (-0.11, -0.05, False),   # the mean drops by more than 0.1 dB
    (+0.30, -0.21, False),   # one task loses more than 0.2 dB on average
])
def test_precision_rule_bounds_losses_not_gains(mean, worst_task, met):
    assert importlib.import_module("precision_quality").rule_met(mean, worst_task) is met
