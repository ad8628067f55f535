"""Variation and selection operators, registered by name in ``nasdip_deap.registry.OPERATORS``.

Each is a DEAP-style function: crossover and mutation change their genomes in place and return a
tuple; selection returns a list. The plain ones are DEAP's own; the genome-aware ones know the
field layout of a ``GenomeSpec``. Third-party operators arrive through the entry-point group
``nasdip_deap.operators``.
"""
from . import crossover, mutation, selection
from .binding import bind_operator, parse_operator

__all__ = ["crossover", "mutation", "selection", "bind_operator", "parse_operator"]
