"""Choosing the final architecture when one fit's score is noisy: re-fit the finalists.

A DIP fit's score depends on its seed (weights, input noise) and, for blind fitness, on which pixels
were held out; at small sizes the spread between seeds reaches 1 dB (super-resolution x4 on 48 px).
The search keeps the best *single* score, so its winner is partly luck (the winner's curse). With
``Finalists(count, repeats)`` the ``count`` best hall-of-fame architectures are fitted ``repeats``
more times, each with a new seed and, for blind fitness, new held-out pixels, and the search's
``best()`` becomes the one with the best mean score. Every re-fit counts in the run's compute.
"""
from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass

from .errors import UserError
from .fidelity import spent


def make_finalists(count: int, repeats: int = 2):
    """``Finalists(count, repeats)``, or None when ``count`` is 0 (choose by one fit)."""
    return Finalists(count, repeats) if count else None


@dataclass(frozen=True)
class Finalists:
    """Re-fit the ``count`` best hall-of-fame architectures ``repeats`` more times; rank by mean score."""

    count: int = 3
    repeats: int = 2

    def __post_init__(self):
        if self.count < 1 or self.repeats < 1:
            raise UserError(f"finalists need count >= 1 and repeats >= 1, got {self.count} and {self.repeats}")

    def choose(self, archive) -> list:
        """The finalists: the best ``count`` entries of the hall of fame by their (first) quality score."""
        return sorted(archive, key=lambda ind: ind.fitness.values[0], reverse=True)[:self.count]

    def run(self, search) -> None:
        """Fit what is missing (a resumed run keeps the re-fits it already has) and record them in
        ``search.replicates`` as ``{cache key: [record, ...]}``."""
        jobs = []
        for ind in self.choose(search.archive):
            key = search.cache_key(ind)
            have = len(search.replicates.get(key, []))
            jobs += [(key, list(ind), r) for r in range(have + 1, self.repeats + 1)]
        refit = functools.partial(refit_replicate, search.evaluator)
        for (key, _, _), record in zip(jobs, search.toolbox.map(refit, [(bits, r) for _, bits, r in jobs])):
            search.replicates.setdefault(key, []).append(record)
            search.totals.charge(spent([record]), record["error"] is not None)


def refit_replicate(evaluator, job: tuple) -> dict:
    """One re-fit (module level, so process and SCOOP workers can run it)."""
    bits, replicate = job
    return evaluator.record(bits, replicate=replicate)


def mean_quality(search, individual) -> float:
    """The individual's quality score averaged over its search fit and its re-fits (a failed re-fit
    counts with the worst score, as a failed search fit would)."""
    scores = [individual.fitness.values[0]]
    scores += [r["fitness"][0] for r in search.replicates.get(search.cache_key(individual), [])]
    return statistics.mean(scores)


def finalist_table(search) -> list[dict]:
    """What the choice rested on, best mean first: each re-fitted finalist's scores (search fit first)
    and their mean, with the true PSNR of each fit where a clean image was known (never used)."""
    rows = []
    for ind in search.archive:
        key = search.cache_key(ind)
        if key not in search.replicates:
            continue
        records = [search.record_for(ind)] + search.replicates[key]
        rows.append({"key": records[0]["key"], "summary": search.spec.decode(ind).summary(),
                     "scores": [r["fitness"][0] for r in records], "mean": mean_quality(search, ind),
                     "true_psnr": [r["metrics"].get("psnr") for r in records]})
    return sorted(rows, key=lambda row: row["mean"], reverse=True)
