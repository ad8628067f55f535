"""Shared pieces of the benchmark suite: the default genome spec and a fixed population of genomes.

Run with ``pytest benchmarks --benchmark-only`` (timings, grouped), or as plain tests with
``--benchmark-disable`` (each benchmark body runs once, so the suite cannot rot).
"""
from __future__ import annotations

import random

import pytest

from bench_population import POPULATION
from nasdip_deap import DEFAULT_SPEC


@pytest.fixture(scope="session")
def spec():
    return DEFAULT_SPEC


@pytest.fixture(scope="session")
def genomes(spec) -> list[list[int]]:
    """``POPULATION`` random genomes of the default spec, the same in every run."""
    rng = random.Random(2001)
    return [spec.random_bits(rng) for _ in range(POPULATION)]

