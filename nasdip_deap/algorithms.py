"""Search algorithms, registered by name in ``ALGORITHMS``; one generation per ``step`` call so the
search loop can run hooks (logging, checkpoints, progress) between generations.

``ga`` and ``mu-plus-lambda`` have the semantics of DEAP's ``eaSimple`` and ``eaMuPlusLambda``;
``nsga2`` is a (mu + lambda) search whose survivors are chosen by ``selNSGA2``, over quality and a
cost objective, keeping a Pareto front; ``random`` samples fresh genomes every generation, the baseline
every comparison of search algorithms needs. Third-party algorithms arrive through the entry-point group
``nasdip_deap.algorithms`` (a class with this interface).

Parameters are chosen as ``NAME:key=value,...`` (``ga:cxpb=0.9``), checked against the class's declared
``params`` (types and ranges); a value given there wins over ``--cxpb``, ``--mutpb`` and ``--lambda``.
"""
from __future__ import annotations

from typing import Callable, ClassVar

from deap import algorithms as deap_algorithms
from deap import tools

from .errors import UserError
from .params import PROBABILITY, Param
from .registry import ALGORITHMS

Evaluate = Callable[[list], None]


class Algorithm:
    """Base class: subclasses implement ``step``; the search loop calls ``initialize`` once, then ``step``
    once per generation, and keeps ``archive(...)`` updated with every evaluated offspring.

    The constructor receives ``cxpb``, ``mutpb`` and ``lambda_`` from the command line; raise
    ``UserError`` for a combination the algorithm cannot use.
    """

    name: ClassVar[str] = ""
    multi_objective: ClassVar[bool] = False
    default_selection: ClassVar[str] = "tournament"
    # parameters a NAME:key=value text may set (the constructor's keywords; "lambda" is ``lambda_``)
    params: ClassVar[dict] = {"cxpb": PROBABILITY, "mutpb": PROBABILITY, "lambda": Param(int, 1, 100_000)}

    def __init__(self, cxpb: float = 0.5, mutpb: float = 0.2, lambda_: int | None = None):
        self.cxpb = cxpb
        self.mutpb = mutpb
        self.lambda_ = lambda_

    @classmethod
    def check_selection(cls, name: str, selection) -> None:
        """A multi-objective algorithm needs a selection that sees every objective (the function sets
        ``multi_objective = True``, as ``nsga2`` does); tournament or best would rank by quality alone."""
        if cls.multi_objective and not getattr(selection, "multi_objective", False):
            raise UserError(f"algorithm {cls.name!r} optimises several objectives, but selection {name!r} ranks by "
                            f"the first alone; use --selection {cls.default_selection} (or a selection that sets "
                            f"multi_objective = True)")

    def initialize(self, population: list, toolbox) -> list:
        """Called once after the first population is evaluated."""
        return population

    def step(self, population: list, toolbox, evaluate: Evaluate) -> tuple[list, list]:
        """Make and evaluate one generation; return (next population, evaluated offspring)."""
        raise NotImplementedError

    def archive(self, size: int, similar) -> tools.HallOfFame:
        return tools.HallOfFame(size, similar=similar)

    def describe(self) -> dict:
        return {"name": self.name, "cxpb": self.cxpb, "mutpb": self.mutpb, "lambda": self.lambda_}


@ALGORITHMS.register("ga")
class SimpleGA(Algorithm):
    """Generational GA with DEAP eaSimple semantics: select, vary (varAnd), replace the population."""

    name = "ga"
    params = {"cxpb": PROBABILITY, "mutpb": PROBABILITY}

    def __init__(self, cxpb: float = 0.5, mutpb: float = 0.2, lambda_: int | None = None):
        if lambda_ is not None:
            raise UserError("ga replaces the whole population each generation; --lambda applies to "
                            "mu-plus-lambda and nsga2")
        super().__init__(cxpb, mutpb, lambda_)

    def step(self, population, toolbox, evaluate):
        offspring = toolbox.select(population, len(population))
        offspring = deap_algorithms.varAnd(offspring, toolbox, self.cxpb, self.mutpb)
        evaluate(offspring)
        return offspring, offspring


@ALGORITHMS.register("mu-plus-lambda")
class MuPlusLambda(Algorithm):
    """(mu + lambda) with DEAP eaMuPlusLambda semantics: parents and lambda children compete.

    varOr makes each child by crossover, mutation or reproduction; survivors are selected from
    parents and children together."""

    name = "mu-plus-lambda"

    def __init__(self, cxpb: float = 0.5, mutpb: float = 0.3, lambda_: int | None = None):
        if cxpb + mutpb > 1.0:
            raise UserError(f"{self.name} needs --cxpb + --mutpb <= 1, got {cxpb} + {mutpb}")
        super().__init__(cxpb, mutpb, lambda_)

    def initialize(self, population, toolbox):
        if len(population) < 2 and self.cxpb > 0:
            raise UserError(f"{self.name} mates two distinct parents: use --population 2 or more, or --cxpb 0")
        return population

    def step(self, population, toolbox, evaluate):
        offspring = deap_algorithms.varOr(population, toolbox, self.lambda_ or len(population),
                                          self.cxpb, self.mutpb)
        evaluate(offspring)
        return toolbox.select(population + offspring, len(population)), offspring


@ALGORITHMS.register("nsga2")
class NSGA2(MuPlusLambda):
    """Multi-objective NSGA-II: restoration quality against network cost, keeping the Pareto front."""

    name = "nsga2"
    multi_objective = True
    default_selection = "nsga2"

    def initialize(self, population, toolbox):
        population = super().initialize(population, toolbox)
        return toolbox.select(population, len(population))  # assigns crowding distances

    def archive(self, size, similar):
        return tools.ParetoFront(similar=similar)


@ALGORITHMS.register("random")
class RandomSearch(Algorithm):
    """Random search: every generation is a fresh sample of random genomes (lambda, default the population
    size); the first population holds classical DIP like the others'. No selection, no variation."""

    name = "random"
    params = {"lambda": Param(int, 1, 100_000)}

    def step(self, population, toolbox, evaluate):
        sample = toolbox.population(n=self.lambda_ or len(population))
        evaluate(sample)
        return sample, sample

    def describe(self) -> dict:
        return {"name": self.name, "lambda": self.lambda_}
