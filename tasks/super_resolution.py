"""Super-resolution by a factor of 2, 4 or 8.

Downsampler (observation and forward model alike): ``torch.nn.functional.interpolate`` with
``mode="bicubic", antialias=True`` to exactly 1/scale of each side, i.e. a bicubic kernel stretched
by the factor (the same filter as Pillow's ``Image.resize(..., BICUBIC)`` when shrinking). It is
differentiable, so the loss compares the downsampled network output with the low-resolution
observation while the network works at full resolution. A clean image whose sides are not
multiples of the factor is trimmed to the largest centred part whose sides are; quality is PSNR and SSIM on
the luma (Y) channel with a border of ``scale`` pixels cropped, as the SR literature reports them.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from nasdip_deap import metrics
from nasdip_deap.errors import UserError
from nasdip_deap.params import Param
from nasdip_deap.registry import TASKS

from .base import Option, Task

SCALES = (2, 4, 8)


def downsample(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downsampling of (C, H, W) or (N, C, H, W) by ``scale`` (differentiable)."""
    batch = img if img.dim() == 4 else img.unsqueeze(0)
    h, w = batch.shape[-2:]
    small = F.interpolate(batch, size=(h // scale, w // scale), mode="bicubic", antialias=True,
                          align_corners=False)
    return small if img.dim() == 4 else small[0]


def crop_border(img: torch.Tensor, border: int) -> torch.Tensor:
    return img[..., border:img.shape[-2] - border, border:img.shape[-1] - border] if border else img


def check_scale(scale) -> int:
    if scale not in SCALES:
        raise UserError(f"super-resolution --scale must be one of {', '.join(map(str, SCALES))}; got {scale}")
    return int(scale)


@TASKS.register("super-resolution")
class SuperResolution(Task):
    """Upscale a low-resolution image by 2, 4 or 8 (antialiased bicubic downsampler in the loss)."""

    name = "super-resolution"
    summary = "upscale a low-resolution image by 2, 4 or 8 (antialiased bicubic downsampler in the loss)"
    noiseless = True

    def __init__(self, observation, clean=None, observed_mask=None, options=None):
        super().__init__(observation, clean=clean, observed_mask=observed_mask, options=options)
        self.scale = check_scale(self.options.get("scale", 4))

    OPTIONS = (Option("scale", 4, "upscaling factor; a clean image is downsampled by it (antialiased bicubic), an "
                      "observed image is the low-resolution input", Param(int, choices=SCALES)),)

    @classmethod
    def output_scale(cls, options: dict) -> int:
        return check_scale(options.get("scale", 4))

    @classmethod
    def from_clean(cls, clean: torch.Tensor, options: dict, seed: int) -> "SuperResolution":
        scale = check_scale(options.get("scale", 4))
        h, w = clean.shape[-2:]
        if h % scale or w % scale:  # keep the largest centred part whose sides are multiples of the factor
            th, tw = h // scale * scale, w // scale * scale
            if not th or not tw:
                raise UserError(f"the image is {w}x{h} px, smaller than the super-resolution factor {scale}")
            top, left = (h - th) // 2, (w - tw) // 2
            clean = clean[..., top:top + th, left:left + tw].contiguous()
            logging.getLogger("nasdip").info("super-resolution x%d: the %dx%d px image is trimmed to %dx%d px "
                                             "(sides that are multiples of %d)", scale, w, h, tw, th, scale)
        observation = downsample(clean, scale).clamp(0, 1)
        return cls(observation, clean=clean, options={"scale": scale})

    @classmethod
    def from_observation(cls, observation: torch.Tensor, options: dict,
                         clean: torch.Tensor | None = None) -> "SuperResolution":
        return cls(observation, clean=clean, options={"scale": check_scale(options.get("scale", 4))})

    @property
    def output_size(self) -> tuple[int, int]:
        h, w = self.observation.shape[-2:]
        return h * self.scale, w * self.scale

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        return downsample(output, self.scale)

    def _y(self, image: torch.Tensor) -> torch.Tensor:
        b = self.scale if min(image.shape[-2:]) > 4 * self.scale else 0  # tiny test images keep their border
        return crop_border(metrics.rgb_to_y(image.clamp(0, 1)), b)

    def true_psnr(self, restored: torch.Tensor, clean: torch.Tensor) -> float:
        """PSNR on the Y channel, ``scale`` border pixels cropped (the SR literature's convention)."""
        return metrics.psnr(self._y(restored), self._y(clean))

    def quality(self, restored: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """PSNR and SSIM on the Y channel, ``scale`` border pixels cropped; RGB PSNR beside them."""
        y_restored, y_clean = self._y(restored), self._y(clean)
        return {"psnr": metrics.psnr(y_restored, y_clean), "ssim": metrics.ssim(y_restored, y_clean),
                "psnr_rgb": metrics.psnr(restored.clamp(0, 1), clean)}

    def preview(self) -> torch.Tensor:
        """The low-resolution observation enlarged (nearest neighbour) to the output size."""
        return F.interpolate(self.observation.unsqueeze(0), scale_factor=self.scale, mode="nearest")[0]
