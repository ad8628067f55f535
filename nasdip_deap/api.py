"""The Python API: one call does the common thing and returns a result object.

    import nasdip_deap as nd

    task = nd.make_task("denoise", clean=nd.load_image("photo.png"), sigma=25)
    result = nd.search(task, population=8, generations=3)
    print(result.best.summary())
    restored = result.restore(ensemble=2)          # a Restoration: .image, .metrics, .members

Every keyword of ``search`` is a field of ``compose.SearchConfig`` (the same defaults as the CLI);
parts may be names (``algorithm="nsga2"``, ``mutation="flip-bit:indpb=0.05"``) or objects (an
``Algorithm`` subclass or instance, an operator function, a fidelity or proxy object).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .architecture import Architecture
from .compose import RestoreConfig, SearchConfig, build_search, start_backend, start_run
from .errors import UserError
from .fitness import final_budget, heldout_peak, make_holdout, stop_steps
from .genome import classical_dip
from .registry import TASKS
from .restoration import Restoration, choose_search_fits, restore as restore_fits
from .loop import Compute, Search


@dataclass(frozen=True)
class FrontEntry:
    """One architecture of a Pareto front with its objective values."""

    architecture: Architecture
    objectives: dict
    bits: list


@dataclass
class SearchResult:
    """What a search found. ``best`` is the chosen architecture; ``restore()`` fits it on the whole
    image (with an ensemble of fits when asked) and returns the restoration."""

    search: Search
    config: SearchConfig
    task: object
    final_stop: dict | None = None  # the calibration fit of final_stop="heldout", once made

    @property
    def best_bits(self) -> list[int]:
        return list(map(int, self.search.best()))

    @property
    def best(self) -> Architecture:
        return self.search.spec.decode(self.search.best())

    @property
    def best_record(self) -> dict:
        """The evaluation record of the best architecture's search fit."""
        return self.search.record_for(self.search.best())

    @property
    def front(self) -> list[FrontEntry]:
        """The Pareto front of a multi-objective search (for one objective: the best architecture)."""
        members = list(self.search.archive) if self.search.algorithm.multi_objective else [self.search.best()]
        return [FrontEntry(self.search.spec.decode(ind), dict(self.search.record_for(ind)["objectives"]),
                           list(map(int, ind))) for ind in members]

    @property
    def records(self) -> list[dict]:
        """Every evaluation of the run (machine failures included), in the order they were made."""
        return list(self.search.cache.values()) + list(self.search.failed.values())

    @property
    def logbook(self):
        return self.search.logbook

    @property
    def totals(self) -> Compute:
        return self.search.totals

    def final_iterations(self) -> tuple[int, bool]:
        """(steps, exact) of the final fits: see ``fitness.final_budget``; when ``final_stop`` resolves to
        ``heldout`` (``final_stop_rule``) the held-out peak of a calibration fit of the best architecture
        (made once, ``self.final_stop``), never fewer than the search fits' budget; to ``cap``, the cap
        (``fitness.stop_steps``)."""
        rule = self.final_stop_rule()
        if rule == "fixed":
            return final_budget(self.best_record, self.config.iterations, self.config.final_iterations)
        peak = self.calibrate()["steps"] if rule == "heldout" else None
        return stop_steps(rule, self.config.iterations, self.config.final_step_cap(), peak), True

    def final_stop_rule(self) -> str:
        """``fixed``, ``heldout`` or ``cap``: the config's ``final_stop`` for this image, proxy and task."""
        return self.config.final_stop_rule(self.task.output_size, self.search.evaluator.fits_whole_image,
                                           self.task.noiseless)

    def calibrate(self) -> dict:
        """The calibration fit of ``fitness.heldout_peak`` for the best architecture (once; then remembered)."""
        if self.final_stop is None:
            settings = self.search.evaluator.settings
            self.final_stop = heldout_peak(self.best, self.task, self.search.evaluator.runner,
                                           self.config.final_step_cap(), settings.holdout, self.config.seed)
        return self.final_stop

    def restore(self, iterations: int | None = None, ensemble: int | None = None,
                architecture: Architecture | None = None, map_fn=None,
                search_fits: bool | None = None, progress=None) -> Restoration:
        """Fit the best architecture (or ``architecture``) on the whole observation, ``ensemble`` times
        (default: the config's), with the search's seed rule, device, threads and engine options, and
        average in the best of the search's own whole-image fits (``search_fits``; default: when
        restoring the best architecture; see ``chosen_search_fits``). ``map_fn`` runs the fits
        (default: a backend of the search's config, started for them); ``progress`` (``hooks.FitProgress``)
        is told of each fit."""
        arch = architecture or self.best
        if iterations is None:
            steps, exact = self.final_iterations()
            iterations = steps if exact else arch.iterations_within(steps)
        ensemble = self.config.ensemble if ensemble is None else ensemble
        if search_fits is None:
            search_fits = architecture is None
        pooled = self.chosen_search_fits() if search_fits else []
        fits = functools.partial(restore_fits, arch, self.task, self.search.evaluator.runner, iterations,
                                 run_seed=self.config.seed, ensemble=ensemble, holdout=self.final_holdout(),
                                 search_fits=pooled, progress=progress)
        if map_fn is not None:
            return fits(map_fn=map_fn)
        with start_backend(self.config) as backend:
            return fits(map_fn=backend.map)

    def chosen_search_fits(self) -> list[tuple[str, float, torch.Tensor]]:
        """(key, fitness, output) of the search fits averaged into the restoration: of the best-ranked
        whole-image fits kept (``search_fits`` in the config), the prefix whose mean scores highest by
        the search's own fitness (held-out pixels when blind). Empty when candidates were scored on a
        proxy (their outputs are not the whole image) or none were kept."""
        return choose_search_fits(self.search.fit_outputs.ranked(), self.search.evaluator.score_image)

    def final_holdout(self):
        """With ``final_holdout`` and blind fitness: the whole image's held-out pixels (the draw a search
        without a proxy scores on), kept out of every final fit so that the ensemble is scored blind."""
        settings = self.search.evaluator.settings
        if not (self.config.final_holdout and settings.mode == "blind"):
            return None
        return make_holdout(self.task, settings.holdout, settings.seed)


def search(task, *, hooks=(), cache=(), **settings) -> SearchResult:
    """Search an architecture for ``task`` (a ``Task``, see ``make_task``) and return the result.
    ``settings`` are ``SearchConfig`` fields; ``hooks`` are objects with ``on_start``,
    ``on_evaluation``, ``on_generation``, ... methods (see ``hooks.py``); ``cache`` names ``cache.jsonl``
    files of earlier runs (as ``nasdip search --cache``): architectures scored there in this run's context
    are not fitted again. The search is made ready as the CLI's is (``compose.start_run``)."""
    from .cache import read_cache_files

    config = SearchConfig(**settings)
    run = build_search(config, task, hooks)
    with start_run(run, config, imported=read_cache_files(cache, run.evaluator)):
        run.run()
    return SearchResult(run, config, task)


def restore(architecture: Architecture, task, **settings) -> Restoration:
    """Fit one architecture on ``task`` (``settings``: ``RestoreConfig`` fields: iterations, ensemble,
    seed, device, threads, precision, ...). A genome with an evolved step count trains its share of
    ``iterations``, as ``nasdip restore`` does."""
    config = RestoreConfig(**settings)
    return restore_fits(architecture, task, config.runner(), architecture.iterations_within(config.iterations),
                        run_seed=config.seed, ensemble=config.ensemble)


def baseline(task, **settings) -> Restoration:
    """Classical DIP (Ulyanov et al.) on ``task``, with ``RestoreConfig`` settings."""
    return restore(classical_dip(), task, **settings)


def make_task(name, *, clean: torch.Tensor | None = None, observed: torch.Tensor | None = None, seed: int = 0,
              **options):
    """A task by registered name (or class): degraded from a ``clean`` (C, H, W) image in [0, 1] (so the
    ground truth is known), or an ``observed`` image as it is (``clean`` then only scores it).
    ``options`` are the task's declared options (``sigma`` for denoise, ``mask``/``mask_ratio`` for
    inpaint, ``scale`` for super-resolution; ``nasdip list`` shows them)."""
    from .problem import make_task as make

    cls = TASKS.get(name) if isinstance(name, str) else name
    if clean is None and observed is None:
        raise UserError("make_task needs a clean image or an observed one")
    return make(cls, options, clean=clean, observed=observed, seed=seed)
