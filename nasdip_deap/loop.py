"""The search loop: DEAP toolbox, deduplicated and cached evaluation, hooks between generations.

The loop owns no logging, checkpointing or progress code: those are hooks (EvoTorch style). The
algorithm, the termination rule, the fidelity schedule and the finalists are values passed in (pymoo
style); ``compose.build_search`` is the one place that assembles them.
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
from .algorithms import Algorithm, History
from .errors import UserError
from .fidelity import EvaluationContext, spent
from .finalists import mean_score
from .fitness import MACHINE, Evaluator, record_failure
from .genome import GenomeSpec, classical_dip
from .restoration import SearchFits


@dataclass
class _Batch:
    """One generation's individuals between ask and tell: their invalid ones grouped by cache key, the
    keys that need a fit (``genomes``, one per key) and those fitted before a restart."""

    individuals: list
    groups: dict
    missing: list
    recovered: list

    @property
    def genomes(self) -> list[list[int]]:
        return [list(self.groups[key][0]) for key in self.missing]


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
    """What a generation (or a whole run) cost."""

    evaluated: int = 0  # individuals whose fitness was assigned
    fits: int = 0  # DIP fits actually run
    cache_hits: int = 0
    duplicates: int = 0  # identical architectures within the batch, trained once
    failures: int = 0
    iterations: int = 0
    fit_seconds: float = 0.0
    pixel_steps: int = 0  # DIP iterations x restored pixels: compute comparable across image sizes
    revaried: int = 0  # children varied again because their architecture was already fitted

    def charge(self, spent: dict, failed: bool) -> None:
        """Add what one candidate's fits cost (``fidelity.spent``), and whether it failed."""
        self.fits += spent["fits"]
        self.failures += bool(failed)
        self.iterations += spent["iterations"]
        self.fit_seconds += spent["seconds"]
        self.pixel_steps += spent.get("pixel_steps", 0)

    def add(self, other: "Compute") -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class Search:
    """One run of an algorithm over a genome spec. ``run()`` can be called on a fresh or restored state.
    Built by ``compose.build_search``; every setting is given there."""

    spec: GenomeSpec
    evaluator: Evaluator
    toolbox: base.Toolbox
    algorithm: Algorithm
    population_size: int
    termination: Callable[["Search"], bool]
    seed: int
    archive_size: int
    seed_classical: bool
    init_spread: float | None  # start from mutants of classical DIP (bit-flip probability), not random
    fidelity: object  # how much training each new candidate gets
    finalists: object  # e.g. finalists.Finalists(3, 2): re-fit the best before choosing one; or None
    novel_retries: int  # times a child whose architecture was already fitted is varied again
    hooks: list = field(default_factory=list)
    start_prior: object = None  # a prior_start.PriorStart: the first population's random slots ranked by it
    # state (checkpointed)
    population: list | None = None
    archive: object = None
    logbook: tools.Logbook = field(default_factory=tools.Logbook)
    generation: int = 0
    cache: dict = field(default_factory=dict)
    totals: Compute = field(default_factory=Compute)
    replicates: dict = field(default_factory=dict)  # cache key -> re-fit records of a finalist
    failed: dict = field(default_factory=dict)  # cache key -> record of a machine failure (never cached)
    uncharged: set = field(default_factory=set)  # cache keys this run fitted before a restart, not yet counted
    seen: set = field(default_factory=set)  # cache keys of every architecture this run has scored so far
    # the best whole-image fits' outputs, for the final restoration: a hook (on_fit_output), among ``hooks``
    fit_outputs: SearchFits = field(default_factory=lambda: SearchFits(0))

    def __post_init__(self):
        if not any(hook is self.fit_outputs for hook in self.hooks):
            self.hooks.insert(0, self.fit_outputs)
        if self.archive is None:
            self.archive = self.algorithm.archive(self.archive_size,
                                                  functools.partial(same_architecture, spec=self.spec))
        self._gen_compute = Compute()
        self._batch = None  # the generation asked for and not yet told
        self._started = time.perf_counter()

    # -- hooks -----------------------------------------------------------------------------------
    def _emit(self, event: str, *args) -> None:
        for hook in self.hooks:
            method = getattr(hook, event, None)
            if method is not None:
                method(self, *args)

    # -- evaluation ------------------------------------------------------------------------------
    def cache_key(self, individual) -> str:
        return self.evaluator.cache_key(self.spec.decode(individual).key())

    def context(self) -> EvaluationContext:
        """The narrow view of this search that fidelity schedules work through. Records this run fitted
        before a restart and has not reached again stay out of it, as they were not there the first time."""
        return EvaluationContext(self.evaluator, self.toolbox.map,
                                 lambda: [r for k, r in self.cache.items() if k not in self.uncharged])

    def make_novel(self, individuals: list, exempt: Iterable = ()) -> int:
        """Vary again (with the toolbox's mutation) each child whose architecture this run has already
        scored (fitted, or taken from its cache), or that an earlier child of the batch has, up to
        ``novel_retries`` times, so that every slot buys a new architecture; returns how many children
        were varied again. Cache entries the run has not reached yet do not count: a run repeated with
        its own cache takes the same steps and scores everything from it."""
        mutate = getattr(self.toolbox, "mutate", None)
        if mutate is None or not self.novel_retries:
            return 0
        exempt_ids = {id(ind) for ind in exempt}
        taken = set(self.seen)
        revaried = 0
        for ind in individuals:
            key = self.cache_key(ind)
            tries = 0
            while id(ind) not in exempt_ids and key in taken and tries < self.novel_retries:
                mutate(ind)
                tries += 1
                key = self.cache_key(ind)
            revaried += tries > 0
            taken.add(key)
        return revaried

    def evaluate(self, individuals: Iterable, exempt: Iterable = ()) -> None:
        """Give every invalid individual its fitness: children whose architecture was already fitted are
        varied again first (except ``exempt`` ones); identical architectures are fitted once, and
        architectures already in the cache are not fitted again. A fit that fails for a machine reason
        scores worst but is not cached. Records fitted before a restart count as fits when reached."""
        batch = self._open_batch(list(individuals), exempt, revary=True)
        self._receive(batch, self.fit(batch.genomes))

    def fit(self, genomes: list) -> Iterable[dict]:
        """The records of ``genomes`` by the run's fidelity schedule on its backend (``toolbox.map``),
        lazily, as fits finish: what ``run`` tells the search after each ask."""
        return self.fidelity.evaluate(self.context(), genomes)

    def _open_batch(self, individuals: list, exempt: Iterable, revary: bool) -> "_Batch":
        """Group the invalid individuals by architecture (after varying repeats again, when ``revary``)
        and note which need a fit."""
        invalid = [ind for ind in individuals if not ind.fitness.valid]
        c = self._gen_compute
        if revary:
            c.revaried += self.make_novel(invalid, exempt)
        groups: dict[str, list] = {}
        for ind in invalid:
            ind.born = self.generation
            groups.setdefault(self.cache_key(ind), []).append(ind)
        missing = [key for key in groups if key not in self.cache]
        recovered = [key for key in groups if key in self.uncharged]
        c.evaluated += len(invalid)
        c.cache_hits += len(groups) - len(missing) - len(recovered)
        c.duplicates += len(invalid) - len(groups)
        self._emit("on_evaluations_start", len(missing))
        return _Batch(individuals, groups, missing, recovered)

    def _receive(self, batch: "_Batch", records: Iterable[dict]) -> None:
        """Take the records of ``batch.genomes`` (in any order, matched by architecture), charge them and
        give every invalid individual of the batch its fitness."""
        c = self._gen_compute
        results = {}
        wanted = set(batch.missing)
        for record in records:
            key = self.evaluator.cache_key(record.get("key", ""))
            if key not in wanted or key in results:
                raise UserError(f"tell: a record of architecture {str(record.get('key'))[:12]!r} that was not "
                                f"asked for in generation {self.generation} (or told twice)")
            note = getattr(batch.groups[key][0], "prediction", None)
            if note is not None:  # what the algorithm expected of this child, beside what it measured
                record["prediction"] = note
            output = record.pop("output", None)  # a tensor: kept by a hook (restoration.SearchFits), not in records
            if output is not None and record["error"] is None:
                self._emit("on_fit_output", key, record, output)
            record["generation"] = self.generation
            if record_failure(record) == MACHINE:
                self.failed[key] = record
            else:
                self.cache[key] = record
            results[key] = record
            c.charge(record.get("spent") or spent([record]), record["error"] is not None)
            self._emit("on_evaluation", record)
        if len(results) != len(wanted):
            raise UserError(f"tell: {len(wanted) - len(results)} of the {len(wanted)} genomes asked for in "
                            f"generation {self.generation} have no record")
        for key in batch.recovered:
            self.uncharged.discard(key)
            record = self.cache[key]
            c.charge(record.get("spent") or spent([record]), record["error"] is not None)
        for key, members in batch.groups.items():
            values = tuple((self.cache.get(key) or results[key])["fitness"])
            for ind in members:
                ind.fitness.values = values
        self.seen.update(batch.groups)

    def record_for(self, individual) -> dict:
        key = self.cache_key(individual)
        return self.cache[key] if key in self.cache else self.failed[key]

    # -- loop ------------------------------------------------------------------------------------
    def _initial_population(self) -> list:
        population = self.toolbox.population(n=self.population_size)
        if self.start_prior is not None:
            slots = len(population) - int(self.seed_classical)
            pool = self.toolbox.population(n=slots * self.start_prior.pool)
            population[len(population) - slots:] = self.start_prior.choose(pool, slots, self.spec)
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
        self.totals.add(c)
        self.logbook.record(gen=self.generation, **self.statistics(), fits=c.fits, cache_hits=c.cache_hits,
                            duplicates=c.duplicates, revaried=c.revaried, failures=c.failures,
                            iterations=c.iterations, pixel_steps=c.pixel_steps, fit_seconds=round(c.fit_seconds, 3),
                            seconds=round(time.perf_counter() - started, 3), nevals=c.evaluated,
                            **self.algorithm.logbook_fields())
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

    def history(self) -> History:
        """The run's records as its algorithm sees them (``algorithms.History``): those this run has reached,
        in a fixed order (generation, then key), so that a resumed run shows its algorithm the same rows."""
        records = sorted((self.cache.get(key) or self.failed[key] for key in self.seen
                          if key in self.cache or key in self.failed),
                         key=lambda r: (r.get("generation", 0), r["key"]))
        return History(tuple(records), frozenset(self.seen), self.cache_key, self.spec,
                       tuple(self.evaluator.settings.objectives), self.generation)

    def done(self) -> bool:
        """Whether the termination rule holds (never before the first population is scored)."""
        return self.population is not None and self._batch is None and self.termination(self)

    def ask(self) -> list[list[int]]:
        """The genomes to fit next, each a distinct architecture this run has no score of (possibly none:
        every child may be known already); fit them (``fit``, or elsewhere with ``evaluator.record``) and
        pass their records to ``tell``. Asking again before telling returns the same genomes."""
        if self._batch is not None:
            return self._batch.genomes
        if self.population is None:
            random.seed(self.seed)
            np.random.seed(self.seed % 2**32)
            self._started = time.perf_counter()
            self.generation = 0
            population = self._initial_population()
            self._batch = self._open_batch(population, population[:1] if self.seed_classical else (), revary=True)
        else:
            if not self.algorithm.asks():
                raise UserError(f"algorithm {self.algorithm.name!r} implements step() alone; drive it with "
                                f"run(), or give it ask() and tell()")
            self._started = time.perf_counter()
            self.generation += 1
            offspring = self.algorithm.ask(self.population, self.toolbox, self.history())
            self._batch = self._open_batch(offspring, (), revary=self.algorithm.revary)
        return self._batch.genomes

    def tell(self, records: Iterable[dict]) -> "Search":
        """Take the records of the genomes ``ask`` returned (an iterable; consumed lazily, so each record is
        kept, cached and shown as it arrives), finish the generation and run the hooks; returns self."""
        batch = self._batch
        if batch is None:
            raise UserError("tell: nothing was asked for; call ask() first")
        self._receive(batch, records)
        self._batch = None
        if self.generation == 0:
            self.population = self.algorithm.initialize(batch.individuals, self.toolbox)
        else:
            self.population = self.algorithm.tell(self.population, batch.individuals, self.toolbox, self.history())
        self._finish_generation(batch.individuals, self._started)
        return self

    def run(self) -> "Search":
        """Run (or continue) until the termination rule holds; returns self. Each generation is an ask, the
        fits of the asked genomes by the run's fidelity and backend, and a tell."""
        self._emit("on_start")
        while not self.done():
            if self.population is not None and not self.algorithm.asks():
                self._legacy_step()
                continue
            self.tell(self.fit(self.ask()))
        return self.finish()

    def finish(self) -> "Search":
        """The stages after the search (re-fitting the finalists, when configured), then ``on_end``; a search
        driven by ``ask`` and ``tell`` calls it once ``done()``. Returns self."""
        if self.finalists is not None:
            self.run_finalists()
            self._emit("on_finalists")
        self._emit("on_end")
        return self

    def _legacy_step(self) -> None:
        """A generation of an algorithm that implements ``step`` alone (it evaluates its own children)."""
        started = time.perf_counter()
        self.generation += 1
        self.population, offspring = self.algorithm.step(self.population, self.toolbox, self.evaluate)
        self._finish_generation(offspring, started)

    # -- finalists -------------------------------------------------------------------------------
    def run_finalists(self) -> None:
        """The finalists stage (``finalists.Finalists.run``): re-fit what a resumed run does not have yet."""
        self.finalists.run(self)

    def mean_quality(self, individual) -> float:
        """Quality over the individual's search fit and its re-fits as a finalist."""
        return mean_score(individual.fitness.values[0], self.replicates.get(self.cache_key(individual), []))

    def finalist_table(self) -> list[dict]:
        """What the choice rested on, best mean first: each re-fitted finalist's scores (search fit first)
        and their mean, with the true PSNR of each fit where a clean image was known (never used)."""
        rows = []
        for ind in self.archive:
            key = self.cache_key(ind)
            if key not in self.replicates:
                continue
            records = [self.record_for(ind)] + self.replicates[key]
            rows.append({"key": records[0]["key"], "summary": self.spec.decode(ind).summary(),
                         "scores": [r["fitness"][0] for r in records], "mean": self.mean_quality(ind),
                         "true_psnr": [r["metrics"].get("psnr") for r in records]})
        return sorted(rows, key=lambda row: row["mean"], reverse=True)

    def best(self):
        """The best individual found: the best quality of the hall of fame or Pareto front, or, once
        finalists were re-fitted, the finalist with the best mean quality over its fits."""
        refitted = [ind for ind in self.archive if self.cache_key(ind) in self.replicates]
        if refitted:
            return max(refitted, key=self.mean_quality)
        return max(self.archive, key=lambda ind: ind.fitness.values[0])
