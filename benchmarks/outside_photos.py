"""Denoising pairs from scikit-image's photos, for checking a default on images nobody tuned on.

Writes ``NAME_GT.png`` (the photo) and ``NAME_noisy.png`` (Gaussian noise of std ``--sigma`` on the 0-255
scale, one draw from ``--seed``, clipped and rounded to 8 bits) into ``--out``, the layout that
``standard.py --data`` reads, so every column of a table restores the same saved observation.

    python benchmarks/outside_photos.py --names chelsea coffee --out runs/outside
    python benchmarks/standard.py --data runs/outside --images chelsea coffee --size 64 --iterations 200
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench_args import positive_float

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def noisy_pair(name: str, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) uint8 RGB arrays of scikit-image's photo ``name``."""
    from skimage import data

    clean = np.asarray(getattr(data, name)(), dtype=np.uint8)
    if clean.ndim == 2:
        clean = np.repeat(clean[..., None], 3, axis=2)
    clean = clean[..., :3]
    noise = np.random.default_rng(seed).normal(0.0, sigma, clean.shape)
    noisy = np.clip(np.rint(clean.astype(np.float64) + noise), 0, 255).astype(np.uint8)
    return clean, noisy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=["chelsea", "coffee"], choices=PHOTOS, metavar="NAME",
                        help=f"scikit-image photos ({', '.join(PHOTOS)})")
    parser.add_argument("--sigma", type=positive_float, default=25.0, help="noise std, 0-255 scale (default 25)")
    parser.add_argument("--seed", type=int, default=2026, help="numpy seed of the noise draw (default 2026)")
    parser.add_argument("--out", default="runs/outside")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        clean, noisy = noisy_pair(name, args.sigma, args.seed)
        Image.fromarray(clean).save(out / f"{name}_GT.png")
        Image.fromarray(noisy).save(out / f"{name}_noisy.png")
        print(f"{out / name}_GT.png, {name}_noisy.png ({clean.shape[1]}x{clean.shape[0]}, sigma {args.sigma:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
