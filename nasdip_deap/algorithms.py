"""Search algorithms, registered by name in ``ALGORITHMS``. The search loop drives an algorithm by
ask and tell, one generation at a time, so that hooks (logging, checkpoints, progress) run between
generations and a user can fit the asked genomes anywhere (``Search.ask``/``Search.tell``).

``ga`` and ``mu-plus-lambda`` have the semantics of DEAP's ``eaSimple`` and ``eaMuPlusLambda``;
``nsga2`` is a (mu + lambda) search whose survivors are chosen by ``selNSGA2``, over quality and a
cost objective, keeping a Pareto front; ``random`` samples fresh genomes every generation, the baseline
every comparison of search algorithms needs; ``predictor-guided`` (predictor.py) breeds many more
children than it fits and fits those a model of the run's records ranks best. Third-party algorithms
arrive through the entry-point group ``nasdip_deap.algorithms`` (a class with this interface).

Parameters are chosen as ``NAME:key=value,...`` (``ga:cxpb=0.9``), checked against the class's declared
``params`` (types and ranges); a value given there wins over ``--cxpb``, ``--mutpb`` and ``--lambda``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from deap import algorithms as deap_algorithms
from deap import tools

from .errors import UserError
from .params import PROBABILITY, Param
from .registry import ALGORITHMS

Evaluate = Callable[[list], None]


@dataclass(frozen=True)
class History:
    """What an algorithm sees of its run when it asks and is told: every evaluation record the run has
    reached (fitted, taken from its cache, or failed for a machine reason), oldest generation first,
    each a dict with ``bits``, ``key``, ``architecture``, ``fitness``, ``objectives``, ``metrics``,
    ``seconds``, ``iterations``, ``error``, ``generation`` and, where the fitness recorded them, its
    learning curve (``curve``); ``key_of(individual)`` is the run's cache key of an individual (equal
    keys: the same architecture, already scored when in ``seen``); ``spec`` decodes genomes."""

    records: tuple = ()
    seen: frozenset = frozenset()
    key_of: Callable | None = None
    spec: object = None
    objectives: tuple = ("quality",)
    generation: int = 0


class Algorithm:
    """Base class. Per generation the search loop calls ``ask(population, toolbox, history)`` for the
    children to fit, fits those without a valid fitness, then ``tell(population, offspring, toolbox,
    history)`` for the next population; ``initialize`` once after the first population is evaluated.
    The loop keeps ``archive(...)`` updated with every evaluated offspring, and checkpoints
    ``state_dict()`` after every generation (``load_state_dict`` puts it back on resume): whatever an
    algorithm keeps between generations goes there, or a resumed run would differ from an uninterrupted
    one. Randomness comes from the ``random`` module, which the run seeds and checkpoints.

    An algorithm written before ask and tell implements ``step`` alone; the loop still runs it (with
    ``Search.run``, not by hand). ``step`` of an ask/tell algorithm is ask, evaluate, tell.

    The constructor receives ``cxpb``, ``mutpb`` and ``lambda_`` from the command line; raise
    ``UserError`` for a combination the algorithm cannot use.
    """

    name: ClassVar[str] = ""
    multi_objective: ClassVar[bool] = False
    default_selection: ClassVar[str] = "tournament"
    # True: the loop varies again (``Search.make_novel``) each asked child whose architecture the run has
    # already scored. An algorithm that chooses its children by what it knows of them says False.
    revary: ClassVar[bool] = True
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

    @classmethod
    def asks(cls) -> bool:
        """Whether the class implements ask and tell (not ``step`` alone, as algorithms written before)."""
        return cls.ask is not Algorithm.ask or cls.step is Algorithm.step

    def initialize(self, population: list, toolbox) -> list:
        """Called once after the first population is evaluated."""
        return population

    def ask(self, population: list, toolbox, history: History) -> list:
        """The offspring of the next generation; those without a valid fitness will be fitted."""
        raise NotImplementedError

    def tell(self, population: list, offspring: list, toolbox, history: History) -> list:
        """The next population, once every offspring has its fitness (``history`` holds their records)."""
        return offspring

    def step(self, population: list, toolbox, evaluate: Evaluate, history: History | None = None) -> tuple[list, list]:
        """One generation made and evaluated: (next population, evaluated offspring)."""
        history = history or History()
        offspring = self.ask(population, toolbox, history)
        evaluate(offspring)
        return self.tell(population, offspring, toolbox, history), offspring

    def state_dict(self) -> dict:
        """What the algorithm keeps between generations (picklable), for the checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Put back what ``state_dict`` returned."""

    def logbook_fields(self) -> dict:
        """Numbers of the last generation for the logbook row (a predictor's errors, for example)."""
        return {}

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

    def ask(self, population, toolbox, history):
        offspring = toolbox.select(population, len(population))
        return deap_algorithms.varAnd(offspring, toolbox, self.cxpb, self.mutpb)


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

    def ask(self, population, toolbox, history):
        return deap_algorithms.varOr(population, toolbox, self.lambda_ or len(population), self.cxpb, self.mutpb)

    def tell(self, population, offspring, toolbox, history):
        return toolbox.select(population + offspring, len(population))


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

    def ask(self, population, toolbox, history):
        return toolbox.population(n=self.lambda_ or len(population))

    def describe(self) -> dict:
        return {"name": self.name, "lambda": self.lambda_}
