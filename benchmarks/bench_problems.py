"""The problems the benchmark scripts share: the standard test images, TASK:IMAGE cells, and each
cell's degraded task, as the quality table builds them."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch

from nasdip_deap import classical_dip
from nasdip_deap.image_io import center_crop, default_image, load_image
from nasdip_deap.registry import TASKS
from nasdip_deap.runner import derive_seed

REPO = Path(__file__).resolve().parents[1]
TASK_NAMES = ("denoise", "inpaint", "super-resolution")
MASKS = {"kate.png": "kate_mask.png", "vase.png": "vase_mask.png"}


def data_folder() -> Path:
    """The standard DIP test images: $NASDIP_DATA, else ../shared/data beside the project."""
    return Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))


def default_images() -> list[str]:
    data = data_folder()
    found = [str(data / n) for n in ("F16_GT.png", "kate.png", "vase.png", "snail.jpg") if (data / n).exists()]
    return found + ["astronaut"]


def parse_cell(text: str) -> tuple[str, str]:
    """``TASK:IMAGE`` -> (task, image path); a bare file name is looked up in the data folder."""
    task_name, _, image = text.partition(":")
    if task_name not in TASK_NAMES or not image:
        raise argparse.ArgumentTypeError(f"bad cell {text!r}: expected TASK:IMAGE with TASK one of "
                                         f"{', '.join(TASK_NAMES)}")
    data = data_folder()
    if image != "astronaut" and not Path(image).exists() and (data / image).exists():
        image = str(data / image)
    if image != "astronaut" and not Path(image).exists():
        raise argparse.ArgumentTypeError(f"image {image!r} not found (nor in {data})")
    return task_name, image


def load_clean(name: str, size: int) -> torch.Tensor:
    img = default_image() if name == "astronaut" else load_image(name)
    return center_crop(img, size or None)


def make_task(task_name: str, image: str, size: int, seed: int):
    """The degraded problem for one (task, image) cell of the table."""
    clean = load_clean(image, size)
    cls = TASKS.get(task_name)
    degrade_seed = derive_seed(seed, "degrade", task_name)
    if task_name == "denoise":
        return cls.from_clean(clean, {"sigma": 25.0}, degrade_seed)
    if task_name == "super-resolution":
        h, w = clean.shape[-2:]
        clean = clean[..., : h - h % 4, : w - w % 4]
        return cls.from_clean(clean, {"scale": 4}, degrade_seed)
    mask_file = MASKS.get(Path(image).name)
    if mask_file and (Path(image).parent / mask_file).exists():
        mask = center_crop((load_image(Path(image).parent / mask_file).amax(0, keepdim=True) > 0).float(), size or None)
        if 0 < float(mask.mean()) < 1:
            return cls.from_clean(clean, {"mask": mask_file}, degrade_seed, mask=mask)
    return cls.from_clean(clean, {"mask_pattern": "text"}, degrade_seed)


def classical_for(task_name: str, levels: int = 5):
    """Classical DIP with the reference notebooks' settings for the task (reg-noise 1/30 for
    denoising, 0.03 for super-resolution and inpainting; lr 0.01; skip 128/128/4; 5 levels)."""
    arch = classical_dip(levels)
    return arch if task_name == "denoise" else dataclasses.replace(arch, reg_noise_std=0.03)


