"""Every registered algorithm runs a real (tiny) search; ga and mu-plus-lambda keep DEAP's semantics;
nsga2 saves a Pareto front; the toolbox also drives DEAP's own eaSimple; bad names exit with code 2."""
from __future__ import annotations

import json
import math
import random

import pytest
from deap import algorithms as deap_algorithms
from deap import base, tools

from nasdip_deap import Architecture, GenomeSpec, classical_dip, deap_types
from nasdip_deap.cli import main
from nasdip_deap.loop import Search
from nasdip_deap.operators import bind_operator
from nasdip_deap.registry import ALGORITHMS, OPERATORS, TASKS
from nasdip_deap.tasks import Denoise

from .helpers import tiny_search as build_tiny

TINY = ["--crop", "16", "--levels", "3", "--iterations", "10"]


@pytest.fixture
def tiny_task(tiny_image):
    return Denoise.from_clean(tiny_image[:, 8:24, 8:24], {"sigma": 25.0}, seed=1)  # 16 px: 3 levels fit


def tiny_search(task, algorithm_name: str, population: int = 4, generations: int = 2, seed: int = 0,
                crossover: str = "gene-aware", mutation: str = "field-aware:indpb=0.1") -> Search:
    """A real search: real Evaluator (tiny DIP fits on a 16 px denoise task), real DEAP loop."""
    return build_tiny(task, algorithm=algorithm_name, population=population, generations=generations, seed=seed,
                      crossover=crossover, mutation=mutation)


def non_dominated(entries: list[tuple[float, float]]) -> bool:
    """(quality up, cost down) pairs of which none dominates another."""
    def dominates(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and a != b
    return not any(dominates(a, b) for a in entries for b in entries if a is not b)


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_every_algorithm_runs_a_tiny_real_search(name, tiny_task):
    if name.startswith("predictor"):
        pytest.importorskip("sklearn")  # the optional extra "predictor"
    search = tiny_search(tiny_task, name, generations=1).run()
    assert [row["gen"] for row in search.logbook] == [0, 1]
    assert len(search.population) == 4
    assert all(ind.fitness.valid for ind in search.population)
    assert all(0 <= ind.born <= 1 for ind in search.population)
    records = list(search.cache.values())
    assert search.totals.fits == len(records) >= 4
    assert all(r["error"] is None and math.isfinite(r["fitness"][0]) and r["fitness"][0] > 5 for r in records)
    assert len(search.archive) >= 1
    for ind in search.archive:  # every archived individual is a real, fitted architecture
        assert search.record_for(ind)["fitness"] == list(ind.fitness.values)
    if ALGORITHMS.get(name).multi_objective:
        assert all(len(ind.fitness.values) == 2 for ind in search.population)
        assert non_dominated([tuple(ind.fitness.values) for ind in search.archive])


# -- DEAP semantics, on a cheap fitness so many generations run ----------------------------------
def onemax_toolbox(n_objectives: int = 1) -> base.Toolbox:
    spec = GenomeSpec(levels=2)
    toolbox = base.Toolbox()
    cls = deap_types.individual_class(n_objectives)
    toolbox.register("individual", lambda: cls(spec.random_bits(random)))
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", lambda ind: (float(sum(ind)), float(len(ind) - sum(ind[:10])))[:n_objectives])
    bind_operator(toolbox, "mate", "two-point", "crossover", spec)
    bind_operator(toolbox, "mutate", "flip-bit:indpb=0.05", "mutation", spec)
    bind_operator(toolbox, "select", "tournament", "selection", spec)
    return toolbox


def evaluate_invalid(toolbox):
    def evaluate(individuals):
        for ind in individuals:
            if not ind.fitness.valid:
                ind.fitness.values = toolbox.evaluate(ind)
    return evaluate


def run_steps(algorithm, toolbox, seed: int, generations: int) -> list:
    random.seed(seed)
    population = toolbox.population(n=10)
    evaluate_invalid(toolbox)(population)
    population = algorithm.initialize(population, toolbox)
    for _ in range(generations):
        population, _ = algorithm.step(population, toolbox, evaluate_invalid(toolbox))
    return [list(ind) for ind in population]


def test_ga_is_deap_easimple():
    toolbox = onemax_toolbox()
    ours = run_steps(ALGORITHMS.get("ga")(cxpb=0.6, mutpb=0.3), toolbox, seed=11, generations=5)
    random.seed(11)
    population = toolbox.population(n=10)
    population, _ = deap_algorithms.eaSimple(population, toolbox, cxpb=0.6, mutpb=0.3, ngen=5, verbose=False)
    assert ours == [list(ind) for ind in population]


def test_mu_plus_lambda_is_deap_eamupluslambda():
    toolbox = onemax_toolbox()
    ours = run_steps(ALGORITHMS.get("mu-plus-lambda")(cxpb=0.5, mutpb=0.4, lambda_=7), toolbox, seed=12,
                     generations=5)
    random.seed(12)
    population = toolbox.population(n=10)
    population, _ = deap_algorithms.eaMuPlusLambda(population, toolbox, mu=10, lambda_=7, cxpb=0.5, mutpb=0.4,
                                                   ngen=5, verbose=False)
    assert ours == [list(ind) for ind in population]


def test_nsga2_keeps_a_non_dominated_front():
    toolbox = onemax_toolbox(n_objectives=2)
    bind_operator(toolbox, "select", "nsga2", "selection", GenomeSpec(levels=2))
    algorithm = ALGORITHMS.get("nsga2")(cxpb=0.5, mutpb=0.4)
    random.seed(13)
    population = toolbox.population(n=12)
    evaluate = evaluate_invalid(toolbox)
    evaluate(population)
    population = algorithm.initialize(population, toolbox)
    front = algorithm.archive(0, lambda a, b: list(a) == list(b))
    front.update(population)
    for _ in range(6):
        population, offspring = algorithm.step(population, toolbox, evaluate)
        front.update(offspring)
        assert len(population) == 12
    values = [tuple(ind.fitness.values) for ind in front]
    assert len(values) >= 2 and non_dominated(values)
    # the front is the first non-dominated front of everything it has seen since
    assert not any(ind.fitness.dominates(member.fitness) for ind in population for member in front)


def test_algorithm_settings_are_checked():
    from nasdip_deap.errors import UserError

    with pytest.raises(UserError, match="--cxpb \\+ --mutpb <= 1"):
        ALGORITHMS.get("mu-plus-lambda")(cxpb=0.8, mutpb=0.5)
    with pytest.raises(UserError, match="--lambda applies to mu-plus-lambda and nsga2"):
        ALGORITHMS.get("ga")(cxpb=0.5, mutpb=0.2, lambda_=4)


@pytest.mark.parametrize("choice, expected", [
    ("ga:cxpb=0.9", {"cxpb": 0.9, "mutpb": 0.3}),
    ("ga:mutpb=0.05,cxpb=0", {"cxpb": 0.0, "mutpb": 0.05}),
    ("mu-plus-lambda:lambda=7,cxpb=0.6", {"cxpb": 0.6, "lambda": 7}),
    ("random:lambda=5", {"lambda": 5}),
])
def test_algorithm_parameters_reach_the_algorithm(choice, expected, tiny_task):
    """NAME:key=value sets the algorithm's own parameters, over --cxpb/--mutpb/--lambda (which were dropped
    without a word before)."""
    described = build_tiny(tiny_task, algorithm=choice).algorithm.describe()
    assert {key: described[key] for key in expected} == expected


def test_random_search_samples_fresh_genomes_each_generation(tiny_task):
    search = tiny_search(tiny_task, "random", population=4, generations=2, seed=5).run()
    classical = GenomeSpec(levels=3).encode(classical_dip(3))
    born = {}
    for record in search.cache.values():
        born.setdefault(record["generation"], []).append(record["bits"])
    assert sorted(born) == [0, 1, 2]
    assert classical in born[0]  # the first population holds classical DIP, as every algorithm's does
    assert all(len(born[g]) == 4 for g in born)  # each generation a full sample, none kept from before
    assert not any(bits == classical for g in (1, 2) for bits in born[g])
    assert len({tuple(bits) for g in born for bits in born[g]}) == 12  # every fit a new architecture
    assert search.totals.fits == 12
    # the samples depend on the seed alone, not on any fitness: the same on every CPU
    again = tiny_search(tiny_task, "random", population=4, generations=2, seed=5).run()
    assert [r["bits"] for r in again.cache.values()] == [r["bits"] for r in search.cache.values()]


# -- the toolbox is DEAP's -------------------------------------------------------------------------
def test_toolbox_runs_unchanged_with_deap_easimple(tiny_task):
    toolbox = build_tiny(tiny_task, crossover="gene-aware", mutation="field-aware",
                         selection="tournament:tournsize=2").toolbox
    random.seed(0)
    population = toolbox.population(n=4)
    hof = tools.HallOfFame(2)
    population, logbook = deap_algorithms.eaSimple(population, toolbox, cxpb=0.5, mutpb=0.5, ngen=1,
                                                   halloffame=hof, verbose=False)
    assert len(population) == 4 and all(ind.fitness.valid for ind in population)
    assert [row["gen"] for row in logbook] == [0, 1] and logbook[0]["nevals"] == 4
    assert all(5 < ind.fitness.values[0] < 60 for ind in population)  # PSNR in dB
    assert len(hof) == 2 and hof[0].fitness.values[0] >= hof[1].fitness.values[0]


# -- through the command line ---------------------------------------------------------------------
@pytest.mark.slow
def test_cli_nsga2_writes_a_pareto_front(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("search", "--algorithm", "nsga2", "--population", "6", "--generations", "1", *TINY,
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    front = json.loads((out / "pareto_front.json").read_text())
    # the front is the non-dominated set of every evaluation, whatever the values (one entry when a single
    # architecture is both the best and the smallest)
    scored = [(r["objectives"]["quality"], r["objectives"]["parameters"])
              for r in map(json.loads, (out / "evaluations.jsonl").read_text().splitlines()) if r["error"] is None]
    best = [(q, c) for q, c in scored if not any(q2 >= q and c2 <= c and (q2, c2) != (q, c) for q2, c2 in scored)]
    assert len(front) >= 1 and sorted({tuple(e["objectives"].values()) for e in front}) == sorted(set(best))
    spec = GenomeSpec(levels=3)
    for entry in front:
        assert set(entry["objectives"]) == {"quality", "parameters"}
        assert entry["fitness"] == [entry["objectives"]["quality"], entry["objectives"]["parameters"]]
        assert entry["generation_born"] in (0, 1)
        assert Architecture.from_dict(entry["architecture"]) == spec.decode(entry["bits"])
    assert non_dominated([(e["objectives"]["quality"], e["objectives"]["parameters"]) for e in front])
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"]["name"] == "nsga2" and config["operators"]["selection"]["name"] == "nsga2"
    assert [row["gen"] for row in json.loads((out / "logbook.json").read_text())] == [0, 1]


@pytest.mark.slow
def test_cli_mu_plus_lambda_with_genome_aware_operators(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("search", "--algorithm", "mu-plus-lambda", "--lambda", "3", "--crossover", "gene-aware",
               "--mutation", "field-aware:indpb=0.1", "--selection", "tournament:tournsize=2",
               "--population", "4", "--generations", "1", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["operators"] == {"crossover": {"name": "gene-aware", "params": {}},
                                   "mutation": {"name": "field-aware", "params": {"indpb": 0.1}},
                                   "selection": {"name": "tournament", "params": {"tournsize": 2}}}
    logbook = json.loads((out / "logbook.json").read_text())
    assert config["algorithm"]["lambda"] == 3
    assert 1 <= logbook[1]["nevals"] <= 3  # lambda children (reproduced parents keep their fitness)
    hof = json.loads((out / "hall_of_fame.json").read_text())
    assert hof and all({"bits", "architecture", "objectives", "generation_born"} <= set(e) for e in hof)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("args, message", [
    (["--algorithm", "simulated-annealing"],
     "unknown algorithm 'simulated-annealing'; valid names: " + ", ".join(ALGORITHMS.names())),
    (["--crossover", "three-point"],
     "unknown crossover operator 'three-point'; valid crossover operators: " + ", ".join(OPERATORS.names("crossover"))),
    (["--mutation", "gaussian"],
     "unknown mutation operator 'gaussian'; valid mutation operators: " + ", ".join(OPERATORS.names("mutation"))),
    (["--selection", "lexicase"],
     "unknown selection operator 'lexicase'; valid selection operators: " + ", ".join(OPERATORS.names("selection"))),
    (["--crossover", "flip-bit"], "'flip-bit' is a mutation operator, not a crossover one; valid crossover operators"),
    (["--selection", "gene-aware"], "'gene-aware' is a crossover operator, not a selection one"),
    (["--mutation", "flip-bit:rate=0.1"], "operator 'flip-bit' takes no parameter 'rate' (its parameters: indpb)"),
    (["--algorithm", "ga", "--lambda", "3"], "--lambda applies to mu-plus-lambda and nsga2"),
    (["--algorithm", "ga:foo=1"], "algorithm 'ga' takes no parameter 'foo' (its parameters: cxpb, mutpb)"),
    (["--algorithm", "ga:cxpb=0.9,foo=1"], "algorithm 'ga' takes no parameter 'foo'"),
    (["--algorithm", "ga:cxpb=2"], "algorithm 'ga': cxpb must be a number between 0 and 1, got 2"),
    (["--algorithm", "random:cxpb=0.5"], "algorithm 'random' takes no parameter 'cxpb' (its parameters: lambda)"),
    (["--algorithm", "random", "--cxpb", "0.7"], "--cxpb does not apply to algorithm 'random'"),
    (["--algorithm", "mu-plus-lambda:lambda=0"], "algorithm 'mu-plus-lambda': lambda must be a whole number"),
    (["--algorithm", "mu-plus-lambda:cxpb=0.8,mutpb=0.5"], "--cxpb + --mutpb <= 1"),
    (["--algorithm", "nsga2", "--selection", "tournament"],
     "algorithm 'nsga2' optimises several objectives, but selection 'tournament' ranks by the first alone"),
])
def test_bad_names_exit_2_listing_valid_ones(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *args, *TINY, "--quiet", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert line.startswith("nasdip: error: ") and message in line
    assert not out.exists()  # refused before anything was written


@pytest.mark.slow
def test_bad_algorithm_exits_2_from_the_real_command(cli, tmp_path):
    proc = cli("search", "--algorithm", "nope", *TINY, "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == \
        "nasdip: error: unknown algorithm 'nope'; valid names: " + ", ".join(ALGORITHMS.names())


def test_list_shows_every_registered_entry(capsys):
    assert main(["list"]) == 0
    sections: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith(" "):
            sections[line.rstrip(":")] = []
        elif line[2] != " ":  # an entry (its options' lines are indented further)
            sections[list(sections)[-1]].append(line)
    for title, registry in (("tasks", TASKS), ("operators", OPERATORS), ("algorithms", ALGORITHMS)):
        names = [line.split()[0] for line in sections[title]]
        assert names == [entry.name for entry in registry.entries()]
        for entry, line in zip(registry.entries(), sections[title]):
            assert line.rstrip().endswith(entry.summary) and (not entry.kind or f"[{entry.kind}]" in line)


def test_init_spread_starts_near_classical_dip(tiny_task):
    """--init-spread P: the first population is classical DIP and its mutants (about P of the bits
    flipped), reproducibly per seed; without it, random genomes as in the paper."""
    spec = GenomeSpec(levels=3)  # the tiny search's
    classical = spec.encode(classical_dip(3))

    def first_population(spread, seed=0):
        run = tiny_search(tiny_task, "ga", population=8, seed=seed)
        run.init_spread = spread
        random.seed(seed)
        return [list(ind) for ind in run._initial_population()]

    near = first_population(0.05)
    assert near[0] == classical and near == first_population(0.05)
    flipped = [sum(a != b for a, b in zip(ind, classical)) / len(classical) for ind in near[1:]]
    assert 0 < sum(flipped) / len(flipped) < 0.12
    far = first_population(None)
    assert sum(sum(a != b for a, b in zip(ind, classical)) for ind in far[1:]) / (7 * len(classical)) > 0.3


def test_init_spread_through_the_cli(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("search", *TINY, "--population", "3", "--generations", "1", "--init-spread", "0.05",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["init_spread"] == 0.05
    bad = cli("search", *TINY, "--init-spread", "1.5", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
