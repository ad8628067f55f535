"""Selection operators (DEAP's own), registered by name."""
from deap import tools

from nasdip_deap.registry import OPERATORS

OPERATORS.add("tournament", tools.selTournament, kind="selection", defaults={"tournsize": 3},
              summary="DEAP selTournament: best of tournsize random individuals, k times")
OPERATORS.add("roulette", tools.selRoulette, kind="selection",
              summary="DEAP selRoulette: fitness-proportionate (first objective, must be >= 0)")
OPERATORS.add("nsga2", tools.selNSGA2, kind="selection",
              summary="DEAP selNSGA2: non-dominated sorting then crowding distance (multi-objective)")
OPERATORS.add("best", tools.selBest, kind="selection",
              summary="DEAP selBest: the k best (truncation selection)")
