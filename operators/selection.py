"""Selection operators (DEAP's own), registered by name."""
from __future__ import annotations

from deap import tools

from nasdip_deap.params import Param
from nasdip_deap.registry import OPERATORS

OPERATORS.add("tournament", tools.selTournament, kind="selection", defaults={"tournsize": 3},
              params={"tournsize": Param(int, low=1)},
              summary="DEAP selTournament: best of tournsize random individuals, k times")
OPERATORS.add("roulette", tools.selRoulette, kind="selection",
              summary="DEAP selRoulette: fitness-proportionate (first objective, must be >= 0)")
OPERATORS.add("best", tools.selBest, kind="selection",
              summary="DEAP selBest: the k best (truncation selection)")


@OPERATORS.register("nsga2", kind="selection", defaults={"nd": "auto"},
                    params={"nd": Param(str, choices=("auto", "standard", "log"))},
                    summary="DEAP selNSGA2: non-dominated sorting then crowding distance (multi-objective)")
def sel_nsga2(individuals, k, nd="auto"):
    """DEAP's ``selNSGA2``. ``nd="auto"`` picks DEAP's log-time non-dominated sort for two or more
    objectives (the same fronts as the standard quadratic sort, several times faster at a population
    of 500) and the standard sort for one objective, which the log-time sort does not handle."""
    if nd == "auto":
        nd = "log" if individuals and len(individuals[0].fitness.values) >= 2 else "standard"
    return tools.selNSGA2(individuals, k, nd=nd)


sel_nsga2.multi_objective = True  # ranks on every objective (checked by multi-objective algorithms)
