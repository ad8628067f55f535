"""Engine speed options (bf16, channels-last, CUDA graphs): on the CPU they leave a fit as it is; on a
GPU a CUDA-graph fit follows the eager fit of the same seed, for every registered task."""
import dataclasses

import pytest
import torch

from nasdip_deap import classical_dip
from nasdip_deap.fit import GRAPH_WARMUP_STEPS, EngineOptions, Trainer, fit
from nasdip_deap.fitness import FitnessSettings
from nasdip_deap.registry import TASKS

from .test_tasks import make_task

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA device (run on a GPU machine)")


def small_arch(reg_noise_std: float = 1 / 30):
    return dataclasses.replace(classical_dip(3), reg_noise_std=reg_noise_std)


@pytest.mark.parametrize("options", [EngineOptions(cuda_graph=True), EngineOptions(precision="bf16"),
                                     EngineOptions(cuda_graph=True, channels_last=True)])
def test_gpu_only_options_leave_a_cpu_fit_unchanged(tiny_image, options):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    eager = fit(small_arch(), task, 8, device="cpu", seed=3,
                options=EngineOptions(channels_last=options.channels_last, cuda_graph=False))
    other = fit(small_arch(), task, 8, device="cpu", seed=3, options=options)
    assert other.loss_history == eager.loss_history and torch.equal(other.restored, eager.restored)


def test_cuda_graph_is_on_by_default_and_can_be_turned_off():
    from nasdip_deap.cli import build_parser

    assert build_parser().parse_args(["search"]).cuda_graph is True
    assert build_parser().parse_args(["search", "--no-cuda-graph"]).cuda_graph is False
    assert FitnessSettings().cuda_graph and EngineOptions().cuda_graph


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
