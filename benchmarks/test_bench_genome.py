"""Genome decode (and the search's cache key) and network build, for 500 genomes of the default spec."""
from __future__ import annotations

import pytest

from nasdip_deap import build_network

BUILD_SIZE = (64, 64)


@pytest.mark.benchmark(group="decode")
def test_decode(benchmark, spec, genomes):
    archs = benchmark(lambda: [spec.decode(bits) for bits in genomes])
    assert len(archs) == len(genomes) and all(a.levels == spec.levels for a in archs)


@pytest.mark.benchmark(group="decode")
def test_decode_and_key(benchmark, spec, genomes):
    """What the search computes per individual to find it in the evaluation cache."""
    keys = benchmark(lambda: [spec.decode(bits).key() for bits in genomes])
    assert len(set(keys)) == len(genomes)


@pytest.mark.benchmark(group="build")
def test_build_networks(benchmark, spec, genomes):
    """Builds take ~20 ms each; as a plain test (``--benchmark-disable``) every 10th genome is enough
    to show the benchmark still works, and keeps CI quick."""
    archs = [spec.decode(bits) for bits in genomes]
    if benchmark.disabled:
        archs = archs[::10]

    def build_all():
        count = 0
        for arch in archs:
            count += build_network(arch, 3, BUILD_SIZE) is not None
        return count

    benchmark.extra_info["networks"] = len(archs)
    assert benchmark.pedantic(build_all, rounds=3, warmup_rounds=0) == len(archs)
