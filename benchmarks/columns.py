"""What the restoration benchmarks (standard.py, quality.py) share: the equal-compute and equal-time
columns of classical DIP, the random-search column's settings, and the paired test over a table's rows."""
from __future__ import annotations

import statistics
import time

import torch

from nasdip_deap.restoration import member_seeds


def random_search(fits: int) -> dict:
    """Search settings of the random-search column for a search that made ``fits`` fits: one generation of
    classical DIP and ``fits - 1`` random genomes. The search's population and generations would give it more
    fits, since the search's duplicates and cache hits cost no fit (30 against 21-22 with the defaults).
    The genomes are drawn uniformly whatever start the search was given (``init_spread``, ``init_prior``): the
    column is the baseline of sampling the search space, not of the search's own start."""
    return {"algorithm": "random", "population": fits, "generations": 0, "init_spread": None, "init_prior": None}


def classical_outputs(arch, task, runner, iterations: int, seed: int, count: int, fit=None,
                      start: int = 0) -> tuple[list, list]:
    """(outputs, seconds) of fits ``start`` .. ``count - 1`` of ``arch`` with the restoration's member seeds
    (the first is the search fit's seed), so that any prefix is the ensemble of that size.
    ``fit(seed) -> (output, seconds)`` replaces the plain fit (a disk cache, for example)."""
    outputs, seconds = [], []
    for member in member_seeds(seed, arch, count)[start:]:
        if fit is not None:
            output, spent = fit(member)
        else:
            started = time.perf_counter()
            output = runner.fit(arch, task, iterations, seed=member).restored
            spent = time.perf_counter() - started
        outputs.append(output)
        seconds.append(spent)
    return outputs, seconds


def equal_columns(outputs: list, seconds: list, k: int, k_time: int, iterations: int, score) -> dict:
    """The average of the first ``k`` classical fits (equal compute: K = the search's DIP work over the
    per-fit budget) and of the first ``k_time`` (equal wall time: the search's seconds over a classical
    fit's), scored by ``score(image) -> {"psnr", "ssim", ...}``."""
    return {name: {**score(torch.stack(outputs[:count]).mean(0)), "k": count, "iterations": count * iterations,
                   "seconds": sum(seconds[:count])}
            for name, count in (("equal_compute", k), ("equal_time", k_time))}


def work_of(result, restoration, h: int, w: int) -> float:
    """DIP work of a search and its final fits, in whole-image iterations (proxy fits count their pixels)."""
    return (result.totals.pixel_steps + restoration.iterations * restoration.ensemble * h * w) / (h * w)


def paired(rows: list[dict], a: str, b: str, unit: str = "images") -> str:
    """Column ``a`` minus column ``b`` over rows: mean +- std of the per-row differences, and the two-sided
    Wilcoxon signed-rank p-value (scipy) where there are 5 rows or more."""
    diffs = [r[a]["psnr"] - r[b]["psnr"] for r in rows if r.get(a) and r.get(b)]
    if not diffs:
        return "—"
    text = f"{statistics.fmean(diffs):+.2f} ± {statistics.pstdev(diffs):.2f} dB over {len(diffs)} {unit}"
    if len(diffs) >= 5 and any(diffs):
        from scipy.stats import wilcoxon

        text += f", Wilcoxon p = {wilcoxon(diffs).pvalue:.3f}"
    return text + f", {sum(d < -0.2 for d in diffs)} below -0.2 dB"
