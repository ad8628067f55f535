"""Building the restoration problem (task + images) from command-line style options."""
from __future__ import annotations

import argparse

import torch

from .errors import UserError
from .fitness import derive_seed
from .image_io import center_crop, check_min_size, default_image, load_image
from .network import min_image_size
from .registry import TASKS


def load_inputs(args: argparse.Namespace, output_scale: int = 1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(clean, observed) images after cropping; either may be None."""
    clean, observed, _ = read_inputs(args, output_scale)
    return clean, observed


def read_inputs(args: argparse.Namespace, output_scale: int = 1):
    """(clean, observed, uncropped (H, W) of the image the task works on) after cropping.

    A ``--clean`` given with ``--observed`` is cropped at the same place, ``output_scale`` times larger
    (super-resolution: the observation is the low-resolution image)."""
    crop = getattr(args, "crop", None) or None
    if getattr(args, "observed", None):
        raw = load_image(args.observed, "observed image")
        clean = None
        if getattr(args, "clean", None):
            clean = crop_clean_like(load_image(args.clean, "clean image"), tuple(raw.shape[-2:]), crop, output_scale)
        return clean, center_crop(raw, crop), tuple(raw.shape[-2:])
    if getattr(args, "clean", None):
        raise UserError("--clean is the ground truth of an --observed image; to synthesise the degradation "
                        "from a clean image, pass it as --image")
    raw = load_image(args.image, "image") if getattr(args, "image", None) else default_image()
    return center_crop(raw, crop), None, tuple(raw.shape[-2:])


def crop_clean_like(clean: torch.Tensor, observed_size: tuple[int, int], crop: int | None,
                    scale: int) -> torch.Tensor:
    """Crop ``clean`` to the region that ``center_crop(observed, crop)`` keeps, at ``scale`` x its size."""
    h, w = observed_size
    if not crop or tuple(clean.shape[-2:]) != (h * scale, w * scale):
        return center_crop(clean, crop * scale if crop else None)  # a size mismatch is reported by build_task
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2 * scale, (w - cw) // 2 * scale
    return clean[..., top:top + ch * scale, left:left + cw * scale].contiguous()


def build_task(args: argparse.Namespace, levels: int, seed: int):
    """The task object for ``args.task``: degraded from a clean image, or the user's observation."""
    cls = TASKS.get(args.task)
    options = cls.options_from_args(args)
    clean, observed, source_size = read_inputs(args, cls.output_scale(options))
    files = cls.read_files(options, source_size, getattr(args, "crop", None) or None)  # e.g. an inpainting mask
    if observed is not None:
        task = cls.from_observation(observed, options, clean=clean, **files)
    else:
        task = cls.from_clean(clean, options, derive_seed(seed, "degrade"), **files)
    if task.clean is not None and task.clean.shape[-2:] != torch.Size(task.output_size):
        raise UserError(f"the clean image is {task.clean.shape[-1]}x{task.clean.shape[-2]} px but the restoration "
                        f"will be {task.output_size[1]}x{task.output_size[0]} px")
    if task.clean is not None and task.clean.shape[0] != task.channels:
        raise UserError(f"the clean image has {task.clean.shape[0]} channel(s), the observation {task.channels}")
    check_min_size(torch.empty(1, *task.output_size), min_image_size(levels), levels)
    return task
