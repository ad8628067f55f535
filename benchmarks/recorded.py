"""Recorded benchmark problems (after NAS-Bench-301): real fits of this project's search space on small
problems, stored once, so that a search can be benchmarked over many seeds without fitting again.

A problem is a degraded crop of a photo that scikit-image ships (so any machine can rebuild it and refit its
entries), the 5-level genome spec, blind fitness and a fixed per-fit budget near where classical DIP peaks at
that size. Each recorded entry is the product's own evaluation record of one distinct architecture (the
genome, its blind fitness, its true PSNR and SSIM, parameters, fit seconds), with how it was drawn.

``build_recorded.py`` fills the files; ``load(name)`` reads one back.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nasdip_deap.compose import SearchConfig, build_search
from nasdip_deap.image_io import center_crop, pil_to_tensor
from nasdip_deap.registry import TASKS
from nasdip_deap.runner import derive_seed

FOLDER = Path(__file__).resolve().parent / "recorded"
# what a recorded fit is: fixed, so that the records stay comparable and a refit reproduces them on one CPU
FIT = {"levels": 5, "fitness": "blind", "proxy": "none", "device": "cpu", "threads": 1, "precision": "fp32",
       "search_fits": 0, "seed": 0}


@dataclass(frozen=True)
class Problem:
    name: str
    task: str
    image: str  # a scikit-image data function: chelsea, coffee, astronaut
    size: int
    iterations: int
    options: dict = field(default_factory=dict)
    holdout: float = 0.1
    levels: int = 5

    def clean(self) -> torch.Tensor:
        from PIL import Image
        from skimage import data

        photo = Image.fromarray(getattr(data, self.image)())
        return center_crop(pil_to_tensor(photo.resize((photo.width // 4, photo.height // 4), Image.LANCZOS)),
                           self.size)

    def make_task(self):
        return TASKS.get(self.task).from_clean(self.clean(), dict(self.options), derive_seed(0, "recorded", self.name))

    def config(self, **overrides) -> SearchConfig:
        """The search settings of this problem. The default start's built-in prior holds this very problem's
        table, so a search here ranks its first population by the other problems' tables alone (leave one out)."""
        config = SearchConfig(**{**FIT, "iterations": self.iterations, "holdout": self.holdout, "levels": self.levels,
                                  **overrides})
        files = config.start_prior_files()
        if config.init_prior == "auto" and files:
            config = dataclasses.replace(config, init_prior=tuple(f for f in files if Path(f).name != self.path().name))
        return config

    def evaluator(self, **overrides):
        """The product's evaluator of this problem, built as every search builds it (``compose``)."""
        return build_search(self.config(**overrides), self.make_task()).evaluator

    def path(self, folder: Path = FOLDER) -> Path:
        return Path(folder) / f"{self.name}.jsonl.gz"


# 32 px: the smallest crop a 5-level network takes (its deepest level is 1 px), so that a fit takes seconds
# on one core; budgets near where classical DIP peaks at that size (docs/benchmarking.md). Super-resolution
# is 2x with 20 % held out: at 4x a 32 px crop has 64 observed pixels, too few to score blind.
PROBLEMS = {p.name: p for p in (
    Problem("denoise-chelsea-32", "denoise", "chelsea", 32, 120, {"sigma": 25.0}),
    Problem("inpaint-coffee-32", "inpaint", "coffee", 32, 200, {"mask_pattern": "text"}),
    Problem("sr2-astronaut-32", "super-resolution", "astronaut", 32, 200, {"scale": 2}, holdout=0.2),
)}

KEPT = ("key", "bits", "source", "fitness", "metrics", "parameters", "seconds", "iterations", "seed", "best_step",
        "error", "machine")


# Instruction sets that change which kernels torch picks, and so the last bits of a fit.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def machine() -> dict:
    """What a bit-identical refit needs to match: the CPU and the torch version (threads and precision
    are fixed in ``FIT``). A CPU is named by vendor, family, model, stepping and the kernel-relevant flags,
    not by its model name alone: virtual machines often show a generic name ("AMD EPYC") for different
    chips, whose fits differ in the last decimals."""
    import platform

    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and fields:
                    break  # the first processor is enough
                fields.setdefault(key, value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    cpu = {"cpu": fields.get("model name", platform.processor())}
    for key in ("vendor_id", "cpu family", "model", "stepping"):
        if key in fields:
            cpu[key.replace(" ", "_")] = fields[key]
    cpu["kernel_flags"] = " ".join(flag for flag in KERNEL_FLAGS if flag in flags)
    return {**cpu, "torch": torch.__version__}


def entry(record: dict, source: str, where: dict | None = None) -> dict:
    """The stored part of an evaluation record."""
    return {k: v for k, v in {**record, "source": source, "machine": where or machine()}.items() if k in KEPT}


def read_entries(path: Path) -> list[dict]:
    """Entries of a recorded file; a torn last line (an interrupted build) is dropped."""
    if not path.exists():
        return []
    entries = []
    with gzip.open(path, "rt") as f:
        try:
            for line in f:
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        except (EOFError, gzip.BadGzipFile):  # the last member was cut off mid-write
            pass
    return entries


def rewrite(path: Path, entries: list[dict]) -> None:
    """Replace ``path`` by ``entries`` (a build repairs a torn tail so that what it appends can be read)."""
    part = path.with_suffix(".part")
    with gzip.open(part, "wt") as f:
        f.write("".join(json.dumps(e) + "\n" for e in entries))
    part.replace(path)


def load(name: str, folder: Path = FOLDER) -> list[dict]:
    """The fitted entries (no failures) of recorded problem ``name``."""
    return [e for e in read_entries(PROBLEMS[name].path(folder)) if e.get("error") is None]
