"""Engine speed options: bfloat16 autocast and channels-last on the CPU (a fast path where the CPU runs
bf16 natively), fp32 unchanged, the precision in every fit and in the cache key; on a GPU a
CUDA-graph fit follows the eager fit of the same seed, for every registered task."""
import dataclasses
import json

import pytest
import torch

from nasdip_deap import classical_dip, engine
from nasdip_deap.engine import GRAPH_WARMUP_STEPS, EngineOptions, Trainer, engine_options, fit
from nasdip_deap.registry import TASKS

from .conftest import run_main
from .test_tasks import make_task

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device (run on a GPU machine)")


def small_arch(reg_noise_std: float = 1 / 30):
    return dataclasses.replace(classical_dip(3), reg_noise_std=reg_noise_std)


@pytest.mark.parametrize("options", [EngineOptions(cuda_graph=True), EngineOptions(cuda_graph=True, channels_last=True)])
def test_cuda_graphs_leave_a_cpu_fit_unchanged(tiny_image, options):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    eager = fit(small_arch(), task, 8, device="cpu", seed=3,
                options=EngineOptions(channels_last=options.channels_last, cuda_graph=False))
    other = fit(small_arch(), task, 8, device="cpu", seed=3, options=options)
    assert other.loss_history == eager.loss_history and torch.equal(other.restored, eager.restored)


def narrow_arch():
    """A 3-level, 16-channel network: bf16 is emulated (slowly) on CPUs without native support."""
    from nasdip_deap import DecoderBlock, EncoderBlock

    return dataclasses.replace(small_arch(0.0), encoders=(EncoderBlock(16, 3, "stride", True),) * 3,
                               decoders=(DecoderBlock(16, 3, "bilinear", True),) * 3)


def test_bf16_on_the_cpu_trains_is_deterministic_and_really_bf16(tiny_image):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    fast = EngineOptions(precision="bf16", channels_last=True)
    a = fit(narrow_arch(), task, 40, device="cpu", seed=5, options=fast)
    b = fit(narrow_arch(), task, 40, device="cpu", seed=5, options=fast)
    full = fit(narrow_arch(), task, 40, device="cpu", seed=5, options=EngineOptions())
    assert a.precision == "bf16" and full.precision == "fp32"
    assert a.loss_history[-1] < a.loss_history[0] / 2  # it trains
    assert a.loss_history == b.loss_history and torch.equal(a.restored, b.restored)  # per seed
    assert a.loss_history != full.loss_history  # the autocast is really on
    assert a.restored.dtype == torch.float32 and abs(a.metrics["psnr"] - full.metrics["psnr"]) < 3


@pytest.mark.parametrize("native, amx, default", [(False, False, False), (True, False, False), (False, True, False),
                                                  (True, True, True)])
def test_bf16_is_the_default_only_where_it_was_measured_to_hold(monkeypatch, native, amx, default):
    """AMX: the quality rule held (docs/results.md); AVX-512 BF16 alone (AMD EPYC): it failed."""
    monkeypatch.setattr(engine, "cpu_bf16_accelerated", lambda: native)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": amx, "avx512_bf16": True})
    assert engine.cpu_bf16_default() is default


def test_auto_precision_is_bf16_only_where_the_cpu_runs_it_natively(monkeypatch):
    monkeypatch.setattr(engine, "cpu_bf16_default", lambda: False)
    assert engine_options("cpu") == EngineOptions(precision="fp32", channels_last=False)
    monkeypatch.setattr(engine, "cpu_bf16_default", lambda: True)
    assert engine_options("cpu") == EngineOptions(precision="bf16", channels_last=True)
    assert engine_options("cpu", precision="fp32") == EngineOptions()  # --precision fp32: today's fit
    assert engine_options("cpu", channels_last=False).channels_last is False
    assert engine_options("cuda", precision="auto").precision == "fp32"  # bf16 is no faster on GPUs
    assert engine_options("cpu", precision="bf16").precision == "bf16"


def test_fp32_fits_are_those_of_the_plain_engine(tiny_image, monkeypatch):
    """``auto`` on a CPU without native bf16, and ``--precision fp32``, run exactly the fp32 fit."""
    from nasdip_deap.runner import FitRunner
    from nasdip_deap.workers import torch_threads

    monkeypatch.setattr(engine, "cpu_bf16_default", lambda: False)
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    with torch_threads(1):
        plain = fit(small_arch(), task, 6, device="cpu", seed=2)
    for precision in ("auto", "fp32"):
        ours = FitRunner.create("cpu", 1, precision).fit(small_arch(), task, 6, seed=2)
        assert ours.loss_history == plain.loss_history and torch.equal(ours.restored, plain.restored)


def test_the_precision_reaches_every_fit_and_the_cache_key(tmp_path, write_png, tiny_image):
    """--precision bf16: search fits, finalists' re-fits, the final fits, restore and baseline all run
    in bf16; a cache of fp32 fits is not used by a bf16 run (other context)."""
    image = write_png("img.png", tiny_image[:, :16, :16])
    common = ["--image", str(image), "--levels", "2", "--iterations", "3", "--device", "cpu", "--quiet"]
    out = tmp_path / "bf16"
    done = run_main("search", *common, "--population", "3", "--generations", "1", "--finalists", "1",
                    "--finalist-repeats", "1", "--ensemble", "2", "--precision", "bf16", "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    best = json.loads((out / "best.json").read_text())
    assert records and all(r["precision"] == "bf16" for r in records)
    assert best["final"]["precision"] == "bf16" and best["final"]["ensemble"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["fitness"]["runner"]["precision"] == "bf16" and config["arguments"]["precision"] == "bf16"
    for command, extra in (("restore", ["--genome", str(out / "best.json")]), ("baseline", [])):
        done = run_main(command, *common, *extra, "--precision", "bf16", "--out", str(tmp_path / command))
        assert done.returncode == 0, done.stderr
        assert json.loads((tmp_path / command / "summary.json").read_text())["result"]["precision"] == "bf16"
    fp32 = tmp_path / "fp32"
    done = run_main("search", *common, "--population", "3", "--generations", "1", "--precision", "fp32",
                    "--cache", str(out / "cache.jsonl"), "--out", str(fp32))
    assert done.returncode == 0, done.stderr
    logbook = json.loads((fp32 / "logbook.json").read_text())
    assert sum(row["cache_hits"] for row in logbook) == 0 and logbook[0]["fits"] == 3


def test_cuda_graph_is_on_by_default_and_can_be_turned_off():
    from nasdip_deap.cli import build_parser

    assert build_parser().parse_args(["search"]).cuda_graph is True
    assert build_parser().parse_args(["search", "--no-cuda-graph"]).cuda_graph is False
    assert EngineOptions().cuda_graph


@needs_cuda
@pytest.mark.parametrize("name", TASKS.names())
def test_cuda_graph_fit_follows_the_eager_fit(tiny_image, name):
    task = make_task(name, tiny_image)
    holdout = (torch.rand(1, *task.observation.shape[-2:], generator=torch.Generator().manual_seed(0)) < 0.1).float()
    runs = {graph: fit(small_arch(), task, 60, device="cuda", seed=1, holdout=holdout, keep_best=True,
                       options=EngineOptions(cuda_graph=graph)) for graph in (False, True)}
    eager, graphed = runs[False], runs[True]
    assert graphed.iterations == eager.iterations == 60 and len(graphed.loss_history) == 60
    assert graphed.loss_history[0] == pytest.approx(eager.loss_history[0], rel=1e-3)
    assert graphed.loss_history[-1] < graphed.loss_history[0] / 2  # it trains
    assert abs(graphed.metrics["psnr"] - eager.metrics["psnr"]) < 1.0
    assert graphed.best_step is not None and graphed.restored.shape == eager.restored.shape


@needs_cuda
def test_cuda_graph_replays_draw_fresh_input_noise(tiny_image):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    trainer = Trainer(small_arch(), task, torch.device("cuda"), seed=0, options=EngineOptions(cuda_graph=True))
    for _ in range(GRAPH_WARMUP_STEPS + 1):
        trainer.step()
    assert trainer.graph is not None  # captured after the warm-up
    first = trainer.noise.clone()
    params = [p.detach().clone() for p in trainer.net.parameters()]
    trainer.step()
    assert not torch.equal(trainer.noise, first)  # the replay drew new noise
    assert any(not torch.equal(p, q) for p, q in zip(trainer.net.parameters(), params))  # and trained
