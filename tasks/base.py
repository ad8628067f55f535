"""The task interface: one object per restoration problem, with one job each part.

A task knows its observation (the degraded image the network must explain), the forward model
that maps a network output to observation space (used in the loss), which observed pixels are
valid, and how to score a restoration against ground truth when one is known. Fitness modes and
held-out pixels are handled generically on top of ``observed_mask`` (see ``nasdip_deap.fitness``).
"""
from __future__ import annotations

import argparse
from typing import Any, ClassVar

import torch

from nasdip_deap import metrics


class Task:
    """Base class; subclasses register with ``@TASKS.register("name")``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, observation: torch.Tensor, clean: torch.Tensor | None = None,
                 observed_mask: torch.Tensor | None = None, options: dict | None = None):
        self.observation = observation.float().contiguous()  # (C, h, w)
        self.clean = None if clean is None else clean.float().contiguous()  # (C, H, W)
        if observed_mask is None:
            observed_mask = torch.ones(1, *self.observation.shape[-2:])
        self.observed_mask = observed_mask.float().contiguous()  # (1, h, w), 1 = usable in the loss
        self.options = dict(options or {})

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this task's own CLI options (names must not clash with other tasks')."""

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict:
        """The task options chosen on the command line (JSON-able; saved in the run config)."""
        return {}

    @classmethod
    def output_scale(cls, options: dict) -> int:
        """Output pixels per observed pixel along each side (1 except for super-resolution); a
        ``--clean`` image given with ``--observed`` is cropped ``output_scale`` times larger."""
        return 1

    @classmethod
    def read_files(cls, options: dict, image_size: tuple[int, int], crop: int | None) -> dict[str, Any]:
        """Read the side files the options name (an inpainting mask, ...), check them against the
        uncropped image size (H, W) and crop them like the image. The result reaches ``from_clean`` /
        ``from_observation`` as keyword arguments, so options stay JSON-able. None by default."""
        return {}

    @classmethod
    def from_clean(cls, clean: torch.Tensor, options: dict, seed: int) -> "Task":
        """Benchmark mode: synthesise the observation from a clean image (ground truth known).
        Subclasses whose ``read_files`` returns entries accept them as extra keyword arguments."""
        raise NotImplementedError

    @classmethod
    def from_observation(cls, observation: torch.Tensor, options: dict,
                         clean: torch.Tensor | None = None) -> "Task":
        """User mode: the observation is given as it is."""
        return cls(observation, clean=clean, options=options)

    # -- model -----------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.observation.shape[0]

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the restored image the network produces."""
        return tuple(self.observation.shape[-2:])

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        """Map a network output (N, C, H, W) to observation space (N, C, h, w). Identity by default."""
        return output

    def true_psnr(self, restored: torch.Tensor, clean: torch.Tensor) -> float:
        """The PSNR this task reports, cheap enough for every log point of a fit (``psnr_history``)."""
        return metrics.psnr(restored, clean)

    def quality(self, restored: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """PSNR and SSIM of a (C, H, W) restoration against the clean image."""
        return {"psnr": self.true_psnr(restored, clean), "ssim": metrics.ssim(restored, clean)}

    def preview(self) -> torch.Tensor:
        """The observation as a picture at output size, for degraded.png and the report."""
        return self.observation

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, **self.options}
