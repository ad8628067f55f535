"""Choosing the final architecture when one fit's score is noisy: re-fit the finalists.

A DIP fit's score depends on its seed (weights, input noise) and, for blind fitness, on which pixels
were held out, and at small sizes the spread between seeds is large (docs/results.md).
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

    def plan(self, archive, key_of, replicates: dict) -> list[tuple[str, list[int], int]]:
        """The re-fits still to do, as (cache key, bits, replicate number): a resumed run keeps the
        re-fits it already has in ``replicates`` ({cache key: [record, ...]})."""
        jobs = []
        for ind in self.choose(archive):
            key = key_of(ind)
            have = len(replicates.get(key, []))
            jobs += [(key, list(ind), r) for r in range(have + 1, self.repeats + 1)]
        return jobs


    def run(self, search) -> None:
        """The stage after the search: re-fit the finalists on the search's backend (``toolbox.map``), keep
        each re-fit in ``search.replicates`` and charge it to the run's compute."""
        from .fidelity import spent

        jobs = self.plan(search.archive, search.cache_key, search.replicates)
        refit = functools.partial(refit_replicate, search.evaluator)
        for (key, _, _), record in zip(jobs, search.toolbox.map(refit, [(bits, r) for _, bits, r in jobs])):
            search.replicates.setdefault(key, []).append(record)
            search.totals.charge(record.get("spent") or spent([record]), record["error"] is not None)


def refit_replicate(evaluator, job: tuple) -> dict:
    """One re-fit (module level, so process and SCOOP workers can run it)."""
    bits, replicate = job
    return evaluator.record(bits, replicate=replicate)


def mean_score(first: float, refits: list[dict]) -> float:
    """A finalist's quality averaged over its search fit (``first``) and its re-fits (a failed re-fit
    counts with the worst score, as a failed search fit would)."""
    return statistics.mean([first] + [r["fitness"][0] for r in refits])
