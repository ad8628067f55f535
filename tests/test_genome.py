"""Genome spec: decoding, encoding, classical DIP as a point of the space."""
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasdip_deap import Architecture, GenomeSpec, build_network, classical_dip, count_parameters, decode, encode
from nasdip_deap.errors import GenomeError

SPECS = [GenomeSpec(levels=n) for n in range(1, 7)] + [GenomeSpec(levels=5, evolve_iterations=True)]


def bits_for(spec):
    return st.lists(st.integers(0, 1), min_size=spec.length, max_size=spec.length)


def test_classical_dip_has_reference_parameter_count():
    assert count_parameters(build_network(classical_dip(), out_channels=3)) == 2_217_831


def test_classical_dip_round_trips_through_bits():
    arch = classical_dip()
    bits = encode(arch)
    assert decode(bits) == arch
    assert set(bits) <= {0, 1} and len(bits) == GenomeSpec().length


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_decode_encode_round_trip(spec, data):
    bits = data.draw(bits_for(spec))
    arch = spec.decode(bits)
    again = spec.encode(arch)
    assert spec.decode(again) == arch
    # only the channel bits of closed skip gates may differ (they are inert)
    inert = set()
    for i, f in enumerate(spec.fields):
        if f.name.endswith(".channels") and ".skip" in f.name:
            gate = spec.fields.index(next(g for g in spec.fields if g.name == f.name.replace("channels", "gate")))
            if not arch_gate_open(spec, bits, gate):
                inert.update(range(*spec.slices[i]))
    assert [b for k, b in enumerate(bits) if k not in inert] == [b for k, b in enumerate(again) if k not in inert]


def arch_gate_open(spec, bits, gate_index):
    return bool(spec.field_index(bits, gate_index))


@settings(max_examples=40, deadline=None)
@given(bits=bits_for(GenomeSpec()))
def test_json_round_trip_and_stable_key(bits):
    arch = decode(bits)
    text = arch.to_json()
    back = Architecture.from_json(text)
    assert back == arch
    assert back.key() == arch.key()
    assert json.loads(text)["learning_rate"] == arch.learning_rate


def test_key_differs_between_architectures():
    rng = random.Random(3)
    keys = {decode(GenomeSpec().random_bits(rng)).key() for _ in range(50)}
    assert len(keys) == 50


def test_default_layout_follows_ho_et_al():
    spec = GenomeSpec()
    widths = {f.name: f.bits for f in spec.fields}
    assert sum(w for n, w in widths.items() if n.startswith("level0.encoder")) == 7
    assert sum(w for n, w in widths.items() if n.startswith("level0.decoder")) == 7
    assert sum(w for n, w in widths.items() if n.startswith("level0.skip")) == 4 * spec.levels
    assert spec.length == 5 * (7 + 7 + 4 * 5) + 3 + 2 + 2 + 2


def test_gene_boundaries_split_blocks_whole():
    spec = GenomeSpec(levels=2)
    cuts = spec.gene_boundaries()
    assert cuts[0] == 7 and cuts[1] == 14  # encoder gene, decoder gene
    assert all(a < b for a, b in zip(cuts, cuts[1:]))


@pytest.mark.parametrize("bad,message", [([0, 1], "bits"), ([2] * GenomeSpec().length, "0 or 1")])
def test_bad_bits_are_refused(bad, message):
    with pytest.raises(GenomeError, match=message):
        decode(bad)


@pytest.mark.parametrize("levels", [0, 7])
def test_levels_out_of_range(levels):
    with pytest.raises(GenomeError, match="between 1 and 6"):
        GenomeSpec(levels=levels)


def test_value_outside_space_is_refused():
    import dataclasses
    arch = dataclasses.replace(classical_dip(), learning_rate=0.123)
    with pytest.raises(GenomeError, match="learning_rate"):
        encode(arch)


def test_evolved_iterations_fraction():
    spec = GenomeSpec(evolve_iterations=True)
    bits = spec.encode(classical_dip())
    assert spec.decode(bits).iterations_fraction == 1.0
