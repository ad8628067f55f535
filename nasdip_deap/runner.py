"""How every fit of a run is made: the one path from an architecture to a trained restoration.

The search's fits, the finalists' re-fits, the final fits of a search, ``restore`` and ``baseline`` all
go through ``FitRunner.fit`` with the same device, CPU thread count and engine options, and take their
seeds from ``fit_seed``, so a final fit with the search's seed reproduces the search's own score.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from .architecture import Architecture
from .engine import EngineOptions, FitResult, engine_options, fit
from .workers import torch_threads


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes and machines (unlike ``hash``)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def fit_seed(run_seed: int, arch: Architecture, *extra: object) -> int:
    """The seed of a fit of ``arch`` in a run seeded ``run_seed``: the same for the search fit and the
    first final fit, so scores do not depend on order, worker or backend. ``extra`` parts name other
    fits of the same architecture (a finalist's re-fit, an ensemble member)."""
    return derive_seed(run_seed, arch.key(), *extra)


@dataclass(frozen=True)
class FitRunner:
    """Device, CPU threads and engine options shared by every fit of a run (picklable, so process and
    SCOOP workers receive it with the evaluator)."""

    device: str = "auto"
    threads: int | None = 1  # torch CPU threads per fit: fixed, since it changes CPU results slightly
    options: EngineOptions = field(default_factory=EngineOptions)

    @classmethod
    def create(cls, device: str, threads: int | None, precision: str,
               channels_last: bool | None = None, cuda_graph: bool = True) -> "FitRunner":
        """Resolve ``precision="auto"`` and the layout for ``device`` once, here, so that every worker
        of the run trains the same way whatever its own CPU supports."""
        return cls(device, threads, engine_options(device, precision, channels_last, cuda_graph))

    def fit(self, arch: Architecture, task, iterations: int, *, seed: int, holdout: torch.Tensor | None = None,
            stopper=None, deadline: float | None = None, keep_best: bool = False,
            device: str | None = None, log_every: int | None = None) -> FitResult:
        """Train ``arch`` on ``task`` (see ``engine.fit``); ``device`` overrides the run's (a worker's GPU)."""
        with torch_threads(self.threads):
            return fit(arch, task, iterations, device=device or self.device, seed=seed, holdout=holdout,
                       stopper=stopper, deadline=deadline, options=self.options, keep_best=keep_best,
                       log_every=log_every)

    def describe(self) -> dict:
        return {"device": self.device, "threads": self.threads, **self.options.describe()}
