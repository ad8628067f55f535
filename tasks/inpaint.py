"""Inpainting: fill the missing pixels of an image whose known pixels are given by a mask.

The mask is a (1, H, W) tensor, 1 = known pixel, 0 = missing. It comes from a mask file (0 =
missing, any nonzero value = known, in any channel), from a random-pixel drop ratio, or from a
synthetic pattern (text or stripes) for benchmarks. The DIP loss sees only the known pixels
(``observed_mask`` is the mask); the missing pixels are zero in the observation and black in the
preview.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from nasdip_deap.errors import UserError
from nasdip_deap.image_io import center_crop, load_image, pil_to_tensor
from nasdip_deap.params import Param
from nasdip_deap.registry import TASKS

from .base import Option, Task

PATTERNS = ("text", "stripes")
DEFAULT_MISSING_RATIO = 0.5  # the "50% of pixels missing" restoration setting of the DIP paper
TEXT = "deep image prior needs no training data at all "


@TASKS.register("inpaint")
class Inpaint(Task):
    """Fill in missing pixels given a mask (0 = missing, nonzero = known) or a random/text/stripes mask."""

    name = "inpaint"
    summary = "fill in missing pixels given a mask (0 = missing, nonzero = known)"
    noiseless = True

    OPTIONS = (
        Option("mask", None, "mask image of the same size as the image (cropped like it); 0 = missing pixel, any "
               "nonzero value = known pixel", Param(str), file=True),
        Option("mask_ratio", None, "instead of a mask, drop this share of the pixels at random (0 < R < 1; "
               f"{DEFAULT_MISSING_RATIO} when no mask is given)", Param(float, low=0, high=1)),
        Option("mask_pattern", None, "instead of a mask, a synthetic mask for benchmarks: a text overlay or "
               "horizontal stripes", Param(str, choices=PATTERNS)),
    )

    @classmethod
    def check_options(cls, options: dict) -> dict:
        given = {k: v for k, v in options.items() if v is not None}
        if len(given) > 1:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UserError(f"inpaint takes one mask source; got {flags}")
        options = given or {"mask_ratio": DEFAULT_MISSING_RATIO}
        check_options(options)
        return options

    @classmethod
    def read_files(cls, options: dict, image_size: tuple[int, int], crop: int | None) -> dict:
        if "mask" not in options:
            return {}
        return {"mask": center_crop(read_mask(options["mask"], image_size), crop)}

    @classmethod
    def from_clean(cls, clean: torch.Tensor, options: dict, seed: int,
                   mask: torch.Tensor | None = None) -> "Inpaint":
        check_options(options)
        if mask is None:
            mask = make_mask(options, tuple(clean.shape[-2:]), seed)
        check_mask(mask, tuple(clean.shape[-2:]))
        return cls(clean * mask, clean=clean, observed_mask=mask, options=options)

    @classmethod
    def from_observation(cls, observation: torch.Tensor, options: dict, clean: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None) -> "Inpaint":
        check_options(options)
        if mask is None:
            if "mask" not in options:
                raise UserError("inpainting an --observed image needs its --mask (which pixels are missing); "
                                "--mask-ratio and --mask-pattern only degrade a clean --image")
            mask = read_mask(options["mask"], tuple(observation.shape[-2:]))
        check_mask(mask, tuple(observation.shape[-2:]))
        return cls(observation * mask, clean=clean, observed_mask=mask, options=options)

    def describe(self) -> dict:
        known = float(self.observed_mask.mean())
        return {**super().describe(), "missing_share": round(1.0 - known, 4)}


def check_options(options: dict) -> None:
    ratio = options.get("mask_ratio")
    if ratio is not None and not 0.0 < float(ratio) < 1.0:
        raise UserError(f"--mask-ratio is the share of missing pixels, between 0 and 1 (exclusive); got {ratio}")
    pattern = options.get("mask_pattern")
    if pattern is not None and pattern not in PATTERNS:
        raise UserError(f"unknown --mask-pattern {pattern!r}; valid: {', '.join(PATTERNS)}")


def read_mask(path: str | Path, image_size: tuple[int, int]) -> torch.Tensor:
    """A mask file as (1, H, W) floats, 1 = known (any channel nonzero); its size must be ``image_size``."""
    raw = load_image(path, "mask")
    if tuple(raw.shape[-2:]) != tuple(image_size):
        raise UserError(f"mask {str(path)!r} is {raw.shape[-1]}x{raw.shape[-2]} px but the image is "
                        f"{image_size[1]}x{image_size[0]} px; they must be the same size")
    return (raw.amax(dim=0, keepdim=True) > 0).float()


def check_mask(mask: torch.Tensor, image_size: tuple[int, int]) -> None:
    """Refuse a mask that does not fit the image or leaves nothing to fit or nothing to fill."""
    if tuple(mask.shape[-2:]) != tuple(image_size):
        raise UserError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} px after cropping but the image is "
                        f"{image_size[1]}x{image_size[0]} px")
    known = int((mask > 0).sum())
    if known == mask[0].numel():
        raise UserError("the mask marks every pixel as known (nonzero), so there is nothing to inpaint"
                        " (after --crop, if one was given)")
    if known == 0:
        raise UserError("the mask marks every pixel as missing (0), so there is nothing to inpaint from"
                        " (after --crop, if one was given)")


def make_mask(options: dict, size: tuple[int, int], seed: int) -> torch.Tensor:
    """A synthetic (1, H, W) mask for a clean image: random pixels, text or stripes."""
    if options.get("mask_pattern") == "text":
        return text_mask(size)
    if options.get("mask_pattern") == "stripes":
        return stripes_mask(size)
    if "mask" in options:
        raise UserError("a mask file must be read with Inpaint.read_files before the task is built")
    ratio = float(options.get("mask_ratio", DEFAULT_MISSING_RATIO))
    gen = torch.Generator().manual_seed(int(seed))
    return (torch.rand((1, *size), generator=gen) >= ratio).float()


def stripes_mask(size: tuple[int, int]) -> torch.Tensor:
    """Horizontal missing stripes: a quarter of every period of about an eighth of the height."""
    h, w = size
    period = max(4, round(h / 8))
    width = max(1, period // 4)
    rows = (torch.arange(h) % period) >= width
    return rows.float().view(1, h, 1).expand(1, h, w).contiguous()


def text_mask(size: tuple[int, int]) -> torch.Tensor:
    """Missing pixels where lines of text are drawn (Pillow's default font, about h/7 px high), as in
    the DIP text-inpainting example; deterministic for a given Pillow version."""
    h, w = size
    font_size = max(6, h // 7)
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    line_step = max(font_size + font_size // 2, 4)
    for i, top in enumerate(range(font_size // 3, h, line_step)):
        shift = (i * font_size * 2) % len(TEXT)
        draw.text((1, top), (TEXT[shift:] + TEXT) * 2, fill=255, font=font)
    text = pil_to_tensor(canvas)
    return (text < 0.5).float()
