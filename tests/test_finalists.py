"""Re-fitting the finalists: the choice rests on mean scores, the re-fits are new draws, and every
re-fit is counted and checkpointed."""
import copy
import json

import pytest
import torch

from nasdip_deap import checkpoint
from .conftest import make_tiny_image
from .helpers import searched
from nasdip_deap.errors import UserError
from nasdip_deap.finalists import Finalists
from nasdip_deap.registry import TASKS


@pytest.fixture
def task(tiny_image):
    return TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25.0}, seed=0)


@pytest.fixture(scope="module")
def finished():
    task = TASKS.get("denoise").from_clean(make_tiny_image(), {"sigma": 25.0}, seed=0)
    return searched(task, levels=3, population=4, generations=1, iterations=6, fitness="blind", seed=3,
                    device="cpu", finalists=2, finalist_repeats=2)


@pytest.fixture
def run(finished):
    """The finished search, copied: the tests change its records."""
    return copy.deepcopy(finished)


def test_finalists_are_refitted_and_counted(run):
    assert len(run.replicates) == 2
    finalists = Finalists(2, 2).choose(run.archive)
    for ind in finalists:
        records = run.replicates[run.cache_key(ind)]
        original = run.record_for(ind)
        assert [r["replicate"] for r in records] == [1, 2]
        assert all(r["key"] == original["key"] and r["error"] is None for r in records)
        assert len({original["seed"]} | {r["seed"] for r in records}) == 3  # new seeds
    refits = sum(len(v) for v in run.replicates.values())
    assert run.totals.fits == sum(row["fits"] for row in run.logbook) + refits
    assert run.totals.iterations == sum(row["iterations"] for row in run.logbook) + \
        sum(r["iterations"] for v in run.replicates.values() for r in v)
    table = run.finalist_table()
    assert [row["mean"] for row in table] == sorted((row["mean"] for row in table), reverse=True)
    assert all(len(row["scores"]) == 3 for row in table)
    assert run.record_for(run.best())["key"] == table[0]["key"]


def test_best_is_the_finalist_with_the_best_mean(run):
    first, second = Finalists(2, 2).choose(run.archive)
    assert run.best() is not None
    # make the runner-up's re-fits far better than the leader's: the choice must follow the mean
    for rec in run.replicates[run.cache_key(first)]:
        rec["fitness"] = [-1000.0]  # absolute values: the choice cannot depend on the search fits' scores
    for rec in run.replicates[run.cache_key(second)]:
        rec["fitness"] = [1000.0]
    assert run.mean_quality(second) > run.mean_quality(first)
    assert run.best() is second


def test_blind_refits_hold_out_other_pixels(run):
    evaluator = run.evaluator
    own = evaluator.holdouts[0]
    assert torch.equal(evaluator.holdout_for(0), own)
    other = evaluator.holdout_for(0, replicate=1)
    assert other.shape == own.shape and not torch.equal(other, own)
    assert torch.equal(other, evaluator.holdout_for(0, replicate=1))  # reproducible draw


def test_refits_survive_a_checkpoint_and_are_not_repeated(run, tmp_path):
    state = checkpoint.capture(run, {})
    replicates = run.replicates
    run.replicates = {}
    checkpoint.restore(run, state, rng=False)
    assert run.replicates == replicates
    fits = run.totals.fits
    run.finalists = Finalists(2, 2)
    run.run_finalists()  # everything is there already
    assert run.totals.fits == fits
    run.finalists = Finalists(2, 3)
    run.run_finalists()  # one more re-fit each
    assert run.totals.fits == fits + 2
    assert all(len(v) == 3 for v in run.replicates.values())


def test_bad_finalist_settings_are_refused():
    with pytest.raises(UserError, match="finalists"):
        Finalists(0, 2)
    with pytest.raises(UserError, match="finalists"):
        Finalists(2, 0)


def test_finalists_through_the_cli(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("search", "--crop", "32", "--population", "3", "--generations", "1", "--iterations", "8",
               "--fitness", "blind", "--finalists", "2", "--finalist-repeats", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    best = json.loads((out / "best.json").read_text())
    logbook = json.loads((out / "logbook.json").read_text())
    assert len(best["finalists"]) == 2 and best["finalists"][0]["key"] == best["key"]
    assert best["compute"]["fits"] == sum(row["fits"] for row in logbook) + 2
    report = (out / "report.html").read_text()
    assert "<h2>Finalists</h2>" in report and best["finalists"][0]["summary"].split()[1] in report
    bad = cli("search", "--finalists", "-1", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "error" in bad.stderr and "Traceback" not in bad.stderr
