"""Search effectiveness as a pytest-benchmark suite: one search per operator (the default cell with that
crossover or mutation) on the committed recorded denoising problem, answered by its table and surrogate.
The time is one whole search; ``extra_info`` holds how well it searched (area under the best-so-far curve,
final best blind fitness and its true PSNR, fits to the recorded 90th percentile), so
``pytest-benchmark compare`` tracks effectiveness beside speed. Over many seeds:
``python benchmarks/search_effectiveness.py``."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the surrogate needs the predictor extra: pip install -e '.[predictor]'")

from recorded import PROBLEMS, load  # noqa: E402
from search_effectiveness import DEFAULT_CELL, fits_to_reach, run_cell  # noqa: E402
from surrogate import Surrogate, SurrogateEvaluator  # noqa: E402
from nasdip_deap.registry import OPERATORS  # noqa: E402

PROBLEM = PROBLEMS["denoise-chelsea-32"]
CELLS = [(DEFAULT_CELL[0], c, DEFAULT_CELL[2]) for c in OPERATORS.names("crossover")] + \
        [(DEFAULT_CELL[0], DEFAULT_CELL[1], m) for m in OPERATORS.names("mutation") if m != DEFAULT_CELL[2]]


@pytest.fixture(scope="module")
def strategy():
    entries = load(PROBLEM.name)
    assert len(entries) >= 10, f"benchmarks/recorded holds {len(entries)} entries of {PROBLEM.name}"
    model = Surrogate(PROBLEM.evaluator().spec).fit(entries)
    return functools.partial(SurrogateEvaluator, table=entries, surrogate=model), entries


class Settings:
    population, generations = 6, 4


@pytest.mark.benchmark(group="effectiveness")
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c[1]}+{c[2]}")
def test_one_search(benchmark, strategy, cell):
    evaluator_class, entries = strategy
    run = benchmark.pedantic(run_cell, args=(PROBLEM, cell, 0, Settings, evaluator_class), rounds=1, iterations=1)
    target = float(np.percentile([e["fitness"][0] for e in entries], 90))
    curve = run["curve"]
    assert run["fits"] >= Settings.population and all(a <= b for a, b in zip(curve, curve[1:]))
    reach = fits_to_reach(curve, target)
    benchmark.extra_info.update(auc=float(np.mean(curve)), final_best=curve[-1], final_psnr=run["psnr"][-1],
                                fits=run["fits"], fits_to_p90=None if math.isinf(reach) else reach)
