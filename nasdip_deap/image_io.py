"""Reading, cropping and writing images as float tensors in [0, 1], shape (C, H, W)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import UserError


def load_image(path: str | os.PathLike, what: str = "image") -> torch.Tensor:
    """Load an image file as (C, H, W) float32 in [0, 1].

    Grayscale stays one channel; RGBA and palette images become RGB (alpha is dropped); 16-bit images
    are scaled by their full range instead of being clipped.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} {str(p)!r} does not exist")
    if p.is_dir():
        raise UserError(f"{what} {str(p)!r} is a folder, not an image file")
    try:
        with Image.open(p) as img:
            img.load()
            return pil_to_tensor(img)
    except UnidentifiedImageError:
        raise UserError(f"{what} {str(p)!r} is not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"cannot read {what} {str(p)!r}: {exc}") from None


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(arr / top, 0.0, 1.0)[..., None]
    elif img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)[..., None]
    elif img.mode in ("L", "1"):
        arr = np.asarray(img.convert("L"), dtype=np.float64)[..., None] / 255.0
    else:
        arr = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()


def center_crop(img: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centre crop to ``size`` x ``size`` (each side clamped to the image's)."""
    if not size:
        return img
    h, w = img.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[..., top:top + ch, left:left + cw].contiguous()


def check_min_size(img: torch.Tensor, minimum: int, levels: int) -> None:
    h, w = img.shape[-2:]
    if min(h, w) < minimum:
        raise UserError(f"image is {w}x{h} px; a {levels}-level network needs at least {minimum}x{minimum} "
                        f"(use a larger image or crop, or fewer --levels)")


def to_uint8(img: torch.Tensor) -> np.ndarray:
    arr = img.detach().float().cpu().clamp(0, 1).numpy().transpose(1, 2, 0)
    arr = (arr * 255.0 + 0.5).astype(np.uint8)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def save_image(img: torch.Tensor, path: str | os.PathLike) -> None:
    """Write (C, H, W) in [0, 1] as an 8-bit PNG (written to a temporary name, then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(to_uint8(img)).save(tmp, format="PNG")
    os.replace(tmp, path)


def default_image() -> torch.Tensor:
    """The embedded default: scikit-image's bundled astronaut photo, downscaled to 128 px (face and suit)."""
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((128, 128), Image.LANCZOS)
    return pil_to_tensor(img)


def example_image(size: int | None = None) -> torch.Tensor:
    """The embedded example photo (``default_image``), centre-cropped to ``size`` px when given."""
    return center_crop(default_image(), size)
