"""Variation and selection operators on a population of 500 genomes of the default spec.

Each group holds every registered operator of its kind, so each genome-aware operator is timed beside
the DEAP built-in it extends or replaces (gene-aware vs two-point = cxTwoPoint, field-aware vs
flip-bit = mutFlipBit, nsga2 with the automatic log-time sort vs DEAP's selNSGA2 with its standard
sort). In-place operators get fresh individuals every round (``benchmark.pedantic(setup=...)``).
Per-call time = round time / ``extra_info["calls"]``.
"""
from __future__ import annotations

import random

import pytest
from deap import base, tools

from bench_population import POPULATION, as_individuals
from nasdip_deap.operators import bind_operator
from nasdip_deap.registry import OPERATORS

COMPARED_WITH = {"gene-aware": "two-point", "field-aware": "flip-bit", "nsga2": "deap-selNSGA2-standard"}
ROUNDS = 30


def bound(kind: str, name: str, spec):
    toolbox = base.Toolbox()
    bind_operator(toolbox, "op", name, kind, spec)
    return toolbox.op


def describe(benchmark, name: str, calls: int) -> None:
    benchmark.extra_info["calls"] = calls
    if name in COMPARED_WITH:
        benchmark.extra_info["compare_with"] = COMPARED_WITH[name]


@pytest.mark.benchmark(group="crossover")
@pytest.mark.parametrize("name", OPERATORS.names("crossover"))
def test_crossover(benchmark, name, spec, genomes):
    mate = bound("crossover", name, spec)
    random.seed(0)

    def setup():
        return (as_individuals(genomes),), {}

    def mate_all(population):
        for a, b in zip(population[::2], population[1::2]):
            mate(a, b)
        return population

    describe(benchmark, name, POPULATION // 2)
    population = benchmark.pedantic(mate_all, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    assert len(population) == POPULATION and all(len(ind) == spec.length for ind in population)
    assert [list(ind) for ind in population] != genomes


@pytest.mark.benchmark(group="mutation")
@pytest.mark.parametrize("name", OPERATORS.names("mutation"))
def test_mutation(benchmark, name, spec, genomes):
    mutate = bound("mutation", name, spec)
    random.seed(0)

    def setup():
        return (as_individuals(genomes),), {}

    def mutate_all(population):
        for ind in population:
            mutate(ind)
        return population

    describe(benchmark, name, POPULATION)
    population = benchmark.pedantic(mutate_all, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    assert len(population) == POPULATION and all(len(ind) == spec.length for ind in population)
    assert [list(ind) for ind in population] != genomes


@pytest.fixture(scope="module")
def rated(genomes):
    """The 500 genomes as two-objective individuals (quality up, parameter count down), fitness set."""
    rng = random.Random(1)
    population = as_individuals(genomes, objectives=2)
    for ind in population:
        ind.fitness.values = (rng.uniform(15.0, 32.0), float(rng.randrange(10_000, 3_000_000)))
    return population


@pytest.mark.benchmark(group="selection")
@pytest.mark.parametrize("name", OPERATORS.names("selection") + ["deap-selNSGA2-standard"])
def test_selection(benchmark, name, spec, rated):
    select = (tools.selNSGA2 if name == "deap-selNSGA2-standard" else bound("selection", name, spec))
    random.seed(0)
    describe(benchmark, name, 1)
    rounds = 5 if "nsga2" in name.lower() else ROUNDS
    chosen = benchmark.pedantic(select, args=(rated, POPULATION), rounds=rounds, warmup_rounds=1)
    assert len(chosen) == POPULATION and all(any(ind is m for m in rated) for ind in chosen[:5])
