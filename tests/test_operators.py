"""Every registered operator keeps the DEAP contract, and what it makes still decodes to a network
that builds and runs; the genome-aware operators respect the genome's structure."""
from __future__ import annotations

import random

import pytest
import torch
from deap import base, tools

from nasdip_deap import DEFAULT_SPEC, GenomeSpec, build_network, deap_types
from nasdip_deap.errors import UserError
from nasdip_deap.operators import bind_operator, parse_operator
from nasdip_deap.registry import OPERATORS

CROSSOVERS = OPERATORS.names("crossover")
MUTATIONS = OPERATORS.names("mutation")
SELECTIONS = OPERATORS.names("selection")
SPECS = [DEFAULT_SPEC, GenomeSpec(levels=2, evolve_iterations=True)]
TRIALS = 150


def bound(kind: str, text: str, spec: GenomeSpec):
    """The operator as the search calls it: bound into a toolbox with its defaults and the spec."""
    toolbox = base.Toolbox()
    alias = {"crossover": "mate", "mutation": "mutate", "selection": "select"}[kind]
    bind_operator(toolbox, alias, text, kind, spec)
    return getattr(toolbox, alias)


def individuals(spec: GenomeSpec, n: int, rng: random.Random, objectives: int = 1) -> list:
    cls = deap_types.individual_class(objectives)
    return [cls(spec.random_bits(rng)) for _ in range(n)]


def builtin(name: str) -> bool:
    return OPERATORS.get(name).__module__.startswith(("deap.", "nasdip_deap.operators"))


def assert_builds_and_runs(spec: GenomeSpec, bits) -> None:
    """The genome decodes to an architecture whose network builds for a 32 px image and runs forward."""
    arch = spec.decode(bits)
    net = build_network(arch, 3, (32, 32))
    with torch.no_grad():
        out = net(torch.rand(1, arch.input_depth, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.1)
    assert out.shape == (1, 3, 32, 32)
    assert torch.isfinite(out).all() and 0 <= float(out.min()) and float(out.max()) <= 1


def test_every_operator_has_a_kind_and_a_summary():
    assert set(CROSSOVERS) >= {"one-point", "two-point", "uniform", "gene-aware"}
    assert set(MUTATIONS) >= {"flip-bit", "field-aware"}
    assert set(SELECTIONS) >= {"tournament", "roulette", "nsga2"}
    assert sorted(CROSSOVERS + MUTATIONS + SELECTIONS) == OPERATORS.names()
    for entry in OPERATORS.entries():
        assert entry.summary, entry.name


@pytest.mark.parametrize("spec", SPECS, ids=["default", "2-levels-T"])
@pytest.mark.parametrize("name", CROSSOVERS)
def test_crossover_contract(name, spec):
    mate = bound("crossover", name, spec)
    rng = random.Random(1)
    random.seed(1)
    changed = None
    for _ in range(TRIALS):
        a, b = individuals(spec, 2, rng)
        a0, b0 = list(a), list(b)
        result = mate(a, b)
        assert type(result) is tuple and len(result) == 2
        assert result[0] is a and result[1] is b  # in place
        assert len(a) == len(b) == spec.length
        assert set(a) | set(b) <= {0, 1}
        if builtin(name):  # built-ins only exchange bits between the parents, position by position
            assert all(sorted((x, y)) == sorted((x0, y0)) for x, y, x0, y0 in zip(a, b, a0, b0))
        spec.decode(a), spec.decode(b)  # every output decodes
        if changed is None and list(a) != a0:
            changed = list(a)
    assert changed is not None, f"{name} never changed a genome in {TRIALS} matings"
    assert_builds_and_runs(spec, changed)


@pytest.mark.parametrize("spec", SPECS, ids=["default", "2-levels-T"])
@pytest.mark.parametrize("name", MUTATIONS)
def test_mutation_contract(name, spec):
    mutate = bound("mutation", name, spec)
    rng = random.Random(2)
    random.seed(2)
    changed = None
    for _ in range(TRIALS):
        (ind,) = individuals(spec, 1, rng)
        before = list(ind)
        result = mutate(ind)
        assert type(result) is tuple and len(result) == 1 and result[0] is ind
        assert len(ind) == spec.length and set(ind) <= {0, 1}
        spec.decode(ind)
        if changed is None and list(ind) != before:
            changed = list(ind)
    assert changed is not None, f"{name} never changed a genome in {TRIALS} calls"
    assert_builds_and_runs(spec, changed)


@pytest.mark.parametrize("objectives", [1, 2])
@pytest.mark.parametrize("name", SELECTIONS)
def test_selection_contract(name, objectives):
    select = bound("selection", name, DEFAULT_SPEC)
    rng = random.Random(3)
    random.seed(3)
    population = individuals(DEFAULT_SPEC, 12, rng, objectives)
    for ind in population:
        ind.fitness.values = (rng.uniform(15, 30), rng.uniform(1e4, 3e6))[:objectives]
    snapshot = [(list(ind), ind.fitness.values) for ind in population]
    chosen = select(population, 5)
    assert len(chosen) == 5
    assert all(any(ind is member for member in population) for ind in chosen)
    assert [(list(ind), ind.fitness.values) for ind in population] == snapshot  # selection changes nothing


def transitions(bits) -> set[int]:
    return {i for i in range(1, len(bits)) if bits[i] != bits[i - 1]}


@pytest.mark.parametrize("spec", [DEFAULT_SPEC, GenomeSpec(levels=1), GenomeSpec(levels=6, evolve_iterations=True)],
                         ids=["default", "1-level", "6-levels-T"])
def test_gene_aware_crossover_cuts_only_at_gene_boundaries(spec):
    mate = bound("crossover", "gene-aware", spec)
    genes = set(spec.gene_boundaries())
    random.seed(4)
    used, tails = set(), 0
    for _ in range(3000):
        a, b = [0] * spec.length, [1] * spec.length
        mate(a, b)
        cuts = transitions(a)
        assert cuts <= genes, f"cuts {sorted(cuts - genes)} are not gene boundaries"
        assert [1 - x for x in a] == b
        used |= cuts
        tails += a[-1] != a[0]
    assert used == genes  # every gene boundary is reachable
    assert tails > 0  # and so is a split whose first and last genes come from different parents


def test_two_point_crossover_is_not_gene_aware():
    """The check above can fail: DEAP's cxTwoPoint cuts inside genes."""
    genes = set(DEFAULT_SPEC.gene_boundaries())
    random.seed(5)
    cuts = set()
    for _ in range(200):
        a, b = [0] * DEFAULT_SPEC.length, [1] * DEFAULT_SPEC.length
        tools.cxTwoPoint(a, b)
        cuts |= transitions(a)
    assert cuts - genes


def field_indices(spec: GenomeSpec, bits) -> list[int]:
    return [spec.field_index(bits, i) for i in range(len(spec.fields))]


def test_field_aware_mutation_redraws_whole_fields_to_other_values():
    spec = DEFAULT_SPEC
    rng = random.Random(6)
    random.seed(6)
    every = bound("mutation", "field-aware:indpb=1.0", spec)
    some = bound("mutation", "field-aware:indpb=0.3", spec)
    none = bound("mutation", "field-aware:indpb=0.0", spec)
    for _ in range(100):
        (ind,) = individuals(spec, 1, rng)
        before = field_indices(spec, ind)
        every(ind)
        after = field_indices(spec, ind)
        assert all(x != y for x, y in zip(before, after))  # never a no-op redraw
        assert all(0 <= y < len(f.values) for y, f in zip(after, spec.fields))
        (ind,) = individuals(spec, 1, rng)
        before_bits, before = list(ind), field_indices(spec, ind)
        some(ind)
        after = field_indices(spec, ind)
        for (start, stop), x, y in zip(spec.slices, before, after):  # a field is kept or redrawn whole
            if x == y:
                assert ind[start:stop] == before_bits[start:stop]
        assert none(list(before_bits))[0] == before_bits
    # from index 0, a three-bit field reaches each of its 7 other values
    channels = spec.fields.index(next(f for f in spec.fields if f.name == "level0.encoder.channels"))
    seen = set()
    for _ in range(300):
        bits = [0] * spec.length
        every(bits)
        seen.add(spec.field_index(bits, channels))
    assert seen == set(range(1, 8))


def test_flip_bit_does_change_parts_of_fields():
    """What field-aware mutation avoids: flip-bit can change one bit of a multi-bit field."""
    spec = DEFAULT_SPEC
    random.seed(7)
    bits = [0] * spec.length
    tools.mutFlipBit(bits, 0.5)
    partial = [i for i, (start, stop) in enumerate(spec.slices)
               if stop - start > 1 and 0 < sum(bits[start:stop]) < stop - start]
    assert partial


# -- choosing operators by name --------------------------------------------------------------------
def test_parse_operator():
    assert parse_operator("uniform:indpb=0.3") == ("uniform", {"indpb": 0.3})
    assert parse_operator("tournament:tournsize=4") == ("tournament", {"tournsize": 4})
    assert parse_operator("x:a=true,b=False,c=text") == ("x", {"a": True, "b": False, "c": "text"})
    assert parse_operator(" two-point ") == ("two-point", {})
    with pytest.raises(UserError, match="key=value"):
        parse_operator("uniform:indpb")


def test_bind_records_resolved_parameters_and_leaves_random_state_alone():
    toolbox = base.Toolbox()
    state = random.getstate()
    assert bind_operator(toolbox, "mate", "uniform", "crossover", DEFAULT_SPEC) == \
        {"name": "uniform", "params": {"indpb": 0.5}}
    assert bind_operator(toolbox, "mutate", "field-aware:indpb=0.2", "mutation", DEFAULT_SPEC) == \
        {"name": "field-aware", "params": {"indpb": 0.2}}
    assert random.getstate() == state
    assert toolbox.mutate.keywords == {"indpb": 0.2, "spec": DEFAULT_SPEC}


@pytest.mark.parametrize("kind, text, message", [
    ("crossover", "no-such-op", "unknown crossover operator 'no-such-op'; valid crossover operators: "
                                + ", ".join(CROSSOVERS)),
    ("crossover", "flip-bit", "'flip-bit' is a mutation operator, not a crossover one"),
    ("mutation", "gene-aware", "'gene-aware' is a crossover operator, not a mutation one"),
    ("selection", "two-point", "'two-point' is a crossover operator, not a selection one"),
    ("crossover", "uniform:foo=1", "takes no parameter 'foo' (its parameters: indpb)"),
    ("selection", "tournament:k=3", "'k' is given by the algorithm at each call"),
    ("mutation", "field-aware:spec=2", "the genome spec is supplied by the search"),
    ("crossover", "uniform:indpb=abc", "operator 'uniform': indpb must be a number between 0 and 1, got 'abc'"),
    ("crossover", "uniform:indpb=7", "operator 'uniform': indpb must be a number between 0 and 1, got 7"),
    ("mutation", "flip-bit:indpb=2", "operator 'flip-bit': indpb must be a number between 0 and 1, got 2"),
    ("mutation", "flip-bit:indpb=-1", "indpb must be a number between 0 and 1, got -1"),
    ("mutation", "field-aware:indpb=1.5", "indpb must be a number between 0 and 1, got 1.5"),
    ("selection", "tournament:tournsize=0", "operator 'tournament': tournsize must be a whole number >= 1, got 0"),
    ("selection", "tournament:tournsize=2.5", "tournsize must be a whole number >= 1, got 2.5"),
    ("selection", "nsga2:nd=quick", "nd must be one of auto, standard, log, got 'quick'"),
])
def test_bad_operator_choices_are_refused(kind, text, message):
    with pytest.raises(UserError) as err:
        bind_operator(base.Toolbox(), "x", text, kind, DEFAULT_SPEC)
    assert message in str(err.value)


@pytest.fixture
def temporary_operators():
    """Operators registered for one test only."""
    names = []

    def add(name, func, **kwargs):
        OPERATORS.register(name, **kwargs)(func)
        names.append(name)

    yield add
    for name in names:
        OPERATORS.unregister(name)


def _needs_level(individual, spec, level):
    return individual,


def _kindless(individual):
    return individual,


def _breaks_contract(individual):
    return individual  # not a tuple


def _shortens(individual):
    del individual[-1]
    return individual,


def test_binding_checks_plugin_operators(temporary_operators):
    temporary_operators("test-needs-level", _needs_level, kind="mutation")
    temporary_operators("test-kindless", _kindless)
    temporary_operators("test-not-a-tuple", _breaks_contract, kind="mutation")
    temporary_operators("test-shortens", _shortens, kind="mutation")
    toolbox = base.Toolbox()
    with pytest.raises(UserError, match="needs parameter 'level': give it as test-needs-level:level=VALUE"):
        bind_operator(toolbox, "mutate", "test-needs-level", "mutation", DEFAULT_SPEC)
    assert bind_operator(toolbox, "mutate", "test-needs-level:level=2", "mutation", DEFAULT_SPEC)["params"] == \
        {"level": 2}
    with pytest.raises(UserError, match="an operator of no declared kind"):
        bind_operator(toolbox, "mutate", "test-kindless", "mutation", DEFAULT_SPEC)
    with pytest.raises(UserError, match="must return a tuple of 1"):
        bind_operator(toolbox, "mutate", "test-not-a-tuple", "mutation", DEFAULT_SPEC)
    with pytest.raises(UserError, match="changed the genome length"):
        bind_operator(toolbox, "mutate", "test-shortens", "mutation", DEFAULT_SPEC)


def test_operator_names_collide_loudly():
    with pytest.raises(ValueError, match="already registered"):
        OPERATORS.register("two-point", kind="crossover")(_kindless)
    OPERATORS.add("two-point", tools.cxTwoPoint, kind="crossover")  # the same object again is harmless
    assert OPERATORS.get("two-point") is tools.cxTwoPoint
