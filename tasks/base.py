"""The task interface: one object per restoration problem, with one job each part.

A task knows its observation (the degraded image the network must explain), the forward model
that maps a network output to observation space (used in the loss), which observed pixels are
valid, and how to score a restoration against ground truth when one is known. Fitness modes and
held-out pixels are handled generically on top of ``observed_mask`` (see ``nasdip_deap.fitness``).

A task declares its options as data (``OPTIONS``: name, default, help, type and range); the command
line builds its flags from them (``--name-with-dashes``) and the Python API takes them as keywords, so
a task plugin writes no argparse code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from nasdip_deap import metrics
from nasdip_deap.errors import UserError
from nasdip_deap.params import Param


@dataclass(frozen=True)
class Option:
    """One option of a task: its name (the flag is ``--name`` with dashes), default, help text, and
    declared type and range. ``file`` marks a path to a side file that ``read_files`` reads."""

    name: str
    default: Any = None
    help: str = ""
    param: Param = field(default_factory=Param)
    file: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Task:
    """Base class; subclasses register with ``@TASKS.register("name")``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    OPTIONS: ClassVar[tuple[Option, ...]] = ()
    # True when the observation is the clean image through a known operator with no noise added (a mask, a
    # downsampler): a fit has no noise to overfit, so its output keeps improving for thousands of steps and
    # the final fits of a whole photo train to --final-cap instead of stopping at a held-out peak
    noiseless: ClassVar[bool] = False

    def __init__(self, observation: torch.Tensor, clean: torch.Tensor | None = None,
                 observed_mask: torch.Tensor | None = None, options: dict | None = None):
        self.observation = observation.float().contiguous()  # (C, h, w)
        self.clean = None if clean is None else clean.float().contiguous()  # (C, H, W)
        if observed_mask is None:
            observed_mask = torch.ones(1, *self.observation.shape[-2:])
        self.observed_mask = observed_mask.float().contiguous()  # (1, h, w), 1 = usable in the loss
        self.options = dict(options or {})

    # -- options ---------------------------------------------------------------------------------
    @classmethod
    def resolve_options(cls, given: dict) -> dict:
        """The task's options from the ``given`` ones: unknown names refused, each value checked
        against its declared type and range, defaults filled in, then ``check_options``."""
        declared = {o.name: o for o in cls.OPTIONS}
        for name in given:
            if name not in declared:
                listed = ", ".join(o.name for o in cls.OPTIONS) or "none"
                raise UserError(f"task {cls.name!r} takes no option {name!r} (its options: {listed})")
        values = {}
        for option in cls.OPTIONS:
            if option.name in given and given[option.name] is not None:
                value = given[option.name]
                values[option.name] = str(value) if option.file else option.param.check(option.flag, value)
            else:
                values[option.name] = option.default
        return cls.check_options(values)

    @classmethod
    def check_options(cls, options: dict) -> dict:
        """Checks across options, and the JSON-able options the task keeps (None values dropped)."""
        return {k: v for k, v in options.items() if v is not None}

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

    def crop(self, top: int, left: int, height: int, width: int) -> "Task":
        """The same problem restricted to a window of the restored image (restored pixels; for a task
        whose output is ``s`` times its observation, the window's corners and sides are multiples of
        ``s``). Proxies score candidates on such windows of large images."""
        s = self.output_size[0] // self.observation.shape[-2]
        window = (slice(None), slice(top // s, (top + height) // s), slice(left // s, (left + width) // s))
        clean = None if self.clean is None else self.clean[:, top:top + height, left:left + width]
        return type(self)(self.observation[window], clean=clean, observed_mask=self.observed_mask[window],
                          options=self.options)

    def downscale(self, factor: int) -> "Task":
        """The same problem on a copy ``factor`` times smaller along each side: every ``factor`` x
        ``factor`` block of observed pixels becomes one pixel, the mean of its known pixels, known when
        at least half of the block is (the ground truth is block-averaged too). Proxies score
        candidates on such copies of large images: unlike a crop, the copy keeps the whole scene."""
        h, w = (self.observation.shape[-2] // factor * factor, self.observation.shape[-1] // factor * factor)
        s = self.output_size[0] // self.observation.shape[-2]
        mask = self.observed_mask[:, :h, :w]
        known = F.avg_pool2d(mask[None], factor)[0]
        observation = F.avg_pool2d((self.observation[:, :h, :w] * mask)[None], factor)[0] / known.clamp_min(1e-6)
        clean = None if self.clean is None else F.avg_pool2d(self.clean[None, :, :h * s, :w * s], factor)[0]
        return type(self)(observation.clamp(0, 1), clean=clean, observed_mask=(known >= 0.5).float(),
                          options=self.options)

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
