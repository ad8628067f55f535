"""Mutation operators over bit-list genomes (in place, ``return ind,``)."""
from __future__ import annotations

import random

from deap import tools

from nasdip_deap.registry import OPERATORS

OPERATORS.add("flip-bit", tools.mutFlipBit, kind="mutation", defaults={"indpb": 0.02},
              summary="DEAP mutFlipBit: flip each bit with probability indpb")


@OPERATORS.register("field-aware", kind="mutation", defaults={"indpb": 0.05})
def mut_field_aware(individual, spec, indpb):
    """Redraw each whole field with probability indpb, to another value of its table (never a no-op
    redraw), so a mutation moves between valid values instead of flipping one high bit."""
    for i, f in enumerate(spec.fields):
        if random.random() < indpb:
            current = spec.field_index(individual, i)
            new = random.randrange(len(f.values) - 1)
            spec.set_field_index(individual, i, new + (new >= current))
    return individual,
