"""The predictor-guided algorithm: on a stubbed fitness its model ranks children as they then score and it
fits better-than-average children of its pool, the same ones for the same seed; a real tiny search records
its choices and errors, and reaches the uninterrupted hall of fame after a SIGKILL and --resume; without
scikit-learn it is one line, exit 2."""
from __future__ import annotations

import json
import random
import signal
import sys

import numpy as np
import pytest

from nasdip_deap import GenomeSpec, checkpoint
from nasdip_deap.algorithms import History
from nasdip_deap.cli import main
from nasdip_deap.errors import UserError
from nasdip_deap.operators import bind_operator
from nasdip_deap.registry import ALGORITHMS
from nasdip_deap.tasks import Denoise

from .conftest import run_main
from .helpers import kill_after_checkpoint, tiny_search
from .test_algorithms import onemax_toolbox
from .test_checkpoint import ENV, hall_of_fame

pytest.importorskip("sklearn")

SPEC = GenomeSpec(levels=2)  # onemax_toolbox's


def stub_quality(bits) -> float:
    """A fitness the test controls: skips and wide encoders score, a deterministic function of the architecture."""
    arch = SPEC.decode(bits)
    return 2.0 * len(arch.skips) + sum(e.channels for e in arch.encoders) / 32


def stub_cost(bits) -> float:
    """A second objective (to minimise) that competes with ``stub_quality``: wide encoders cost."""
    return float(sum(e.channels for e in SPEC.decode(bits).encoders))


def drive(seed: int, generations: int = 5, pool: int = 20, name: str = "predictor-guided", **params):
    """An algorithm over the stub fitness, by ask and tell as the search loop does; returns the algorithm
    and the bits of the children it chose, per generation (``algorithm.records``: every record made)."""
    objectives = ("quality", "parameters") if ALGORITHMS.get(name).multi_objective else ("quality",)
    toolbox = onemax_toolbox(len(objectives))
    if len(objectives) == 2:
        bind_operator(toolbox, "select", "nsga2", "selection", SPEC)
    algorithm = ALGORITHMS.get(name)(cxpb=0.5, mutpb=0.5, lambda_=6, pool=pool, explore=0.2, **params)

    def score(ind):
        return (stub_quality(ind), stub_cost(ind))[:len(objectives)]
    records: dict[str, dict] = {}

    def key_of(ind):
        return SPEC.decode(ind).key()

    def evaluate(individuals):
        for ind in individuals:
            if not ind.fitness.valid:
                ind.fitness.values = score(ind)
                records.setdefault(key_of(ind), {"bits": list(ind), "key": key_of(ind), "error": None,
                                                 "architecture": SPEC.decode(ind).to_dict(),
                                                 "fitness": list(ind.fitness.values), "generation": generation,
                                                 "objectives": dict(zip(objectives, ind.fitness.values))})

    def history():
        return History(tuple(records.values()), frozenset(records), key_of, SPEC, objectives, generation)

    random.seed(seed)
    generation = 0
    population = toolbox.population(n=6)
    evaluate(population)
    chosen = []
    for generation in range(1, generations + 1):
        offspring = algorithm.ask(population, toolbox, history())
        chosen.append([list(ind) for ind in offspring])
        evaluate(offspring)
        population = algorithm.tell(population, offspring, toolbox, history())
        algorithm.last_offspring = offspring  # for the test's own look at the last choice
    algorithm.records = list(records.values())
    return algorithm, chosen


def test_the_model_ranks_children_as_they_score_and_the_choice_is_reproducible():
    taus = []
    for seed in range(3, 9):  # one generation's tau over six children is noisy (std ~0.3): pool six runs
        algorithm, chosen = drive(seed=seed, trees=30)
        assert all(g["fitted"] == 6 and g["candidates"] > 6 for g in algorithm.generations)
        taus += [g["tau"] for g in algorithm.generations[1:] if g["tau"] is not None]  # None: six equal scores
    assert len(taus) >= 12 and sum(taus) / len(taus) > 0.3, taus  # a random ranking: 0 +- 0.07
    chosen = drive(seed=3, trees=30)[1]
    assert drive(seed=3, trees=30)[1] == chosen  # the same seed: the same children fitted
    assert drive(seed=4, trees=30)[1] != chosen


def test_it_fits_better_children_than_the_pool_holds():
    """The children it fits score above the mean of the candidates it chose from (the stub knows them all)."""
    algorithm, chosen = drive(seed=5, generations=4, pool=30)
    assert algorithm.generations[-1]["candidates"] >= 30
    fitted = [stub_quality(bits) for generation in chosen[1:] for bits in generation]
    random.seed(5)  # children bred the same way, not chosen: what fitting them blindly would have scored
    toolbox = onemax_toolbox()
    blind = [stub_quality(toolbox.mutate(toolbox.individual())[0]) for _ in range(200)]
    assert sum(fitted) / len(fitted) > sum(blind) / len(blind)


def test_records_of_earlier_runs_train_the_model_too(tmp_path):
    """prior=FILE (an evaluations.jsonl or cache.jsonl of earlier runs): its records train the first model
    beside the run's own; an unreadable file is one line."""
    earlier, _ = drive(seed=9, generations=2)
    path = tmp_path / "evaluations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in earlier.records) + "half a line")
    algorithm, _ = drive(seed=3, generations=2, prior=str(path))
    first = algorithm.last_offspring[0].prediction
    assert first["prior"] == len(earlier.records) and first["trained_on"] == 6 + 6
    assert algorithm.describe()["prior"] == str(path)
    with pytest.raises(UserError, match="predictor prior .*cannot read it"):
        ALGORITHMS.get("predictor-guided")(prior=str(tmp_path / "missing.jsonl"))


def test_with_two_objectives_it_fits_the_children_whose_predictions_dominate():
    """predictor-nsga2 ranks by predicted dominance (quality up, cost down): the first fronts first."""
    algorithm, chosen = drive(seed=6, generations=3, name="predictor-nsga2")
    notes = [child.prediction for child in algorithm.last_offspring]
    assert len(notes) == 6 and sum(n["chosen_by"] == "model" for n in notes) == 5
    assert all(set(n["predicted"]) == {"quality", "parameters"} for n in notes)
    assert drive(seed=6, generations=3, name="predictor-nsga2")[1] == chosen  # reproducible per seed
    candidates = [onemax_toolbox(2).individual() for _ in range(5)]
    predicted = np.array([[10, 5], [9, 1], [8, 8], [10, 1], [1, 9]], dtype=float)
    # (10, 1) dominates every other; then (10, 5) and (9, 1) form the second front
    assert sorted(algorithm._rank(candidates, predicted, 3, None)) == [0, 1, 3]


@pytest.fixture
def tiny_task(tiny_image):
    return Denoise.from_clean(tiny_image[:, 8:24, 8:24], {"sigma": 25.0}, seed=1)


def test_a_real_search_records_its_choices_the_same_for_a_seed(tiny_task):
    settings = {"algorithm": "predictor-guided:pool=10", "population": 4, "generations": 2, "iterations": 8,
                "seed": 2}
    first = tiny_search(tiny_task, **settings).run()
    records = sorted(first.cache.values(), key=lambda r: (r["generation"], r["key"]))
    later = [r for r in records if r["generation"] > 0]
    assert later and all(r["prediction"]["chosen_by"] in ("model", "uncertainty") for r in later)
    assert all(set(r["prediction"]["predicted"]) == {"quality"} for r in later)
    assert {"predictor_tau", "predictor_mae", "predictor_seconds"} <= set(first.logbook[-1])
    again = tiny_search(tiny_task, **settings).run()
    assert [(r["bits"], r["prediction"]) for r in sorted(again.cache.values(), key=lambda r: (r["generation"],
                                                                                              r["key"]))
            if r["generation"] > 0] == [(r["bits"], r["prediction"]) for r in later]


TINY = ["search", "--algorithm", "predictor-guided:pool=10", "--crop", "16", "--levels", "3", "--population", "3",
        "--generations", "2", "--iterations", "8", "--seed", "3", "--quiet"]


def test_sigkill_then_resume_reaches_the_uninterrupted_hall_of_fame(tmp_path):
    reference = tmp_path / "reference"
    assert run_main(*TINY, "--out", str(reference)).returncode == 0
    out = tmp_path / "killed"
    generation, returncode, stderr = kill_after_checkpoint(TINY, out, ENV)
    ckpt = out / checkpoint.CHECKPOINT_NAME
    assert returncode == -signal.SIGKILL and generation == 1, f"the search ended before it was killed: {stderr}"
    assert checkpoint.read_checkpoint(ckpt)["algorithm"]["generations"][0]["generation"] == 1
    resumed = run_main("search", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert hall_of_fame(out) == hall_of_fame(reference)
    assert "<h2>Predictor</h2>" in (out / "report.html").read_text()  # its choices and errors, for a person
    logbook = [{k: v for k, v in row.items() if "seconds" not in k}
               for row in json.loads((out / "logbook.json").read_text())]
    assert logbook == [{k: v for k, v in row.items() if "seconds" not in k}
                       for row in json.loads((reference / "logbook.json").read_text())]


def test_without_scikit_learn_it_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # what an environment without the extra sees
    out = tmp_path / "run"
    assert main(["search", "--algorithm", "predictor-guided", "--crop", "16", "--levels", "3", "--quiet",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nasdip: error: algorithm 'predictor-guided' needs scikit-learn, an optional dependency: "
                   "pip install 'nasdip-deap[predictor]'"]
    assert not out.exists()


def test_the_overhead_benchmark_script_runs(capsys):
    """benchmarks/predictor_overhead.py (docs/results.md), at a small population and a given fit time."""
    import predictor_overhead

    assert predictor_overhead.main(["--population", "12", "--pool", "3", "--generations", "2", "--fits", "0",
                                    "--fit-seconds", "10", "--trees", "10"]) == 0
    out = capsys.readouterr().out
    assert "generation 2: 36 bred" in out and "non-fit / fit:" in out


def test_a_fresh_share_of_the_pool_is_drawn_at_random_not_bred():
    """fresh=SHARE: that share of the candidates are new random genomes (toolbox.population), the rest bred
    from the population; from a population of one all-zero genome, bred children stay near zeros."""
    toolbox = onemax_toolbox()
    zero = type(toolbox.individual())([0] * len(toolbox.individual()))
    zero.fitness.values = (0.0,)
    history = History(key_of=lambda ind: SPEC.decode(ind).key(), spec=SPEC)
    ones, origins = {}, {}
    for fresh in (0.0, 1.0):
        random.seed(1)
        algorithm = ALGORITHMS.get("predictor-guided")(cxpb=0.5, mutpb=0.5, lambda_=6, pool=5, fresh=fresh)
        chosen = algorithm.ask([toolbox.clone(zero) for _ in range(6)], toolbox, history)
        ones[fresh] = sum(sum(c) for c in chosen) / sum(len(c) for c in chosen)
        origins[fresh] = {c.prediction["origin"] for c in chosen}
    assert ones[0.0] < 0.15 < 0.3 < ones[1.0], ones
    assert origins == {0.0: {"bred"}, 1.0: {"fresh"}}
    assert algorithm.describe()["fresh"] == 1.0
    with pytest.raises(UserError, match="fresh"):
        from nasdip_deap.compose import make_algorithm
        make_algorithm("predictor-guided:fresh=2", 0.5, 0.3, None)
