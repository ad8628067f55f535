"""The DIP fitting engine: train one network from fixed noise to explain one observation."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch

from . import metrics
from .architecture import Architecture
from .errors import FitError
from .network import build_network


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class FitResult:
    """What one fit produced; ``restored`` is the exponential moving average of the outputs."""

    restored: torch.Tensor
    loss_history: list[float]
    psnr_history: list[tuple[int, float]] = field(default_factory=list)  # true PSNR, when clean is known
    heldout_history: list[tuple[int, float]] = field(default_factory=list)  # PSNR on held-out pixels
    iterations: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    metrics: dict = field(default_factory=dict)
    stopped_early: bool = False


def make_input(arch: Architecture, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """DIP's fixed input: uniform noise x 0.1 with ``input_depth`` channels at the output size."""
    return torch.rand((1, arch.input_depth, *size), generator=generator) * 0.1


def fit(arch: Architecture, task, iterations: int, device: str = "auto", seed: int = 0,
        holdout: torch.Tensor | None = None, log_every: int | None = None, ema: float = 0.99,
        stopper=None) -> FitResult:
    """Train ``arch`` on ``task`` for ``iterations`` Adam steps and return the restoration.

    ``holdout`` is a (1, h, w) mask of observed pixels kept out of the loss; the fit then reports
    ``heldout_psnr``, the blind fitness. ``stopper`` (optional) is called as
    ``stopper(step, heldout_psnr)`` at each log point and ends the fit when it returns True.
    Deterministic on the CPU for a given seed; the caller's RNG state is left untouched.
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    dev = resolve_device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _fit(arch, task, iterations, dev, seed, holdout, log_every, ema, stopper)


def _fit(arch, task, iterations, dev, seed, holdout, log_every, ema, stopper) -> FitResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    size = task.output_size
    net = build_network(arch, out_channels=task.channels, image_size=size).to(dev)
    z = make_input(arch, size, gen).to(dev)
    obs = task.observation.unsqueeze(0).to(dev)
    observed = task.observed_mask.unsqueeze(0).to(dev)
    train_mask = observed if holdout is None else observed * (1 - holdout.unsqueeze(0).to(dev))
    held = None if holdout is None else (observed * holdout.unsqueeze(0).to(dev))
    full_mask = bool(train_mask.min() > 0)
    clean = None if task.clean is None else task.clean.unsqueeze(0).to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=arch.learning_rate)
    log_every = log_every or max(1, iterations // 50)
    noise = torch.empty_like(z)
    result = FitResult(restored=torch.empty(0), loss_history=[], device=str(dev))
    average = None
    step = 0
    for step in range(1, iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        net_input = z
        if arch.reg_noise_std > 0:
            noise.normal_(generator=None)
            net_input = z + noise * arch.reg_noise_std
        out = net(net_input)
        predicted = task.forward(out)
        loss = metrics.mse(predicted, obs, None if full_mask else train_mask)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if value != value or value == float("inf"):
            raise FitError(f"non-finite loss at step {step}")
        result.loss_history.append(value)
        with torch.no_grad():
            out = out.detach()
            decay = min(ema, (1 + step) / (10 + step))  # warm-up: the first outputs must not linger
            average = out if average is None else average.mul_(decay).add_(out, alpha=1 - decay)
            if step % log_every == 0 or step == iterations:
                if clean is not None:
                    result.psnr_history.append((step, metrics.psnr(average, clean)))
                if held is not None:
                    score = metrics.psnr(task.forward(average), obs, held)
                    result.heldout_history.append((step, score))
                    if stopper is not None and stopper(step, score):
                        result.stopped_early = True
                        break
    restored = average[0].detach().float().cpu()
    result.restored = restored
    result.iterations = step
    result.seconds = time.perf_counter() - start
    if held is not None and result.heldout_history:
        result.metrics["heldout_psnr"] = result.heldout_history[-1][1]
    if task.clean is not None:
        result.metrics.update(task.quality(restored, task.clean))
    return result


def copy_task_without_clean(task):
    """A shallow copy of ``task`` with the ground truth removed (what blind fitness may see)."""
    blind = copy.copy(task)
    blind.clean = None
    return blind
