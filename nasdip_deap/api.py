"""A small Python API over the search machinery, for scripts and benchmarks:

    from nasdip_deap.api import search_architecture
    run = search_architecture(task, population=8, generations=3, iterations=400, fitness="blind")
    best = run.spec.decode(run.best())
"""
from __future__ import annotations

from .algorithms import Algorithm
from .fidelity import make_fidelity, patience_for
from .finalists import make_finalists
from .fitness import Evaluator, FitnessSettings
from .genome import GenomeSpec
from .operators import bind_operator
from .registry import ALGORITHMS
from .search import Search, make_toolbox, max_generations


def search_architecture(task, *, population: int = 8, generations: int = 3, iterations: int = 400,
                        fitness: str = "blind", seed: int = 0, levels: int = 5, algorithm: str = "ga",
                        crossover: str = "two-point", mutation: str = "flip-bit", selection: str | None = None,
                        cxpb: float = 0.5, mutpb: float = 0.3, fidelity: str = "full", early_stop: int | None = None,
                        device: str = "auto", holdout: float = 0.1, hooks: list | None = None,
                        seed_classical: bool = True, evolve_iterations: bool = False,
                        init_spread: float | None = None, finalists: int = 0, finalist_repeats: int = 2) -> Search:
    """Run a whole search on ``task`` in this process and return the finished ``Search``. With
    ``finalists`` > 0 the best ones are re-fitted ``finalist_repeats`` times before ``best()`` chooses."""
    spec = GenomeSpec(levels=levels, evolve_iterations=evolve_iterations)
    algorithm_cls: type[Algorithm] = ALGORITHMS.get(algorithm)
    objectives = ("quality", "parameters") if algorithm_cls.multi_objective else ("quality",)
    settings = FitnessSettings(mode=fitness, iterations=iterations, holdout=holdout, seed=seed, device=device,
                               objectives=objectives, early_stop=patience_for(fidelity, early_stop),
                               fidelity=fidelity)
    evaluator = Evaluator(spec, task, settings)
    toolbox = make_toolbox(spec, evaluator, len(objectives))
    bind_operator(toolbox, "mate", crossover, "crossover", spec)
    bind_operator(toolbox, "mutate", mutation, "mutation", spec)
    chosen = bind_operator(toolbox, "select", selection or algorithm_cls.default_selection, "selection", spec)
    algorithm_cls.check_selection(chosen["name"], toolbox.select.func)
    run = Search(spec=spec, evaluator=evaluator, toolbox=toolbox, algorithm=algorithm_cls(cxpb=cxpb, mutpb=mutpb),
                 population_size=population, termination=max_generations(generations), seed=seed,
                 seed_classical=seed_classical, init_spread=init_spread, fidelity=make_fidelity(fidelity),
                 finalists=make_finalists(finalists, finalist_repeats), hooks=list(hooks or []))
    return run.run()
