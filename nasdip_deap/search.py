"""The search loop: DEAP toolbox, deduplicated and cached evaluation, hooks between generations.

The loop owns no logging, checkpointing or progress code: those are hooks (EvoTorch style). The
algorithm and the termination rule are values passed in (pymoo style).
"""
from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
from deap import base, tools

from . import deap_types
from .algorithms import Algorithm
from .fidelity import FullFidelity
from .finalists import mean_quality
from .fitness import Evaluator
from .genome import GenomeSpec, classical_dip


def same_architecture(a, b, spec: GenomeSpec) -> bool:
    """Hall-of-fame similarity: genomes that differ only in inert bits are the same architecture."""
    return spec.decode(a) == spec.decode(b)


def make_toolbox(spec: GenomeSpec, evaluator: Evaluator, n_objectives: int = 1) -> base.Toolbox:
    """A toolbox with ``individual``, ``population`` and ``evaluate``; the caller binds ``mate``,
    ``mutate``, ``select`` (see ``operators.bind_operator``) and may replace ``map``."""
    toolbox = base.Toolbox()
    cls = deap_types.individual_class(n_objectives)
    toolbox.register("individual", lambda_free_individual, cls, spec)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", evaluator)
    toolbox.register("map", map)
    return toolbox


def lambda_free_individual(cls, spec: GenomeSpec):
    """A random individual (module-level, so toolboxes pickle)."""
    return cls(spec.random_bits(random))


def max_generations(n: int) -> Callable[["Search"], bool]:
    """Termination: stop after generation ``n`` (generation 0 is the initial population)."""
    return functools.partial(_generation_reached, n=n)


def _generation_reached(search: "Search", n: int) -> bool:
    return search.generation >= n


@dataclass
class Compute:
    """What one generation cost."""

    evaluated: int = 0  # individuals whose fitness was assigned
    fits: int = 0  # DIP fits actually run
    cache_hits: int = 0
    duplicates: int = 0  # identical architectures within the batch, trained once
    failures: int = 0
    iterations: int = 0
    fit_seconds: float = 0.0

    def charge(self, spent: dict, failed: bool) -> None:
        """Add what one candidate's fits cost (``fidelity.spent``), and whether it failed."""
        self.fits += spent["fits"]
        self.failures += bool(failed)
        self.iterations += spent["iterations"]
        self.fit_seconds += spent["seconds"]


@dataclass
class Search:
    """One run of an algorithm over a genome spec. ``run()`` can be called on a fresh or restored state."""

    spec: GenomeSpec
    evaluator: Evaluator
    toolbox: base.Toolbox
    algorithm: Algorithm
    population_size: int
    termination: Callable[["Search"], bool]
    seed: int = 0
    archive_size: int = 5
    seed_classical: bool = True
    init_spread: float | None = None  # start from mutants of classical DIP (bit-flip probability), not random
    hooks: list = field(default_factory=list)
    fidelity: object = field(default_factory=FullFidelity)  # how much training each new candidate gets
    finalists: object = None  # e.g. finalists.Finalists(3, 2): re-fit the best before choosing one
    # state (checkpointed)
    population: list | None = None
    archive: object = None
    logbook: tools.Logbook = field(default_factory=tools.Logbook)
    generation: int = 0
    cache: dict = field(default_factory=dict)
    totals: Compute = field(default_factory=Compute)
    replicates: dict = field(default_factory=dict)  # cache key -> re-fit records of a finalist

    def __post_init__(self):
        if self.archive is None:
            self.archive = self.algorithm.archive(self.archive_size,
                                                  functools.partial(same_architecture, spec=self.spec))
        self._gen_compute = Compute()

    # -- hooks -----------------------------------------------------------------------------------
    def _emit(self, event: str, *args) -> None:
        for hook in self.hooks:
            method = getattr(hook, event, None)
            if method is not None:
                method(self, *args)

    # -- evaluation ------------------------------------------------------------------------------
    def cache_key(self, individual) -> str:
        return self.evaluator.cache_key(self.spec.decode(individual).key())

    def evaluate(self, individuals: Iterable) -> None:
        """Give every invalid individual its fitness: identical architectures are fitted once, and
        architectures already in the cache are not fitted again."""
        invalid = [ind for ind in individuals if not ind.fitness.valid]
        groups: dict[str, list] = {}
        for ind in invalid:
            ind.born = self.generation
            groups.setdefault(self.cache_key(ind), []).append(ind)
        missing = [key for key in groups if key not in self.cache]
        c = self._gen_compute
        c.evaluated += len(invalid)
        c.cache_hits += len(groups) - len(missing)
        c.duplicates += len(invalid) - len(groups)
        self._emit("on_evaluations_start", len(missing))
        bits = [list(groups[key][0]) for key in missing]
        for key, record in zip(missing, self.fidelity.evaluate(self, bits)):
            record["generation"] = self.generation
            self.cache[key] = record
            spent = record.get("spent") or {"fits": 1, "iterations": record["iterations"],
                                            "seconds": record["seconds"]}
            c.charge(spent, record["error"] is not None)
            self._emit("on_evaluation", record)
        for key, members in groups.items():
            values = tuple(self.cache[key]["fitness"])
            for ind in members:
                ind.fitness.values = values

    def record_for(self, individual) -> dict:
        return self.cache[self.cache_key(individual)]

    # -- loop ------------------------------------------------------------------------------------
    def _initial_population(self) -> list:
        population = self.toolbox.population(n=self.population_size)
        classical = self.spec.encode(classical_dip(self.spec.levels))
        if self.seed_classical and population:
            population[0][:] = classical
        if self.init_spread is not None:  # a local search around the strong hand-made prior
            for ind in population[int(self.seed_classical):]:
                ind[:] = [bit ^ int(random.random() < self.init_spread) for bit in classical]
        return population

    def _finish_generation(self, evaluated: list, started: float) -> None:
        self.archive.update(evaluated)
        c = self._gen_compute
        for name in ("evaluated", "fits", "cache_hits", "duplicates", "failures", "iterations"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(c, name))
        self.totals.fit_seconds += c.fit_seconds
        self.logbook.record(gen=self.generation, **self.statistics(), fits=c.fits, cache_hits=c.cache_hits,
                            duplicates=c.duplicates, failures=c.failures, iterations=c.iterations,
                            fit_seconds=round(c.fit_seconds, 3), seconds=round(time.perf_counter() - started, 3),
                            nevals=c.evaluated)
        self._gen_compute = Compute()
        self._emit("on_generation")

    def statistics(self) -> dict:
        """min/mean/max of each objective over the population, and the best true PSNR when known."""
        stats: dict = {}
        objectives = self.evaluator.settings.objectives
        values = np.array([ind.fitness.values for ind in self.population], dtype=float)
        for i, name in enumerate(objectives):
            col = values[:, i]
            stats.update({f"{name}_min": float(col.min()), f"{name}_mean": float(col.mean()),
                          f"{name}_max": float(col.max())})
        true = [self.record_for(ind)["metrics"].get("psnr") for ind in self.population]
        true = [t for t in true if t is not None]
        if true:
            stats["true_psnr_max"] = float(max(true))
        return stats

    def run(self) -> "Search":
        """Run (or continue) until the termination rule holds; returns self."""
        self._emit("on_start")
        if self.population is None:
            random.seed(self.seed)
            np.random.seed(self.seed % 2**32)
            started = time.perf_counter()
            self.generation = 0
            self.population = self._initial_population()
            self.evaluate(self.population)
            self.population = self.algorithm.initialize(self.population, self.toolbox)
            self._finish_generation(self.population, started)
        while not self.termination(self):
            started = time.perf_counter()
            self.generation += 1
            self.population, offspring = self.algorithm.step(self.population, self.toolbox, self.evaluate)
            self._finish_generation(offspring, started)
        if self.finalists is not None:
            self.finalists.run(self)
            self._emit("on_finalists")
        self._emit("on_end")
        return self

    def best(self):
        """The best individual found: the best quality of the hall of fame or Pareto front, or, once
        finalists were re-fitted, the finalist with the best mean quality over its fits."""
        refitted = [ind for ind in self.archive if self.cache_key(ind) in self.replicates]
        if refitted:
            return max(refitted, key=lambda ind: mean_quality(self, ind))
        return max(self.archive, key=lambda ind: ind.fitness.values[0])
