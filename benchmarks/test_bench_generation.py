"""One whole generation's non-evaluation overhead at population 500.

Everything a generation costs besides DIP fits: selection, variation (clone, crossover, mutation),
the search's evaluation path with every fitness served from its cache (decode, cache key, duplicate
grouping, fitness assignment), the hall-of-fame or Pareto-front update and the logbook record.

Each round replays the same generation: a first, unmeasured pass fills the cache with canned records
for every architecture that generation will make (the random state is saved before it and restored
before each measured round), so the measured rounds run no fit at all, which the test checks.
"""
from __future__ import annotations

import copy
import random

import pytest
import torch

from bench_population import POPULATION
from nasdip_deap.compose import SearchConfig, build_search
from nasdip_deap.fitness import Evaluator
from nasdip_deap.loop import Search, max_generations
from nasdip_deap.registry import TASKS

SETUPS = {  # id: (algorithm, crossover, mutation)
    "ga-two-point-flip-bit": ("ga", "two-point", "flip-bit"),
    "ga-gene-aware-field-aware": ("ga", "gene-aware", "field-aware"),
    "mu-plus-lambda-gene-aware-field-aware": ("mu-plus-lambda", "gene-aware", "field-aware"),
    "nsga2-gene-aware-field-aware": ("nsga2", "gene-aware", "field-aware"),
}


class CannedEvaluator(Evaluator):
    """An Evaluator whose ``record`` invents a plausible record instantly (no fit), for the warm-up pass."""

    def record(self, bits) -> dict:
        arch = self.spec.decode(bits)
        key = arch.key()
        quality = 20.0 + int(key[:6], 16) % 1000 / 100.0
        parameters = float(sum(e.channels * e.kernel ** 2 for e in arch.encoders + arch.decoders))
        values = {"quality": quality, "parameters": parameters, "fit_seconds": 1.0}
        return {"key": key, "bits": list(map(int, bits)), "architecture": arch.to_dict(), "seed": 0,
                "fitness": [values[o] for o in self.settings.objectives],
                "objectives": {o: values[o] for o in self.settings.objectives},
                "metrics": {"psnr": quality}, "parameters": int(parameters), "iterations": 0, "seconds": 0.0,
                "device": "cpu", "error": None}


def tiny_task():
    clean = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    return TASKS.get("denoise").from_clean(clean, {"sigma": 25.0}, seed=0)


def new_search(algorithm_name: str, crossover: str, mutation: str, **state) -> Search:
    """The search as the CLI builds it, with the canned evaluator and (for a replay) a saved state."""
    config = SearchConfig(algorithm=algorithm_name, crossover=crossover, mutation=mutation, population=POPULATION,
                          generations=1, iterations=1, device="cpu", seed=0, proxy="none")
    search = build_search(config, tiny_task())
    search.evaluator.__class__ = CannedEvaluator
    for name, value in state.items():
        setattr(search, name, value)
    return search


@pytest.mark.benchmark(group="generation")
@pytest.mark.parametrize("setup_id", list(SETUPS))
def test_generation_overhead(benchmark, setup_id):
    algorithm_name, crossover, mutation = SETUPS[setup_id]

    # warm-up pass: generation 0, then generation 1 with canned records, remembering what to replay
    search = new_search(algorithm_name, crossover, mutation)
    search.termination = max_generations(0)
    search.run()
    start_population = copy.deepcopy(search.population)
    start_archive = copy.deepcopy(search.archive)
    start_seen = set(search.seen)
    start_state = random.getstate()
    search.termination = max_generations(1)
    search.run()
    cache = dict(search.cache)
    assert len(cache) > POPULATION  # generation 1 made new architectures, now all cached

    def replay():
        random.setstate(start_state)
        state = {"population": copy.deepcopy(start_population), "archive": copy.deepcopy(start_archive),
                 "cache": dict(cache), "generation": 0, "seen": set(start_seen)}
        return (new_search(algorithm_name, crossover, mutation, **state),), {}

    def one_generation(run):
        return run.run()

    benchmark.extra_info["population"] = POPULATION
    done = benchmark.pedantic(one_generation, setup=replay, rounds=5, warmup_rounds=0)
    row = done.logbook[-1]
    assert row["gen"] == 1 and row["fits"] == 0 and row["cache_hits"] > 0  # no fit ran: overhead only
    assert len(done.population) == POPULATION and all(ind.fitness.valid for ind in done.population)
    assert [list(ind) for ind in done.population] == [list(ind) for ind in search.population]  # same replay
    assert len(done.archive) > 0
