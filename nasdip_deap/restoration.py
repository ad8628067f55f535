"""The final restoration: one architecture fitted K times on the whole observation, outputs averaged.

Averaging DIP fits that differ only in their seed is the cheapest known gain in DIP (each fit's
output is the image plus its own fitting error, and the errors are partly independent). Member 0 uses
the seed of the architecture's search fit, so a single final fit reproduces the search's own score;
members 1.. use seeds derived from it. With ``holdout`` (blind fitness) every member keeps the same
pixels out of its loss, and the ensemble is scored on them too: a measure of the ensemble's gain that
needs no ground truth.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from . import metrics
from .architecture import Architecture
from .engine import FitResult, resolve_device
from .memory import require_memory
from .runner import FitRunner, fit_seed
from .workers import current_worker


def member_seeds(run_seed: int, arch: Architecture, ensemble: int) -> list[int]:
    """Seeds of the ``ensemble`` fits of ``arch``: the search fit's seed first."""
    return [fit_seed(run_seed, arch)] + [fit_seed(run_seed, arch, "ensemble", k) for k in range(1, ensemble)]


def _member(runner: FitRunner, arch: Architecture, task, iterations: int, holdout, seed: int) -> FitResult:
    """One member fit (module level, so a process or SCOOP worker can run it)."""
    return runner.fit(arch, task, iterations, seed=seed, holdout=holdout,
                      device=current_worker().device_for(runner.device))


@dataclass
class Restoration:
    """The restored image (the mean of the members' outputs) and what each fit and the mean scored."""

    image: torch.Tensor
    architecture: Architecture
    members: list[dict]
    metrics: dict  # of the ensemble: psnr and ssim when the clean image is known, heldout_psnr with a hold-out
    iterations: int  # per member
    seconds: float  # all members together
    device: str
    precision: str
    history: list = field(default_factory=list)  # (step, true PSNR) of member 0, when the clean image is known
    loss_final: float | None = None

    @property
    def ensemble(self) -> int:
        return len(self.members)

    def summary(self) -> dict:
        """JSON-able: the ensemble's metrics at the top level, each member's beside them."""
        return {"architecture": self.architecture.summary(), "ensemble": self.ensemble,
                "iterations": self.iterations, "seconds": round(self.seconds, 3), "device": self.device,
                "precision": self.precision, "seed": self.members[0]["seed"], **self.metrics,
                "members": self.members, "psnr_history": self.history, "loss_final": self.loss_final}


def restore(arch: Architecture, task, runner: FitRunner, iterations: int, *, run_seed: int = 0, ensemble: int = 1,
            holdout: torch.Tensor | None = None, map_fn=map, check_memory: bool = True) -> Restoration:
    """Fit ``arch`` ``ensemble`` times on ``task`` for ``iterations`` steps and average the outputs.
    ``map_fn`` runs the member fits (a backend's ``map`` spreads them over workers); a fit that cannot
    fit in the device's free memory is refused first, with one line (``UserError``)."""
    if ensemble < 1:
        raise ValueError(f"ensemble must be >= 1, got {ensemble}")
    if check_memory:
        require_memory(arch, task.output_size, task.channels, resolve_device(runner.device), runner.options.precision)
    seeds = member_seeds(run_seed, arch, ensemble)
    member = functools.partial(_member, runner, arch, task, iterations, holdout)
    results = list(map_fn(member, seeds))
    image = torch.stack([r.restored for r in results]).mean(0)
    members = [{"seed": seed, "iterations": r.iterations, "seconds": round(r.seconds, 3), **r.metrics}
               for seed, r in zip(seeds, results)]
    scores = {}
    if task.clean is not None:
        scores.update(task.quality(image, task.clean))
    if holdout is not None:
        scores["heldout_psnr"] = metrics.psnr(task.forward(image.unsqueeze(0)), task.observation.unsqueeze(0),
                                              holdout.unsqueeze(0))
    first = results[0]
    return Restoration(image=image, architecture=arch, members=members, metrics=scores, iterations=first.iterations,
                       seconds=sum(r.seconds for r in results), device=first.device, precision=first.precision,
                       history=[list(p) for p in first.psnr_history],
                       loss_final=first.loss_history[-1] if first.loss_history else None)
