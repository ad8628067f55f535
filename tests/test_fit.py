"""The DIP fitting engine: it learns, it is deterministic, it reports what it did."""
import random

import torch

from nasdip_deap import GenomeSpec, classical_dip, decode
from nasdip_deap.engine import fit, resolve_device
from nasdip_deap.metrics import psnr
from nasdip_deap.registry import TASKS


def small_arch():
    spec = GenomeSpec(levels=3)
    bits = spec.encode(classical_dip(3))
    arch = spec.decode(bits)
    import dataclasses
    from nasdip_deap import DecoderBlock, EncoderBlock
    return dataclasses.replace(arch, encoders=(EncoderBlock(16, 3, "stride", True),) * 3,
                               decoders=(DecoderBlock(16, 3, "bilinear", True),) * 3, reg_noise_std=0.0,
                               learning_rate=0.01)


def test_fit_improves_on_the_noisy_image(tiny_image):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    result = fit(small_arch(), task, iterations=150, device="cpu", seed=0)
    assert result.iterations == 150 and len(result.loss_history) == 150
    assert result.loss_history[-1] < result.loss_history[0] / 2
    assert result.restored.shape == tiny_image.shape
    assert result.metrics["psnr"] > psnr(task.observation, tiny_image) + 1.0
    assert result.psnr_history and result.psnr_history[-1][0] == 150
    assert result.seconds > 0


def test_fit_is_deterministic_for_a_seed(tiny_image):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    arch = decode(GenomeSpec().random_bits(random.Random(1)))
    a = fit(arch, task, iterations=12, device="cpu", seed=7)
    b = fit(arch, task, iterations=12, device="cpu", seed=7)
    c = fit(arch, task, iterations=12, device="cpu", seed=8)
    assert a.loss_history == b.loss_history
    assert torch.equal(a.restored, b.restored)
    assert a.loss_history != c.loss_history


def test_fit_leaves_callers_rng_alone(tiny_image):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(small_arch(), task, iterations=3, device="cpu", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_holdout_gives_blind_score(tiny_image):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25}, seed=0)
    holdout = (torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    result = fit(small_arch(), task, iterations=20, device="cpu", seed=0, holdout=holdout)
    assert "heldout_psnr" in result.metrics and result.heldout_history


def test_auto_device_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
