"""Image quality metrics: PSNR in torch, SSIM from scikit-image (maintained, not hand-written)."""
from __future__ import annotations

import math

import torch


def mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error, over ``mask``'s nonzero pixels when a (1, 1, H, W) or (1, H, W) mask is given."""
    diff = (a - b) ** 2
    if mask is None:
        return diff.mean()
    weights = mask.expand_as(diff)
    return (diff * weights).sum() / weights.sum().clamp_min(1.0)


def psnr_from_mse(value: float, data_range: float = 1.0) -> float:
    value = float(value)
    if value <= 0:
        return 100.0
    return 10.0 * math.log10(data_range ** 2 / value)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0) -> float:
    return psnr_from_mse(mse(a.float(), b.float(), mask).item(), data_range)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Structural similarity of two (C, H, W) images in [0, 1] (scikit-image, 7x7 window or smaller)."""
    from skimage.metrics import structural_similarity

    x = a.detach().float().cpu().clamp(0, 1).numpy()
    y = b.detach().float().cpu().clamp(0, 1).numpy()
    side = min(x.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return float("nan")
    if x.shape[0] == 1:
        return float(structural_similarity(x[0], y[0], data_range=1.0, win_size=win))
    return float(structural_similarity(x, y, data_range=1.0, channel_axis=0, win_size=win))


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma (as MATLAB's rgb2ycbcr, in [0, 1]) of a (3, H, W) image; gray passes through."""
    if img.shape[0] == 1:
        return img
    r, g, b = img[0], img[1], img[2]
    return ((16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0).unsqueeze(0)
