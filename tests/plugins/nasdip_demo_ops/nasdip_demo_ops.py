"""A third-party nasdip-deap plugin, as a user would write one: plain DEAP-style operators, an
algorithm class and an evaluation backend, made known to nasdip only through the entry points in this package's setup.cfg.

An entry point names one object; an operator says its kind (and optionally default parameters)
through function attributes, since it carries no decorator.
"""
from __future__ import annotations

import random

from deap import tools

from nasdip_deap.algorithms import Algorithm
from nasdip_deap.backends import BackendOptions, ExecutorBackend


def cx_level_swap(ind1, ind2, spec):
    """Swap one random level whole (encoder, decoder and its skips) between two genomes."""
    prefix = f"level{random.randrange(spec.levels)}."
    for field, (start, stop) in zip(spec.fields, spec.slices):
        if field.name.startswith(prefix):
            ind1[start:stop], ind2[start:stop] = ind2[start:stop], ind1[start:stop]
    return ind1, ind2


cx_level_swap.kind = "crossover"


def mut_set_field(individual, spec, field, index):
    """Set one named field to a fixed value index (a deliberately visible mutation, for tests)."""
    names = [f.name for f in spec.fields]
    if field not in names:
        raise ValueError(f"no field {field!r} in the genome spec")
    i = names.index(field)
    if not 0 <= int(index) < len(spec.fields[i].values):
        raise ValueError(f"{field} has {len(spec.fields[i].values)} values; index {index} is out of range")
    spec.set_field_index(individual, i, int(index))
    return individual,


mut_set_field.kind = "mutation"


class SteadyState(Algorithm):
    """Steady-state GA: two new children per generation replace the two worst members.

    The children are mated with probability cxpb and then always mutated."""

    name = "demo-steady-state"

    def step(self, population, toolbox, evaluate):
        children = [toolbox.clone(ind) for ind in toolbox.select(population, 2)]
        if random.random() < self.cxpb:
            children = list(toolbox.mate(*children))
        children = [toolbox.mutate(child)[0] for child in children]
        for child in children:
            del child.fitness.values
        evaluate(children)
        survivors = tools.selBest(population, len(population) - len(children))
        return survivors + children, children


class ThreadsBackend(ExecutorBackend):
    """Fits on a pool of threads in the search process (a plugin backend)."""

    name = "demo-threads"
    options = ("workers",)

    @classmethod
    def from_options(cls, options: BackendOptions) -> "ThreadsBackend":
        from concurrent.futures import ThreadPoolExecutor

        return cls(ThreadPoolExecutor(options.workers or 2), lost=options.lost)

    def close(self) -> None:
        self.executor.shutdown()
