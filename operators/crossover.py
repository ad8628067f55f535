"""Crossover operators over bit-list genomes (in place, ``return ind1, ind2``)."""
from __future__ import annotations

import random

from deap import tools

from nasdip_deap.registry import OPERATORS

OPERATORS.add("one-point", tools.cxOnePoint, kind="crossover",
              summary="DEAP cxOnePoint: swap the tails after one random cut")
OPERATORS.add("two-point", tools.cxTwoPoint, kind="crossover",
              summary="DEAP cxTwoPoint: swap the segment between two random cuts")
OPERATORS.add("uniform", tools.cxUniform, kind="crossover", defaults={"indpb": 0.5},
              summary="DEAP cxUniform: swap each bit with probability indpb")


@OPERATORS.register("gene-aware", kind="crossover")
def cx_gene_aware(ind1, ind2, spec):
    """Two-point crossover whose cuts fall only between genes, so encoder, decoder, skip and
    meta-parameter genes are inherited whole."""
    cuts = spec.gene_boundaries()
    if len(cuts) < 2:
        return tools.cxTwoPoint(ind1, ind2)
    a, b = sorted(random.sample(cuts, 2))
    ind1[a:b], ind2[a:b] = ind2[a:b], ind1[a:b]
    return ind1, ind2
