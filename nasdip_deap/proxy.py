"""Proxy problems: what a search scores its candidates on when the image is large.

A DIP fit costs in proportion to the pixels it restores, so a search on a whole photo scores each
candidate on a cheaper version of the problem and fits only the final architecture on the whole
image. A proxy turns the task into the problems the candidates are fitted on; a candidate's fitness
is the mean of its scores on them, and each problem draws its own held-out pixels for blind fitness.

- ``none``: the whole image, as it is.
- ``downscale:size=S``: a copy of the whole problem shrunk by the largest power of two that keeps its
  shorter side at ``S`` px or more (block means of the observed pixels; see ``Task.downscale``).
- ``crops:n=N,size=S``: ``N`` windows of ``S`` x ``S`` restored pixels spread over the image (one
  at random in each cell of a grid; a single window sits in the centre).

Third-party proxies arrive through the entry-point group ``nasdip_deap.proxies``: a class whose
instances have ``problems(task, seed) -> list[Task]`` and ``describe() -> dict``.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .errors import UserError
from .network import min_image_size
from .params import Param, make_part
from .registry import Registry

PROXIES = Registry("proxy", "nasdip_deap.proxies")


@PROXIES.register("none")
@dataclass(frozen=True)
class WholeImage:
    """Score candidates on the whole image."""

    def problems(self, task, seed: int) -> list:
        return [task]

    def describe(self) -> dict:
        return {"name": "none"}


@PROXIES.register("downscale", params={"size": Param(int, low=1)})
@dataclass(frozen=True)
class Downscale:
    """Score candidates on a copy of the image shrunk by a power of two to about size px."""

    size: int = 96

    def factor(self, task) -> int:
        """The largest power of two that keeps the shorter restored side at ``size`` px or more."""
        side = min(task.output_size)
        factor = 1
        while side // (factor * 2) >= self.size:
            factor *= 2
        return factor

    def problems(self, task, seed: int) -> list:
        factor = self.factor(task)
        return [task if factor == 1 else task.downscale(factor)]

    def check(self, task, levels: int) -> None:
        if self.size < min_image_size(levels):
            raise UserError(f"a proxy of {self.size} px is below the {min_image_size(levels)} px a {levels}-level "
                            f"network needs")
        if self.factor(task) == 1:
            h, w = task.output_size
            raise UserError(f"the {w}x{h} px image cannot be halved and keep {self.size} px; use --proxy none or a "
                            f"smaller size")

    def describe(self) -> dict:
        return {"name": "downscale", "size": self.size}


@PROXIES.register("crops", params={"n": Param(int, low=1, high=64), "size": Param(int, low=1)})
@dataclass(frozen=True)
class Crops:
    """Score candidates on n crops of size x size restored pixels spread over the image."""

    n: int = 2
    size: int = 64

    def windows(self, height: int, width: int, scale: int, seed: int) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of each window in restored pixels, aligned to ``scale``."""
        h, w = min(self.size, height) // scale * scale, min(self.size, width) // scale * scale
        if self.n == 1:
            return [((height - h) // 2 // scale * scale, (width - w) // 2 // scale * scale, h, w)]
        rng = random.Random(seed)
        rows = max(1, int(math.sqrt(self.n)))
        cols = math.ceil(self.n / rows)
        out = []
        for i in range(self.n):
            r, c = divmod(i, cols)
            top = rng.randint(r * (height - h) // rows, max(r * (height - h) // rows, (r + 1) * (height - h) // rows))
            left = rng.randint(c * (width - w) // cols, max(c * (width - w) // cols, (c + 1) * (width - w) // cols))
            out.append((top // scale * scale, left // scale * scale, h, w))
        return out

    def problems(self, task, seed: int) -> list:
        height, width = task.output_size
        scale = height // task.observation.shape[-2]
        return [task.crop(*window) for window in self.windows(height, width, scale, seed)]

    def check(self, task, levels: int) -> None:
        """A crop must hold a network of ``levels`` levels and be smaller than the image."""
        height, width = task.output_size
        if self.size < min_image_size(levels):
            raise UserError(f"proxy crops of {self.size} px are below the {min_image_size(levels)} px a "
                            f"{levels}-level network needs")
        if self.size >= min(height, width):
            raise UserError(f"proxy crops of {self.size} px are not smaller than the {width}x{height} px image; "
                            f"use --proxy none or smaller crops")

    def describe(self) -> dict:
        return {"name": "crops", "n": self.n, "size": self.size}


AUTO = "auto"
DEFAULT_LARGE = Downscale()  # the proxy of ``auto`` for large images (chosen by measurement, docs/results.md)


def make_proxy(choice, task, levels: int):
    """``choice`` (a name with parameters, ``auto`` or a proxy object) as a proxy object for ``task``.
    ``auto`` uses ``DEFAULT_LARGE`` when the image can be halved at least once, else none."""
    if choice == AUTO:
        return DEFAULT_LARGE if DEFAULT_LARGE.factor(task) > 1 else WholeImage()
    proxy = make_part(PROXIES, choice, "proxy")
    check = getattr(proxy, "check", None)
    if check is not None:
        check(task, levels)
    return proxy
