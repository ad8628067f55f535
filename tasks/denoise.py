"""Gaussian denoising: the observation is the clean image plus N(0, sigma^2) noise (0-255 scale)."""
from __future__ import annotations

import argparse

import torch

from nasdip_deap.errors import UserError
from nasdip_deap.registry import TASKS

from .base import Task


@TASKS.register("denoise")
class Denoise(Task):
    """Remove additive white Gaussian noise (sigma on the 0-255 scale)."""

    name = "denoise"
    summary = "remove additive white Gaussian noise (sigma on the 0-255 scale)"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sigma", type=float, default=25.0,
                            help="denoise: noise std on the 0-255 scale added to a clean --image (default 25)")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict:
        sigma = getattr(args, "sigma", 25.0)
        if sigma is None or sigma < 0:
            raise UserError(f"--sigma must be >= 0, got {sigma}")
        return {"sigma": float(sigma)}

    @classmethod
    def from_clean(cls, clean: torch.Tensor, options: dict, seed: int) -> "Denoise":
        sigma = float(options.get("sigma", 25.0))
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(clean.shape, generator=gen) * (sigma / 255.0)
        observation = (clean + noise).clamp(0, 1)  # as the reference notebooks: noisy image clipped to [0, 1]
        return cls(observation, clean=clean, options={"sigma": sigma})
