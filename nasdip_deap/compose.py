"""The composition root: every default of a run lives here, and every search is assembled here.

``SearchConfig`` (and ``RestoreConfig`` for a single architecture) holds every setting as a value with
its default; parts (algorithm, operators, fidelity, proxy) may be names, ``NAME:key=value`` texts,
classes or objects. ``build_search`` turns a config and a task into a ready ``Search``; the CLI, the
Python API, the benchmarks and the tests all call it, so a default or a rule exists once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from . import prior_start
from .algorithms import Algorithm
from .backends import BackendOptions, check_backend, make_backend
from .engine import PRECISIONS, check_device
from .errors import UserError
from .fidelity import make_fidelity, patience_for
from .finalists import make_finalists
from .fitness import AUTO_HELDOUT_ABOVE, FINAL_STOPS, FITNESS_MODES, OBJECTIVES, Evaluator, FitnessSettings
from .genome import MAX_LEVELS, MIN_LEVELS, GenomeSpec
from .params import check_params, parse_choice
from .proxy import make_proxy
from .registry import ALGORITHMS
from .restoration import SearchFits
from .runner import FitRunner
from .loop import Search, make_toolbox, max_generations

# Upper bounds on counts: far above any useful run (the paper's search is population 500, 10-20
# generations; DIP's longest reference fit is 11,000 steps), low enough that a typo fails at once.
MAX_POPULATION = 100_000
MAX_GENERATIONS = 100_000
MAX_ITERATIONS = 1_000_000
MAX_ENSEMBLE = 1_000
MAX_THREADS = 1_024


def _count(flag: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{flag} must be a whole number between {low} and {high:,}, got {value!r}")


def _probability(flag: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UserError(f"{flag} must be a number between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class FitConfig:
    """How fits run: shared by searches and single restorations."""

    seed: int = 0
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    threads: int = 1  # torch CPU threads per fit: fixed, since the thread count changes CPU results slightly
    # Adam steps of every fit, for every command alike (search candidates, final fits, restore, baseline), so
    # that a search and a baseline run with defaults compare like for like; near where classical DIP peaks at
    # 64 px on the CPU (docs/results.md)
    iterations: int = 300
    # bf16 + channels-last where it was measured not to cost quality (AMX CPUs), fp32 elsewhere
    # (engine.cpu_bf16_default, docs/results.md)
    precision: str = "auto"
    channels_last: bool | None = None  # None: with bf16 on the CPU
    cuda_graph: bool = True  # capture each fit's training step as a CUDA graph (CUDA only)
    ensemble: int = 1  # final fits averaged into the restoration

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UserError(f"--seed must be a whole number, got {self.seed!r}")
        _count("--threads", self.threads, 1, MAX_THREADS)
        _count("--iterations", self.iterations, 1, MAX_ITERATIONS)
        _count("--ensemble", self.ensemble, 1, MAX_ENSEMBLE)
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def runner(self) -> FitRunner:
        """The fit runner of this config; the device is checked first (one line when it is unusable)."""
        check_device(self.device)
        return FitRunner.create(self.device, self.threads, self.precision, self.channels_last, self.cuda_graph)


@dataclass(frozen=True)
class RestoreConfig(FitConfig):
    """One architecture fitted on the whole image (``nasdip restore``, ``nasdip baseline``): the fit
    settings alone, with their defaults (the same iterations as a search's fits)."""


@dataclass(frozen=True)
class SearchConfig(FitConfig):
    """Every setting of a search, with its default."""

    # the genome
    levels: int = 5
    evolve_iterations: bool = False
    # the search
    algorithm: Any = "ga"
    population: int = 6
    generations: int = 4  # with 2 the search mostly kept classical DIP; 4 evolves past it (docs/results.md)
    crossover: Any = "two-point"
    mutation: Any = "flip-bit"
    selection: Any = None  # None: the algorithm's default (tournament; nsga2 for nsga2)
    cxpb: float = 0.5
    mutpb: float = 0.3
    lambda_: int | None = None  # children per generation of mu-plus-lambda and nsga2 (None: population)
    hof_size: int = 5
    seed_classical: bool = True
    init_spread: float | None = None  # start from mutants of classical DIP instead of random genomes
    # start from the random genomes a model of earlier runs' records ranks best (prior_start.py): record files
    # ("recorded": the built-in prior), None for the paper's uniform start, or auto: the built-in prior where
    # its genome spec matches, no --init-spread is given and the algorithm is not random search (whose start
    # is the uniform baseline); why it is the default, and where it did not win: docs/results.md
    init_prior: Any = "auto"
    init_pool: int = 20  # random genomes drawn per slot of the first population that the prior ranks
    novel_retries: int = 10  # times a child whose architecture was already fitted is varied again
    # fitness: blind (held-out observed pixels) always, unless the oracle is asked for by name; a clean
    # image given for scoring never selects architectures by default
    fitness: str = "blind"
    holdout: float = 0.1
    cost: str = "parameters"  # second objective of multi-objective algorithms
    fidelity: Any = "full"
    early_stop: int | None = None
    proxy: Any = "auto"  # auto: a downscaled copy of large images, the whole image otherwise
    finalists: int = 0
    finalist_repeats: int = 2
    eval_timeout: float | None = None
    # the final restoration
    ensemble: int = 2  # two final fits: the largest gain per extra fit (docs/results.md)
    search_fits: int = 16  # the best whole-image search fits kept to average into the restoration (0: none)
    final_iterations: int | None = None  # None: the search fit's budget (or the step where it peaked)
    final_holdout: bool = False  # blind fitness: final fits keep the held-out pixels out, to score the ensemble
    # how many steps the final fits train: fixed (final_iterations, else the search fit's budget or peak),
    # heldout (one calibration fit on the whole image finds its held-out peak, up to final_cap steps, and
    # never fewer than the search fits' budget), cap (final_cap steps), or auto (for images above
    # fitness.AUTO_HELDOUT_ABOVE px or scored on a proxy: cap for a noiseless task, heldout for a noisy one;
    # fixed otherwise and when final_iterations is given)
    final_stop: str = "auto"
    final_cap: int | None = None  # None: 10 x iterations
    # where fits run
    backend: Any = None  # a name of backends.BACKENDS (None: scoop under SCOOP, else serial), a Backend or an Executor
    workers: int | None = None
    scheduler: str | None = None  # dask: the address or scheduler file of a running cluster (None: a local one)

    def __post_init__(self):
        super().__post_init__()
        if not MIN_LEVELS <= self.levels <= MAX_LEVELS:
            raise UserError(f"--levels must be between {MIN_LEVELS} and {MAX_LEVELS}, got {self.levels}")
        _count("--population", self.population, 1, MAX_POPULATION)
        _count("--generations", self.generations, 0, MAX_GENERATIONS)
        _count("--hof-size", self.hof_size, 1, MAX_POPULATION)
        _count("--finalists", self.finalists, 0, MAX_POPULATION)
        _count("--finalist-repeats", self.finalist_repeats, 1, MAX_ENSEMBLE)
        _count("--search-fits", self.search_fits, 0, MAX_POPULATION)
        _count("--novel-retries", self.novel_retries, 0, 1000)
        if self.lambda_ is not None:
            _count("--lambda", self.lambda_, 1, MAX_POPULATION)
        if self.final_iterations is not None:
            _count("--final-iterations", self.final_iterations, 1, MAX_ITERATIONS)
        if self.final_stop not in FINAL_STOPS:
            raise UserError(f"--final-stop must be one of {', '.join(FINAL_STOPS)}, got {self.final_stop!r}")
        if self.final_cap is not None:
            _count("--final-cap", self.final_cap, 1, MAX_ITERATIONS)
            if self.final_stop == "fixed":
                raise UserError("--final-cap applies with --final-stop heldout, cap or auto")
        if self.final_stop == "heldout" and self.final_iterations is not None:
            raise UserError("--final-stop heldout finds the final fits' steps itself; leave out --final-iterations")
        if self.final_stop == "cap" and self.final_iterations is not None:
            raise UserError("--final-stop cap trains the final fits --final-cap steps; give --final-cap, "
                            "not --final-iterations")
        if self.early_stop is not None:
            _count("--early-stop", self.early_stop, 1, 1000)
        _probability("--cxpb", self.cxpb)
        _probability("--mutpb", self.mutpb)
        if self.init_spread is not None:
            _probability("--init-spread", self.init_spread)
        _count("--init-pool", self.init_pool, 1, 10_000)
        object.__setattr__(self, "init_prior", _prior_setting(self.init_prior))
        if isinstance(self.init_prior, tuple):
            if self.init_spread is not None:
                raise UserError("--init-prior and --init-spread choose the first population two ways; give one")
            missing = [p for p in self.init_prior if p != prior_start.RECORDED and not os.path.isfile(p)]
            if missing:
                raise UserError(f"--init-prior {missing[0]!r}: no such file")
        if self.fitness not in FITNESS_MODES:
            raise UserError(f"--fitness must be {' or '.join(FITNESS_MODES)}, got {self.fitness!r}")
        if self.cost not in OBJECTIVES or self.cost == "quality":
            raise UserError(f"--cost must be one of {', '.join(o for o in OBJECTIVES if o != 'quality')}, "
                            f"got {self.cost!r}")
        if self.eval_timeout is not None and not (isinstance(self.eval_timeout, (int, float))
                                                  and 0 < self.eval_timeout < float("inf")):
            raise UserError(f"--eval-timeout must be a number of seconds > 0, got {self.eval_timeout!r}")
        check_backend(self.backend, self.backend_options())

    def start_prior_files(self) -> tuple[str, ...] | None:
        """The record files whose model ranks the first population (``init_prior`` resolved), or None."""
        if self.init_prior == "auto":
            spec = {"levels": self.levels, "evolve_iterations": self.evolve_iterations}
            random_search = isinstance(self.algorithm, str) and self.algorithm.split(":")[0] == "random"
            if self.init_spread is not None or random_search or spec != prior_start.RECORDED_SPEC:
                return None
            return prior_start.recorded_paths()
        return None if self.init_prior is None else prior_start.resolve(self.init_prior)

    def final_stop_rule(self, image_size: tuple[int, int], whole_image: bool, noiseless: bool = False) -> str:
        """``fixed``, ``heldout`` or ``cap``: ``final_stop`` resolved for an image of ``image_size`` (h, w)
        whose candidates were fitted on the whole image (``whole_image``) or on a proxy, for a task whose
        observation is ``noiseless`` (``Task.noiseless``) or not."""
        if self.final_stop != "auto":
            return self.final_stop
        if self.final_iterations is not None:
            return "fixed"
        if whole_image and max(image_size) <= AUTO_HELDOUT_ABOVE:
            return "fixed"
        return "cap" if noiseless else "heldout"

    def final_step_cap(self) -> int:
        """The final fits' cap: the most steps of ``final_stop="heldout"``'s calibration fit, and the steps of
        ``final_stop="cap"``: ``final_cap``, else 10 x iterations."""
        return self.final_cap or 10 * self.iterations

    def backend_options(self, evaluator: Evaluator | None = None) -> BackendOptions:
        """What this run's backend is built from (``lost``: the evaluator's record of a lost fit)."""
        return BackendOptions(workers=self.workers, threads=self.threads, device=self.device,
                              eval_timeout=self.eval_timeout, scheduler=self.scheduler,
                              lost=None if evaluator is None else evaluator.lost_record)


def make_algorithm(choice, cxpb: float, mutpb: float, lambda_: int | None) -> Algorithm:
    """An algorithm from ``NAME[:key=value,...]`` (a registered class; its declared ``params`` are checked,
    an unknown key is refused, and a value given there wins over ``cxpb``/``mutpb``/``lambda_``), an
    ``Algorithm`` subclass, or an instance (used as given)."""
    given: dict = {}
    if isinstance(choice, str):
        name, given = parse_choice(choice)
        entry = ALGORITHMS.entry(name)
        unknown = sorted(set(given) - set(entry.params))
        if unknown:
            raise UserError(f"algorithm {name!r} takes no parameter {unknown[0]!r} (its parameters: "
                            f"{', '.join(sorted(entry.params)) or 'none'})")
        given = check_params(f"algorithm {name!r}", given, entry.params)
        choice = entry.obj
    if isinstance(choice, type):
        values = {"cxpb": cxpb, "mutpb": mutpb, "lambda_": lambda_}
        values.update({("lambda_" if key == "lambda" else key): value for key, value in given.items()})
        return choice(**values)
    return choice


def part_label(part) -> str:
    """A part as ``name:key=value,...`` (from its ``describe()``), for the cache key and config.json."""
    describe = getattr(part, "describe", None)
    if describe is None:
        return f"{type(part).__module__}.{type(part).__qualname__}"
    info = dict(describe())
    name = info.pop("name", type(part).__name__)
    return name + (":" + ",".join(f"{k}={v}" for k, v in info.items()) if info else "")


def build_search(config: SearchConfig, task, hooks=(), runner: FitRunner | None = None,
                 evaluator_class=Evaluator) -> Search:
    """A ready-to-run ``Search`` of ``config`` on ``task`` (its toolbox maps serially until a backend's
    ``map`` is registered, see ``start_backend``). ``search.operators`` holds the resolved operators.
    ``evaluator_class`` builds the fitness strategy from the same arguments as ``Evaluator`` (a subclass
    that scores without fitting, for example: benchmarks/surrogate.py)."""
    from .operators import bind_operator

    spec = GenomeSpec(levels=config.levels, evolve_iterations=config.evolve_iterations)
    algorithm = make_algorithm(config.algorithm, config.cxpb, config.mutpb, config.lambda_)
    objectives = ("quality", config.cost) if algorithm.multi_objective else ("quality",)
    fidelity = make_fidelity(config.fidelity)
    proxy = make_proxy(config.proxy, task, spec.levels)
    settings = FitnessSettings(mode=config.fitness, iterations=config.iterations, holdout=config.holdout,
                               seed=config.seed, objectives=objectives, timeout=config.eval_timeout,
                               early_stop=patience_for(fidelity, config.early_stop), fidelity=part_label(fidelity))
    evaluator = evaluator_class(spec, task, settings, runner or config.runner(), proxy,
                                keep_outputs=config.search_fits > 0)
    toolbox = make_toolbox(spec, evaluator, len(objectives))
    start_prior, prior_files = None, config.start_prior_files()
    if prior_files:
        from .predictor import require_sklearn

        require_sklearn("--init-prior")
        start_prior = prior_start.PriorStart(prior_files, spec, pool=config.init_pool)
    operators = {
        "crossover": bind_operator(toolbox, "mate", config.crossover, "crossover", spec),
        "mutation": bind_operator(toolbox, "mutate", config.mutation, "mutation", spec),
        "selection": bind_operator(toolbox, "select", config.selection or algorithm.default_selection,
                                   "selection", spec),
    }
    algorithm.check_selection(operators["selection"]["name"], toolbox.select.func)
    search = Search(spec=spec, evaluator=evaluator, toolbox=toolbox, algorithm=algorithm,
                    population_size=config.population, termination=max_generations(config.generations),
                    seed=config.seed, archive_size=config.hof_size, seed_classical=config.seed_classical,
                    init_spread=config.init_spread, fidelity=fidelity, start_prior=start_prior,
                    finalists=make_finalists(config.finalists, config.finalist_repeats),
                    novel_retries=config.novel_retries, fit_outputs=SearchFits(config.search_fits),
                    hooks=list(hooks))
    search.operators = operators
    return search


@contextlib.contextmanager
def start_run(search: Search, config: SearchConfig, *, state: dict | None = None, run_dir=None,
              imported: dict | None = None, resuming: bool = False):
    """Make a built search ready to run, the same way for the CLI and the API: a checkpoint's ``state`` put
    back, the evaluations of the run folder's ``cache.jsonl`` and of ``imported`` (earlier runs' cache
    files, ``cache.read_cache_files``) loaded so they are not fitted again, the backend of ``config``
    started (``start_backend``) with its ``map`` registered, and the checkpoint's RNG states set last, so
    that nothing draws between them and the next generation. Yields the backend; stops it on exit."""
    from . import cache, checkpoint

    if state is not None:
        checkpoint.restore(search, state, rng=False)
    cache.preload_cache(search, run_dir, imported or {}, resuming=resuming)
    with start_backend(config, search.evaluator) as backend:
        search.toolbox.register("map", backend.map)
        if state is not None:
            checkpoint.set_rng_states(state["rng"])
        yield backend


def start_backend(config: SearchConfig, evaluator: Evaluator | None = None):
    """The evaluation backend of ``config`` (a context manager: it stops its workers on exit)."""
    return make_backend(config.backend, config.backend_options(evaluator))


PRIOR_NAMES = ("auto", "none", prior_start.RECORDED)  # init_prior values that are not file paths


def _prior_setting(value):
    """``init_prior`` as "auto", None or a tuple of files: one path, paths joined by os.pathsep (a KEY=VALUE
    setting), or a sequence of them (the CLI, a saved config.json); "none" is None."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and value[0] in ("auto", "none"):
        value = value[0]
    if value is None or value == "none":
        return None
    if value == "auto":
        return value
    if isinstance(value, str):
        value = [p for p in value.split(os.pathsep) if p]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(p, str) and p for p in value):
        raise UserError("--init-prior takes auto, none, recorded or record files (evaluations.jsonl, cache.jsonl, "
                        ".jsonl.gz)")
    return tuple(value)


def config_to_dict(config) -> dict[str, Any]:
    """Every field of a config as JSON data (a part given as an object is kept by its label, see
    ``part_label``): what a run folder saves so that ``--resume`` rebuilds the same config as a whole."""
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):  # file lists (init_prior)
            values[f.name] = list(value)
        else:
            values[f.name] = value if value is None or isinstance(value, (str, int, float, bool)) else part_label(value)
    return values


def config_from_dict(values: dict[str, Any], cls=SearchConfig):
    """The config saved by ``config_to_dict``, checked as a new one is; a setting this version does not
    know is refused (the run was saved by another version)."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise UserError(f"the saved settings hold {unknown[0]!r}, a setting this version of nasdip does not know")
    return cls(**values)


def config_fields(cls=SearchConfig) -> dict[str, Any]:
    """{field name: default} of a config class: what the CLI builds its flags' defaults from."""
    return {f.name: f.default for f in dataclasses.fields(cls)}
