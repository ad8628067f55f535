"""Helpers shared by the benchmark files (kept out of conftest.py, which pytest imports specially)."""
from __future__ import annotations

from nasdip_deap import deap_types

POPULATION = 500  # genomes per benchmark round: the population size of Ho et al.


def as_individuals(genomes: list[list[int]], objectives: int = 1) -> list:
    """Fresh DEAP individuals (copies) of the given genomes, fitness not yet valid."""
    cls = deap_types.individual_class(objectives)
    return [cls(bits) for bits in genomes]
