"""DEAP creator classes, created once (guarded) at import of this one module.

Never ``isinstance``-check these classes: unpickling a checkpoint rebinds them.
"""
from deap import base, creator

if not hasattr(creator, "NasdipFitnessMax"):
    creator.create("NasdipFitnessMax", base.Fitness, weights=(1.0,))
if not hasattr(creator, "NasdipFitnessQualityCost"):
    creator.create("NasdipFitnessQualityCost", base.Fitness, weights=(1.0, -1.0))
if not hasattr(creator, "NasdipIndividual"):
    creator.create("NasdipIndividual", list, fitness=creator.NasdipFitnessMax, born=0)
if not hasattr(creator, "NasdipIndividualMO"):
    creator.create("NasdipIndividualMO", list, fitness=creator.NasdipFitnessQualityCost, born=0)


def individual_class(n_objectives: int):
    """The creator class for a fitness of ``n_objectives`` values (1: maximise quality; 2: quality vs cost)."""
    if n_objectives == 1:
        return creator.NasdipIndividual
    if n_objectives == 2:
        return creator.NasdipIndividualMO
    raise ValueError(f"no individual class for {n_objectives} objectives")
