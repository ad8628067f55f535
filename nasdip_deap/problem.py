"""Building the restoration problem (task + images) from files or tensors.

The whole image is the problem unless a crop is asked for: ``--image photo.png`` restores the whole
photo. Only the embedded demo (no image given) works on a small centre crop, ``DEMO_CROP`` px.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .errors import UserError
from .image_io import center_crop, check_min_size, default_image, load_image
from .network import min_image_size
from .runner import derive_seed

DEMO_CROP = 48  # px: the no-argument demo's centre crop of the embedded image, so it runs in minutes on a CPU
log = logging.getLogger("nasdip")


@dataclass(frozen=True)
class Inputs:
    """The image files of a problem: a clean ``image`` the task degrades, or an ``observed`` (already
    degraded) one with an optional ``clean`` ground truth; ``crop`` a centre crop in px (None: whole)."""

    image: str | None = None
    observed: str | None = None
    clean: str | None = None
    crop: int | None = None

    @property
    def demo(self) -> bool:
        return self.image is None and self.observed is None

    def effective_crop(self) -> int | None:
        """The crop used: the given one (0 = none), else the demo's crop for the embedded image, else none."""
        if self.crop is not None:
            return self.crop or None
        return DEMO_CROP if self.demo else None


def check_crop(crop: int | None, size: tuple[int, int], what: str) -> None:
    h, w = size
    if crop and crop > min(h, w):
        raise UserError(f"--crop {crop} is larger than the {what} ({w}x{h} px); use at most {min(h, w)} or "
                        f"leave --crop out to restore the whole image")


def read_inputs(inputs: Inputs, output_scale: int = 1):
    """(clean, observed, uncropped (H, W) of the image the task works on) after cropping.

    A ``clean`` given with ``observed`` is cropped at the same place, ``output_scale`` times larger
    (super-resolution: the observation is the low-resolution image)."""
    crop = inputs.effective_crop()
    if inputs.observed:
        raw = load_image(inputs.observed, "observed image")
        check_crop(crop, tuple(raw.shape[-2:]), "observed image")
        clean = None
        if inputs.clean:
            clean = crop_clean_like(load_image(inputs.clean, "clean image"), tuple(raw.shape[-2:]), crop,
                                    output_scale)
        return clean, center_crop(raw, crop), tuple(raw.shape[-2:])
    if inputs.clean:
        raise UserError("--clean is the ground truth of an --observed image; to synthesise the degradation "
                        "from a clean image, pass it as --image")
    raw = load_image(inputs.image, "image") if inputs.image else default_image()
    check_crop(crop, tuple(raw.shape[-2:]), "image")
    if inputs.demo:
        log.info("demo: a %d px centre crop of scikit-image's astronaut photo (give --image to restore your own)",
                 crop or raw.shape[-1])
    return center_crop(raw, crop), None, tuple(raw.shape[-2:])


def crop_clean_like(clean: torch.Tensor, observed_size: tuple[int, int], crop: int | None,
                    scale: int) -> torch.Tensor:
    """Crop ``clean`` to the region that ``center_crop(observed, crop)`` keeps, at ``scale`` x its size."""
    h, w = observed_size
    if not crop or tuple(clean.shape[-2:]) != (h * scale, w * scale):
        return center_crop(clean, crop * scale if crop else None)  # a size mismatch is reported by check_task
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2 * scale, (w - cw) // 2 * scale
    return clean[..., top:top + ch * scale, left:left + cw * scale].contiguous()


def make_task(cls, options: dict, *, clean: torch.Tensor | None = None, observed: torch.Tensor | None = None,
              seed: int = 0, files: dict | None = None, levels: int | None = None):
    """A task of class ``cls`` with ``options`` (checked against its declared options): degraded from
    ``clean`` with a seed derived from ``seed``, or the ``observed`` image as it is."""
    options = cls.resolve_options(options)
    if files is None:
        size = tuple((observed if observed is not None else clean).shape[-2:])
        files = cls.read_files(options, size, None)
    if observed is not None:
        task = cls.from_observation(observed, options, clean=clean, **files)
    else:
        task = cls.from_clean(clean, options, derive_seed(seed, "degrade"), **files)
    check_task(task, levels)
    return task


def check_task(task, levels: int | None) -> None:
    """The restoration and the ground truth agree in size and channels; the image holds the network."""
    if task.clean is not None and task.clean.shape[-2:] != torch.Size(task.output_size):
        raise UserError(f"the clean image is {task.clean.shape[-1]}x{task.clean.shape[-2]} px but the restoration "
                        f"will be {task.output_size[1]}x{task.output_size[0]} px")
    if task.clean is not None and task.clean.shape[0] != task.channels:
        raise UserError(f"the clean image has {task.clean.shape[0]} channel(s), the observation {task.channels}")
    if levels is not None:
        check_min_size(torch.empty(1, *task.output_size), min_image_size(levels), levels)


def build_task(cls, options: dict, inputs: Inputs, levels: int, seed: int):
    """The task of class ``cls`` for the image files of ``inputs``."""
    options = cls.resolve_options(options)
    clean, observed, source_size = read_inputs(inputs, cls.output_scale(options))
    files = cls.read_files(options, source_size, inputs.effective_crop())  # e.g. an inpainting mask
    return make_task(cls, options, clean=clean, observed=observed, seed=seed, files=files, levels=levels)
