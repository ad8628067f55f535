"""dip-step group: one DIP training iteration of classical DIP, ours against the reference code, and
our CPU precision/layout variants (fp32 or bf16 autocast, NCHW or channels-last).

The reference deep-image-prior implementation is measured side by side in the same run when
``NASDIP_REFERENCE_DIP`` points at a checkout of it (it is never copied into this project); without
it those rows are skipped with that reason. Two reference rows: ``reference-core`` (forward, MSE,
backward, Adam, output averaging: the same work as ours) and ``reference-notebook`` (its denoising
notebook's iteration, which also computes three PSNRs on the CPU every step).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nasdip_deap import classical_dip
from nasdip_deap.engine import EngineOptions, Trainer, cpu_bf16_accelerated
from nasdip_deap.registry import TASKS

SIZES = (64, 128, 256)
VARIANTS = {"fp32": EngineOptions(), "fp32-channels-last": EngineOptions(channels_last=True),
            "bf16": EngineOptions(precision="bf16"), "bf16-channels-last": EngineOptions(precision="bf16",
                                                                                        channels_last=True)}


def warm_up(step, benchmark) -> int:
    """Untimed steps before the timed one, only when it is timed (not under --benchmark-disable, as in
    CI); returns how many ran."""
    count = 0 if benchmark.disabled else 2
    for _ in range(count):
        step()
    return count


def noisy_task(size: int):
    gen = torch.Generator().manual_seed(size)
    clean = torch.rand(3, size, size, generator=gen)
    return TASKS.get("denoise").from_clean(clean, {"sigma": 25.0}, seed=0)


@pytest.fixture(scope="module")
def reference_skip():
    path = os.environ.get("NASDIP_REFERENCE_DIP")
    if not path or not (Path(path) / "models" / "skip.py").exists():
        pytest.skip("set NASDIP_REFERENCE_DIP to a deep-image-prior checkout to measure the reference side by side")
    sys.path.insert(0, path)
    try:
        from models.skip import skip  # the reference code (it patches nn.Module.add on import)
    finally:
        sys.path.remove(path)
    return skip


@pytest.mark.benchmark(group="dip-step")
@pytest.mark.parametrize("size", SIZES)
def test_nasdip_step(benchmark, size):
    trainer = Trainer(classical_dip(), noisy_task(size), torch.device("cpu"), seed=0)
    warmed = warm_up(trainer.step, benchmark)
    benchmark(trainer.step)
    assert trainer.steps >= warmed + 1 and torch.isfinite(trainer.average).all()


@pytest.mark.benchmark(group="dip-step-cpu-precision")
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", (64, 128))
def test_nasdip_step_precision_and_layout(benchmark, size, variant):
    """The CPU fast path's rows; compare within the group (same run, same machine)."""
    options = VARIANTS[variant]
    if options.precision == "bf16" and not cpu_bf16_accelerated():
        pytest.skip("this CPU has no native bf16 (AMX or AVX-512 BF16): oneDNN emulates it, many times slower")
    trainer = Trainer(classical_dip(), noisy_task(size), torch.device("cpu"), seed=0, options=options)
    warmed = warm_up(trainer.step, benchmark)
    benchmark(trainer.step)
    assert trainer.steps >= warmed + 1 and torch.isfinite(trainer.average).all()


def reference_step(skip, size: int, notebook: bool):
    """The reference denoising notebook's closure + Adam step, on the reference network."""
    from skimage.metrics import peak_signal_noise_ratio as compare_psnr

    torch.manual_seed(0)
    task = noisy_task(size)
    net = skip(32, 3, num_channels_down=[128] * 5, num_channels_up=[128] * 5, num_channels_skip=[4] * 5,
               upsample_mode="bilinear", need_sigmoid=True, need_bias=True, pad="reflection", act_fun="LeakyReLU")
    net_input_saved = torch.rand(1, 32, size, size) * 0.1
    noise = net_input_saved.clone()
    img_noisy = task.observation.unsqueeze(0)
    img_noisy_np, img_np = task.observation.numpy(), task.clean.numpy()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    mse = torch.nn.MSELoss()
    state = {"out_avg": None}

    def step():
        optimizer.zero_grad()
        net_input = net_input_saved + noise.normal_() * (1 / 30)
        out = net(net_input)
        out_avg = state["out_avg"]
        state["out_avg"] = out.detach() if out_avg is None else out_avg * 0.99 + out.detach() * 0.01
        loss = mse(out, img_noisy)
        loss.backward()
        if notebook:
            out_np = out.detach().cpu().numpy()[0]
            compare_psnr(img_noisy_np, out_np)
            compare_psnr(img_np, out_np)
            compare_psnr(img_np, state["out_avg"].detach().cpu().numpy()[0])
            loss.item()
        optimizer.step()
        return loss

    return step, state


@pytest.mark.benchmark(group="dip-step")
@pytest.mark.parametrize("variant", ["core", "notebook"])
@pytest.mark.parametrize("size", SIZES)
def test_reference_step(benchmark, reference_skip, size, variant):
    step, state = reference_step(reference_skip, size, variant == "notebook")
    warm_up(step, benchmark)
    benchmark(step)
    assert np.isfinite(float(step()))
