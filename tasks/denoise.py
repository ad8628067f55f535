"""Gaussian denoising: the observation is the clean image plus N(0, sigma^2) noise (0-255 scale)."""
from __future__ import annotations

import torch

from nasdip_deap.params import Param
from nasdip_deap.registry import TASKS

from .base import Option, Task


@TASKS.register("denoise")
class Denoise(Task):
    """Remove additive white Gaussian noise (sigma on the 0-255 scale)."""

    name = "denoise"
    summary = "remove additive white Gaussian noise (sigma on the 0-255 scale)"

    OPTIONS = (Option("sigma", 25.0, "noise std on the 0-255 scale added to a clean image", Param(float, low=0)),)

    @classmethod
    def from_clean(cls, clean: torch.Tensor, options: dict, seed: int) -> "Denoise":
        sigma = float(options.get("sigma", 25.0))
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(clean.shape, generator=gen) * (sigma / 255.0)
        observation = (clean + noise).clamp(0, 1)  # as the reference notebooks: noisy image clipped to [0, 1]
        return cls(observation, clean=clean, options={"sigma": sigma})
