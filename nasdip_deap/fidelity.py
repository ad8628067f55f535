"""Multi-fidelity evaluation: how much training each candidate of a generation gets.

``full``: every new candidate is fitted with the whole iteration budget.
``halving``: successive halving within a generation (Jamieson & Talwalkar; Li et al.'s Hyperband
rung): every new candidate is first fitted with ``budget / eta**(rungs-1)`` iterations, the best
``1/eta`` continue to ``eta`` times more, and so on up to the full budget. Scores of different budgets
are not comparable (a DIP fit that scores well after 30 iterations may overfit the noise by 300), so a
candidate cut at a cheap rung is ranked below every candidate of its generation that reached the full
budget, in its cheap-rung order (its real scores stay in ``rungs``). At the full rung, fits whose score
curve is clearly behind the best full fit seen so far are stopped early (``CurveStopper``). Fits restart
at each rung (nothing is shipped between workers), and every fit of every rung is counted in the run's
compute.
``adaptive``: no rungs; every fit may run the whole budget but stops itself: at the plateau of its
held-out score (``--early-stop``, on by default here, keeping the fit's best output) or when its
running best is clearly behind the best fit so far. With no earlier fit to compare with (the first
generation), the first candidate (classical DIP, when the search seeds it) is fitted alone first, and its
curve judges the rest. On DIP a rung's score after a small share of the budget can rank candidates
against their final order (fast fitters overfit the noise sooner; docs/results.md), so a fit's own
curve is the better judge of when to stop.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable

from .errors import UserError
from .params import PROBABILITY, Param, make_part
from .registry import Registry

FIDELITIES = Registry("fidelity", "nasdip_deap.fidelities")


def spent(records: list[dict]) -> dict:
    """Compute of a list of fit records: fits, DIP iterations, fit seconds, pixel steps."""
    return {"fits": len(records), "iterations": sum(r["iterations"] for r in records),
            "seconds": sum(r["seconds"] for r in records),
            "pixel_steps": sum(r.get("pixel_steps", 0) for r in records)}


@dataclass(frozen=True)
class EvaluationContext:
    """What a fidelity schedule sees of a search: the evaluator (``record``, ``settings``), the
    ``map`` that runs fits on the search's backend, and the records scored so far."""

    evaluator: object
    map: Callable
    records: Callable[[], Iterable[dict]]


def reference_curve(records: Iterable[dict], iterations: int, include_stopped: bool = False):
    """The score curve of the best ``iterations``-budget fit among ``records`` that ran to its end (or,
    with ``include_stopped``, that stopped early too), if any: what ``CurveStopper`` compares a fit with."""
    best = None
    for rec in records:
        fid = rec.get("fidelity")
        if rec.get("error") or not rec.get("curve") or not fid or fid["iterations"] != iterations:
            continue
        if rec.get("stopped_early") and not include_stopped:
            continue
        if best is None or rec["fitness"][0] > best["fitness"][0]:
            best = rec
    return None if best is None else [tuple(p) for p in best["curve"]]


@FIDELITIES.register("full")
@dataclass
class FullFidelity:
    """Every new candidate gets the whole iteration budget."""

    def describe(self) -> dict:
        return {"name": "full"}

    def evaluate(self, ctx: EvaluationContext, bits: list[list[int]]):
        """Yield one final record per genome, in order (lazily, so progress shows as fits finish)."""
        for record in ctx.map(ctx.evaluator.record, bits):
            record["spent"] = spent([record])
            yield record


@FIDELITIES.register("adaptive", params={"curve_margin": Param(float, low=0), "curve_warmup": PROBABILITY,
                                         "pilot": Param(int, low=0)})
@dataclass
class AdaptiveFidelity:
    """One fit per candidate, stopped by its own curve: the plateau of its held-out score (early
    stopping, which keeps the best output) or, from ``curve_warmup`` of the budget on, a running best
    ``curve_margin`` dB behind the best fit of earlier generations. Defaults chosen by replaying the
    learning curves of 40 architectures (benchmarks/learning_curves.py; docs/results.md).
    ``pilot``: with no earlier fit to compare with, the first ``pilot`` candidates are fitted first, on
    their own, so that the others are compared with them (0: the first generation runs unchecked)."""

    curve_margin: float = 0.1
    curve_warmup: float = 1 / 6
    pilot: int = 1
    default_patience = 3  # early-stop patience when the user gives none (log points, 1/50 of the budget)

    def __post_init__(self):
        if self.curve_margin < 0 or not 0 <= self.curve_warmup <= 1 or self.pilot < 0:
            raise UserError(f"adaptive needs curve_margin >= 0, 0 <= curve_warmup <= 1 and pilot >= 0, got "
                            f"curve_margin={self.curve_margin}, curve_warmup={self.curve_warmup}, "
                            f"pilot={self.pilot}")

    def describe(self) -> dict:
        return {"name": "adaptive", "curve_margin": self.curve_margin, "curve_warmup": self.curve_warmup,
                "pilot": self.pilot}

    def evaluate(self, ctx: EvaluationContext, bits: list[list[int]]):
        budget = ctx.evaluator.settings.iterations
        first = self.pilot if reference_curve(ctx.records(), budget, include_stopped=True) is None else 0
        for batch in (bits[:first], bits[first:]):  # the pilot's records enter the cache before the rest
            if not batch:
                continue
            reference = reference_curve(ctx.records(), budget, include_stopped=True)
            record = functools.partial(ctx.evaluator.record, reference_curve=reference,
                                       curve_margin=self.curve_margin, curve_warmup=self.curve_warmup)
            for rec in ctx.map(record, batch):
                rec["fidelity"] = {"name": "adaptive", "iterations": budget, "budget": budget}
                rec["spent"] = spent([rec])
                yield rec


@FIDELITIES.register("halving", params={"eta": Param(int, low=2), "rungs": Param(int, low=1),
                                        "curve_margin": Param(float, low=0)})
@dataclass
class SuccessiveHalving:
    """Successive halving within each generation: cheap fits for all, the full budget for the best."""

    eta: int = 3
    rungs: int = 3
    curve_margin: float = 1.0  # dB behind the best full fit's curve that stops a full-budget fit

    def __post_init__(self):
        if self.eta < 2 or self.rungs < 1:
            raise UserError(f"halving needs eta >= 2 and rungs >= 1, got eta={self.eta}, rungs={self.rungs}")

    def describe(self) -> dict:
        return {"name": "halving", "eta": self.eta, "rungs": self.rungs, "curve_margin": self.curve_margin}

    def budgets(self, iterations: int) -> list[int]:
        return [max(1, round(iterations / self.eta ** (self.rungs - 1 - r))) for r in range(self.rungs)]

    def evaluate(self, ctx: EvaluationContext, bits: list[list[int]]):
        budgets = self.budgets(ctx.evaluator.settings.iterations)
        alive = list(range(len(bits)))
        history: dict[int, list[dict]] = {i: [] for i in alive}
        for rung, iterations in enumerate(budgets):
            last = rung == len(budgets) - 1
            reference = reference_curve(ctx.records(), iterations) if last else None
            record = functools.partial(ctx.evaluator.record, iterations=iterations, reference_curve=reference,
                                       curve_margin=self.curve_margin)
            for i, rec in zip(alive, ctx.map(record, [bits[i] for i in alive])):
                rec["fidelity"] = {"rung": rung, "iterations": iterations, "budget": budgets[-1]}
                history[i].append(rec)
            if last:
                break
            keep = max(1, math.ceil(len(alive) / self.eta))
            alive = sorted(alive, key=lambda i: history[i][-1]["fitness"][0], reverse=True)[:keep]
        self.rank_below_full(history, len(budgets))
        for i in range(len(bits)):
            final = history[i][-1]
            final["spent"] = spent(history[i])
            final["rungs"] = [{"iterations": r["iterations"], "fitness": r["fitness"], "metrics": r["metrics"]}
                              for r in history[i]]
            yield final

    @staticmethod
    def rank_below_full(history: dict[int, list[dict]], rungs: int) -> None:
        """Give candidates cut at a cheap rung a quality fitness below the worst full-budget one of the
        generation, keeping their order (later rung first, then cheap-rung score)."""
        scored = [recs for recs in history.values() if not recs[-1].get("error")]
        full = [recs[-1]["fitness"][0] for recs in scored if len(recs) == rungs]
        if not full:
            return
        cut = [recs for recs in scored if len(recs) < rungs]
        cut.sort(key=lambda recs: (len(recs), recs[-1]["fitness"][0]), reverse=True)
        floor = min(full)
        for rank, recs in enumerate(cut, start=1):
            rec = recs[-1]
            rec["rung_fitness"] = list(rec["fitness"])
            rec["fitness"] = [floor - 0.01 * rank] + list(rec["fitness"][1:])
            if "quality" in rec.get("objectives", {}):
                rec["objectives"] = {**rec["objectives"], "quality": rec["fitness"][0]}


def patience_for(fidelity, early_stop: int | None) -> int | None:
    """The early-stop patience a run uses: the user's, else the fidelity's default (adaptive: 3)."""
    if early_stop is not None:
        return early_stop
    return getattr(fidelity, "default_patience", None)


def make_fidelity(choice):
    """``"halving"``, ``"halving:eta=4,rungs=3"``, a fidelity class or a fidelity object -> a fidelity."""
    return make_part(FIDELITIES, choice, "fidelity")
