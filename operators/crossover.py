"""Crossover operators over bit-list genomes (in place, ``return ind1, ind2``)."""
from __future__ import annotations

import random

from deap import tools

from nasdip_deap.params import PROBABILITY
from nasdip_deap.registry import OPERATORS

OPERATORS.add("one-point", tools.cxOnePoint, kind="crossover",
              summary="DEAP cxOnePoint: swap the tails after one random cut")
OPERATORS.add("two-point", tools.cxTwoPoint, kind="crossover",
              summary="DEAP cxTwoPoint: swap the segment between two random cuts")
OPERATORS.add("uniform", tools.cxUniform, kind="crossover", defaults={"indpb": 0.5}, params={"indpb": PROBABILITY},
              summary="DEAP cxUniform: swap each bit with probability indpb")


@OPERATORS.register("gene-aware", kind="crossover",
                    summary="two-point crossover cutting only between genes (blocks, skips, meta-parameters)")
def cx_gene_aware(ind1, ind2, spec):
    """Two-point crossover whose cuts fall only between genes, so encoder, decoder, skip and
    meta-parameter genes are inherited whole.

    Like DEAP's ``cxTwoPoint``, the swapped segment may run to the end of the genome, so every split of
    the genes into two arcs is reachable (the first and last gene can come from different parents).
    """
    cuts = spec.gene_cuts  # precomputed interior gene boundaries
    n = len(cuts) + 1  # the end of the genome is a cut point too
    if n < 2:
        return ind1, ind2  # a single gene: nothing can be exchanged whole
    i = random.randrange(n)
    j = random.randrange(n - 1)
    if j >= i:
        j += 1
    else:
        i, j = j, i
    a = cuts[i]
    b = cuts[j] if j < n - 1 else len(ind1)
    ind1[a:b], ind2[a:b] = ind2[a:b], ind1[a:b]
    return ind1, ind2
