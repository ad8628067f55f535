"""The final restoration: one architecture fitted K times on the whole observation, outputs averaged,
together with the best of the search's own fits when the search fitted the whole image.

Averaging DIP fits that differ only in their seed is the cheapest known gain in DIP (each fit's
output is the image plus its own fitting error, and the errors are partly independent). Member 0 uses
the seed of the architecture's search fit, so a single final fit reproduces the search's own score;
members 1.. use seeds derived from it. With ``holdout`` (blind fitness) every member keeps the same
pixels out of its loss, and the ensemble is scored on them too: a measure of the ensemble's gain that
needs no ground truth.

A search without a proxy has already paid for a dozen or more fits of the whole observation, and the
good ones are restorations as well: ``SearchFits`` keeps the outputs of the best of them, and
``choose_search_fits`` takes the best-ranked prefix whose mean the search's own fitness (held-out
pixels, when blind) scores highest. Averaging fits of different architectures reuses compute the
search spent anyway, and their errors are less alike than those of one architecture's seeds.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .architecture import Architecture
from .engine import FitResult, resolve_device
from .fitness import heldout_psnr
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
class SearchFits:
    """The outputs of the ``size`` best-scoring whole-image fits of a search, by cache key: a hook on the
    search loop (``on_fit_output``), checkpointed with the run."""

    size: int
    entries: dict = field(default_factory=dict)  # cache key -> (quality, output image)

    def offer(self, key: str, quality: float, output: torch.Tensor) -> None:
        if self.size <= 0 or not math.isfinite(quality):
            return
        self.entries[key] = (float(quality), output)
        if len(self.entries) > self.size:
            del self.entries[min(self.entries, key=lambda k: (self.entries[k][0], k))]

    def on_fit_output(self, search, key: str, record: dict, output: torch.Tensor) -> None:
        """Hook: a whole-image search fit's output, as the loop takes it out of the record."""
        self.offer(key, record["fitness"][0], output)

    def ranked(self) -> list[tuple[str, float, torch.Tensor]]:
        """(key, quality, output), best quality first (ties by key, so the order is reproducible)."""
        return sorted(((k, q, out) for k, (q, out) in self.entries.items()), key=lambda e: (-e[1], e[0]))


def choose_search_fits(ranked: list, score: Callable[[torch.Tensor], float]) -> list:
    """The prefix of ``ranked`` (best first) whose mean output ``score`` rates highest; at least one."""
    chosen, best, total = 0, -math.inf, None
    for m, (_, _, output) in enumerate(ranked, 1):
        total = output.clone() if total is None else total + output
        value = score(total / m)
        if value > best:
            chosen, best = m, value
    return ranked[:chosen]


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
    search_fits: list = field(default_factory=list)  # {"key", "fitness"} of the search's fits averaged in
    final_fits: dict = field(default_factory=dict)  # metrics of the final fits' mean alone (with search fits)

    @property
    def ensemble(self) -> int:
        return len(self.members)

    def summary(self) -> dict:
        """JSON-able: the ensemble's metrics at the top level, each member's beside them."""
        return {"architecture": self.architecture.summary(), "ensemble": self.ensemble,
                "iterations": self.iterations, "seconds": round(self.seconds, 3), "device": self.device,
                "precision": self.precision, "seed": self.members[0]["seed"], **self.metrics,
                "members": self.members, "search_fits": self.search_fits, "final_fits": self.final_fits or None,
                "psnr_history": self.history, "loss_final": self.loss_final}


def restore(arch: Architecture, task, runner: FitRunner, iterations: int, *, run_seed: int = 0, ensemble: int = 1,
            holdout: torch.Tensor | None = None, map_fn=map, check_memory: bool = True,
            search_fits: list = (), progress=None) -> Restoration:
    """Fit ``arch`` ``ensemble`` times on ``task`` for ``iterations`` steps and average the outputs,
    with the outputs of ``search_fits`` ((key, fitness, output) of the search's chosen fits) when given.
    ``map_fn`` runs the member fits (a backend's ``map`` spreads them over workers); a fit that cannot
    fit in the device's free memory is refused first, with one line (``UserError``). ``progress`` (an
    object with ``update()``, see ``hooks.FitProgress``) is told of each member fit as it comes back."""
    if ensemble < 1:
        raise ValueError(f"ensemble must be >= 1, got {ensemble}")
    if check_memory:
        require_memory(arch, task.output_size, task.channels, resolve_device(runner.device), runner.options.precision)
    seeds = member_seeds(run_seed, arch, ensemble)
    member = functools.partial(_member, runner, arch, task, iterations, holdout)
    results = []
    for result in map_fn(member, seeds):
        results.append(result)
        if progress is not None:
            progress.update()
    finals = [r.restored for r in results]
    image = torch.stack(finals + [output.to(finals[0].device) for _, _, output in search_fits]).mean(0)
    members = [{"seed": seed, "iterations": r.iterations, "seconds": round(r.seconds, 3), **r.metrics}
               for seed, r in zip(seeds, results)]
    scores = _scores(image, task, holdout)
    first = results[0]
    return Restoration(image=image, architecture=arch, members=members, metrics=scores, iterations=first.iterations,
                       seconds=sum(r.seconds for r in results), device=first.device, precision=first.precision,
                       history=[list(p) for p in first.psnr_history],
                       loss_final=first.loss_history[-1] if first.loss_history else None,
                       search_fits=[{"key": key, "fitness": fitness} for key, fitness, _ in search_fits],
                       final_fits=_scores(torch.stack(finals).mean(0), task, holdout) if search_fits else {})


def _scores(image: torch.Tensor, task, holdout) -> dict:
    scores = {}
    if task.clean is not None:
        scores.update(task.quality(image, task.clean))
    if holdout is not None:
        scores["heldout_psnr"] = heldout_psnr(task, image, holdout)
    return scores
