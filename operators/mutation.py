"""Mutation operators over bit-list genomes (in place, ``return ind,``)."""
from __future__ import annotations

import random

from deap import tools

from nasdip_deap.params import PROBABILITY
from nasdip_deap.registry import OPERATORS

OPERATORS.add("flip-bit", tools.mutFlipBit, kind="mutation", defaults={"indpb": 0.02}, params={"indpb": PROBABILITY},
              summary="DEAP mutFlipBit: flip each bit with probability indpb")


@OPERATORS.register("field-aware", kind="mutation", defaults={"indpb": 0.05}, params={"indpb": PROBABILITY},
                    summary="redraw each whole field with probability indpb, always to another valid value")
def mut_field_aware(individual, spec, indpb):
    """Redraw each whole field with probability indpb, to another value of its table (never a no-op
    redraw), so a mutation moves between valid values instead of flipping one high bit."""
    draw, bits = random.random, random.getrandbits
    for start, stop in spec.slices:  # a field's table has 2**width values: every bit pattern is valid
        if draw() < indpb:
            width = stop - start
            current = 0
            for k in range(start, stop):  # read and write bit by bit: no temporary lists, no GC pressure
                current = (current << 1) | int(individual[k])
            new = current
            while new == current:  # uniform over the other 2**width - 1 values
                new = bits(width)
            for k in range(start, stop):
                individual[k] = (new >> (stop - 1 - k)) & 1
    return individual,
