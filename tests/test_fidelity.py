"""Multi-fidelity evaluation and early stopping keep the search correct and its compute honest."""
import json

import pytest

from .helpers import searched
from nasdip_deap.fidelity import FIDELITIES, AdaptiveFidelity, SuccessiveHalving, make_fidelity, patience_for
from nasdip_deap.errors import UserError
from nasdip_deap.registry import TASKS
from nasdip_deap.stopping import CurveStopper, PlateauStopper


@pytest.fixture
def task(tiny_image):
    return TASKS.get("denoise").from_clean(tiny_image[:, 8:24, 8:24], {"sigma": 25.0}, seed=0)  # 16 px


def test_halving_budgets_and_parsing():
    assert SuccessiveHalving(eta=3, rungs=3).budgets(90) == [10, 30, 90]
    assert make_fidelity("halving:eta=2,rungs=2").budgets(40) == [20, 40]
    with pytest.raises(UserError):
        make_fidelity("halving:eta=1")
    with pytest.raises(UserError, match="unknown fidelity"):
        make_fidelity("quarter")
    assert make_fidelity("adaptive:curve_margin=0.5").curve_margin == 0.5
    with pytest.raises(UserError, match="curve_warmup"):
        make_fidelity("adaptive:curve_warmup=2")


def test_halving_search_accounts_every_rung(task):
    run = searched(task, levels=3, population=6, generations=1, iterations=18, fitness="blind", seed=1,
                   device="cpu", fidelity="halving:eta=3,rungs=3")
    records = list(run.cache.values())
    rungs = [r["fidelity"]["rung"] for r in records]
    assert max(rungs) == 2 and min(rungs) == 0  # some candidates stopped at the cheap rung
    assert all(r["fidelity"]["budget"] == 18 for r in records)
    spent_fits = sum(r["spent"]["fits"] for r in records)
    spent_iterations = sum(r["spent"]["iterations"] for r in records)
    assert run.totals.fits == spent_fits > len(records)  # promoted candidates were fitted more than once
    assert run.totals.iterations == spent_iterations == sum(row["iterations"] for row in run.logbook)
    for r in records:  # a candidate's spent compute is the sum of the rungs it went through
        assert r["spent"]["iterations"] == sum(x["iterations"] for x in r["rungs"])
        assert r["iterations"] <= 18
    assert all(ind.fitness.valid for ind in run.population)


def test_halving_through_the_cli(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("search", "--crop", "16", "--levels", "3", "--population", "4", "--generations", "1",
               "--iterations", "9",
               "--fidelity", "halving", "--fitness", "blind", "--early-stop", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["fitness"]["settings"]["fidelity"].startswith("halving:eta=3,rungs=3")
    best = json.loads((out / "best.json").read_text())
    logbook = json.loads((out / "logbook.json").read_text())
    assert best["compute"]["iterations"] == sum(row["iterations"] for row in logbook)


def test_plateau_stopper_stops_after_patience():
    stop = PlateauStopper(patience=2, min_delta=0.1, warmup=0)
    assert [stop(s, v) for s, v in [(1, 10.0), (2, 11.0), (3, 11.05), (4, 11.0)]] == [False, False, False, True]


def test_curve_stopper_compares_with_reference():
    stop = CurveStopper(reference=[(10, 20.0), (20, 25.0)], margin=1.0, warmup=10)
    assert not stop(5, 0.0)  # warm-up
    assert not stop(10, 19.5)
    assert stop(20, 23.0)


def test_early_stop_ends_fits_and_records_it(task):
    run = searched(task, levels=3, population=3, generations=0, iterations=60, fitness="blind", seed=2,
                   device="cpu", early_stop=1, seed_classical=False)
    records = list(run.cache.values())
    assert any(r["stopped_early"] and r["iterations"] < 60 for r in records)
    assert all(r["curve"] and r["curve"][-1][0] == r["iterations"] for r in records if not r["error"])


def test_candidates_cut_at_a_cheap_rung_rank_below_full_budget_ones():
    """Cheap-rung scores are not comparable with full-budget ones (an overfitting DIP net scores well
    early), so a cut candidate must never outrank one that reached the full budget."""
    def rec(score):
        return {"fitness": [score], "objectives": {"quality": score}, "error": None}

    history = {0: [rec(30.0)], 1: [rec(18.0), rec(21.0), rec(20.0)], 2: [rec(25.0), rec(26.0)],
               3: [rec(19.0), rec(22.0), rec(23.0)], 4: [rec(29.0)]}
    SuccessiveHalving.rank_below_full(history, rungs=3)
    full = [history[i][-1]["fitness"][0] for i in (1, 3)]
    cut = {i: history[i][-1]["fitness"][0] for i in (0, 2, 4)}
    assert max(cut.values()) < min(full) == 20.0
    assert cut[2] > cut[0] > cut[4]  # later rung first, then the cheap-rung score
    assert history[0][-1]["rung_fitness"] == [30.0] and history[0][-1]["objectives"]["quality"] == cut[0]


def test_halving_best_reached_the_full_budget(task):
    run = searched(task, levels=3, population=6, generations=2, iterations=18, fitness="blind", seed=3,
                   device="cpu", fidelity="halving:eta=3,rungs=3")
    best = run.record_for(run.best())
    assert best["fidelity"]["rung"] == 2 and best["iterations"] == 18
    for ind in run.population:
        record = run.record_for(ind)
        if record["fidelity"]["rung"] < 2:
            assert ind.fitness.values[0] < best["fitness"][0]


@pytest.mark.parametrize("name", FIDELITIES.names())
def test_every_fidelity_keeps_the_search_correct(task, name):
    """Registry-driven: each fidelity scores every candidate, and its compute adds up per candidate and
    per generation."""
    run = searched(task, levels=3, population=4, generations=1, iterations=12, fitness="blind", seed=4,
                   device="cpu", fidelity=name)
    assert all(ind.fitness.valid for ind in run.population)
    records = list(run.cache.values())
    assert run.totals.fits == sum(r["spent"]["fits"] for r in records)
    assert run.totals.iterations == sum(r["spent"]["iterations"] for r in records) == \
        sum(row["iterations"] for row in run.logbook)
    assert all(r["iterations"] <= 12 for r in records)


def test_keep_best_returns_the_peak_of_the_held_out_curve(task):
    """An early-stopped fit is scored by, and returns, its best log point (no ground truth used)."""
    from nasdip_deap.workers import torch_threads
    from nasdip_deap.engine import fit
    from nasdip_deap.fitness import make_holdout
    from nasdip_deap.genome import classical_dip

    arch, holdout = classical_dip(3), make_holdout(task, 0.1, 0)
    with torch_threads(1):  # one thread: the CPU result is then the same for a given seed
        last = fit(arch, task, 30, device="cpu", seed=1, holdout=holdout, log_every=3)
        kept = fit(arch, task, 30, device="cpu", seed=1, holdout=holdout, log_every=3, keep_best=True)
    assert kept.heldout_history == last.heldout_history  # same fit, same seed
    best_step, best_held = max(kept.heldout_history, key=lambda p: p[1])
    assert kept.best_step == best_step and kept.metrics["heldout_psnr"] == best_held
    assert last.best_step is None and last.metrics["heldout_psnr"] == last.heldout_history[-1][1]
    assert kept.metrics["psnr"] == pytest.approx(dict(kept.psnr_history)[best_step], abs=1e-4)


def test_running_best_curve_stopper_ignores_dips_after_a_peak():
    plain = CurveStopper(reference=[(10, 20.0), (20, 18.0)], margin=1.0, warmup=0)
    running = CurveStopper(reference=[(10, 20.0), (20, 18.0)], margin=1.0, warmup=0, running_best=True)
    assert [running(10, 19.5), running(20, 17.0)] == [False, False]  # its best 19.5 vs the reference's 20.0
    assert [plain(10, 19.5), plain(20, 16.5)] == [False, True]
    late = CurveStopper(reference=[(10, 20.0), (20, 22.0)], margin=1.0, warmup=0, running_best=True)
    assert [late(10, 19.5), late(20, 20.5)] == [False, True]


def test_adaptive_fidelity_early_stops_by_default_and_the_final_fit_stops_at_the_peak(tmp_path, cli):
    assert patience_for(make_fidelity("adaptive"), None) == AdaptiveFidelity.default_patience
    assert patience_for(make_fidelity("adaptive"), 7) == 7 and patience_for(make_fidelity("full"), None) is None
    out = tmp_path / "run"
    proc = cli("search", "--crop", "16", "--population", "3", "--generations", "1", "--iterations", "50",
               "--levels", "3", "--fidelity", "adaptive", "--fitness", "blind", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["fitness"]["settings"]["early_stop"] == AdaptiveFidelity.default_patience
    best = json.loads((out / "best.json").read_text())
    records = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    mine = next(r for r in records if r["key"] == best["key"])
    assert mine["best_step"] and best["final"]["iterations"] == mine["best_step"]
    assert best["compute"]["iterations"] == sum(r["iterations"] for r in records if "iterations" in r)



class FakeSearch:
    """What a fidelity sees of a search (an ``EvaluationContext``): the evaluator's settings and
    ``record`` (which logs its reference), ``map``, and the records so far."""

    def __init__(self, iterations=60):
        from types import SimpleNamespace

        self.cache, self.seen = {}, []
        self.evaluator = SimpleNamespace(settings=SimpleNamespace(iterations=iterations), record=self.record)
        self.map = map

    def records(self):
        return list(self.cache.values())

    def record(self, bits, reference_curve=None, curve_margin=1.0, curve_warmup=0.25):
        self.seen.append((bits[0], reference_curve))
        return {"fitness": [20.0 + bits[0]], "error": None, "iterations": 60, "seconds": 0.1,
                "curve": [(30, 19.0 + bits[0]), (60, 20.0 + bits[0])]}

    def run(self, fidelity, bits):
        for i, rec in enumerate(fidelity.evaluate(self, bits)):  # the search caches each record as it comes
            self.cache[f"{len(self.cache)}:{i}"] = rec


@pytest.mark.parametrize("pilot", [0, 1, 2])
def test_adaptive_first_generation_is_judged_by_its_pilot(pilot):
    search = FakeSearch()
    search.run(AdaptiveFidelity(pilot=pilot), [[3], [1], [2], [0]])
    references = [ref for _, ref in search.seen]
    assert references[:pilot] == [None] * pilot
    if pilot == 0:
        assert references == [None] * 4
    else:
        best_pilot = max(range(pilot), key=lambda i: [3, 1][i])
        expected = [(30, 19.0 + [3, 1][best_pilot]), (60, 20.0 + [3, 1][best_pilot])]
        assert references[pilot:] == [expected] * (4 - pilot)
    later = FakeSearch()
    later.cache = dict(search.cache)
    later.run(AdaptiveFidelity(pilot=pilot), [[5], [6]])  # an earlier fit exists: no pilot, all judged by it
    assert all(ref is not None for _, ref in later.seen) and len({str(r) for _, r in later.seen}) == 1
