"""Building the restoration problem (task + images) from command-line style options."""
from __future__ import annotations

import argparse

import torch

from .errors import UserError
from .fitness import derive_seed
from .image_io import center_crop, check_min_size, default_image, load_image
from .network import min_image_size
from .registry import TASKS


def load_inputs(args: argparse.Namespace) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(clean, observed) images after cropping; either may be None."""
    crop = getattr(args, "crop", None) or None
    if getattr(args, "observed", None):
        observed = center_crop(load_image(args.observed, "observed image"), crop)
        clean = center_crop(load_image(args.clean, "clean image"), crop) if getattr(args, "clean", None) else None
        return clean, observed
    if getattr(args, "clean", None):
        raise UserError("--clean is the ground truth of an --observed image; to synthesise the degradation "
                        "from a clean image, pass it as --image")
    clean = load_image(args.image, "image") if getattr(args, "image", None) else default_image()
    return center_crop(clean, crop), None


def build_task(args: argparse.Namespace, levels: int, seed: int):
    """The task object for ``args.task``: degraded from a clean image, or the user's observation."""
    cls = TASKS.get(args.task)
    options = cls.options_from_args(args)
    clean, observed = load_inputs(args)
    if observed is not None:
        task = cls.from_observation(observed, options, clean=clean)
    else:
        task = cls.from_clean(clean, options, derive_seed(seed, "degrade"))
    if task.clean is not None and task.clean.shape[-2:] != torch.Size(task.output_size):
        raise UserError(f"the clean image is {task.clean.shape[-1]}x{task.clean.shape[-2]} px but the restoration "
                        f"will be {task.output_size[1]}x{task.output_size[0]} px")
    if task.clean is not None and task.clean.shape[0] != task.channels:
        raise UserError(f"the clean image has {task.clean.shape[0]} channel(s), the observation {task.channels}")
    check_min_size(torch.empty(1, *task.output_size), min_image_size(levels), levels)
    return task
