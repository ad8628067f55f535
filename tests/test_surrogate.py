"""The surrogate of a recorded problem (benchmarks/surrogate.py) and the search-effectiveness grid
(benchmarks/search_effectiveness.py), on a synthetic table whose fitness is a known function of the
architecture, so the checks do not depend on what a real fit scores on this CPU."""
from __future__ import annotations

import functools
import gzip
import importlib
import json
import math
import random

import pytest

pytest.importorskip("sklearn", reason="the surrogate needs the predictor extra: pip install -e '.[predictor]'")

recorded = importlib.import_module("recorded")
surrogate = importlib.import_module("surrogate")
effectiveness = importlib.import_module("search_effectiveness")

from nasdip_deap.compose import build_search  # noqa: E402

TINY = recorded.Problem("tiny-synthetic", "denoise", "astronaut", 16, 4, {"sigma": 25.0}, holdout=0.25, levels=3)


def synthetic_table(n: int = 240, seed: int = 0) -> list[dict]:
    """Distinct architectures scored by a smooth function of their features (wider, more skips: better),
    with a little noise: a table a model can learn and a search can climb."""
    spec = TINY.evaluator().spec
    rng, entries, seen = random.Random(seed), [], set()
    while len(entries) < n:
        bits = spec.random_bits(rng)
        arch = spec.decode(bits)
        if arch.key() in seen:
            continue
        seen.add(arch.key())
        width = sum(math.log2(e.channels) for e in arch.encoders)
        quality = 15 + 0.4 * width + 0.8 * len(arch.skips) + rng.gauss(0, 0.2)
        entries.append({"key": arch.key(), "bits": bits, "fitness": [quality],
                        "metrics": {"heldout_psnr": quality, "psnr": quality + 5}, "parameters": 1000 + len(entries),
                        "seconds": 1.0, "iterations": 4, "error": None, "source": "random"})
    return entries


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


def test_the_surrogate_ranks_held_out_architectures(table):
    spec = TINY.evaluator().spec
    rows = {model: surrogate.validation(table, spec, model=model, folds=4, repeats=1, seed=1)
            for model in surrogate.Surrogate.MODELS}
    for row in rows.values():
        assert row["test"] == 60 and row["train"] == 180 and row["folds"] == 4
        assert row["kendall"] > 0.5 and row["spearman"] > 0.6 and row["top10"] >= 0.3, row
        assert row["kendall_worst"] <= row["kendall"] and row["kendall_std"] >= 0
    # a second partition of the same entries scores other folds: the seed reaches the split
    again = surrogate.validation(table, spec, folds=4, repeats=1, seed=2)
    assert again["kendall"] != rows["ensemble"]["kendall"]
    with pytest.raises(surrogate.UserError, match="too few entries"):
        surrogate.validation(table[:12], spec, folds=4)


def test_any_algorithm_runs_on_the_surrogate_through_the_normal_loop(table):
    spec = TINY.evaluator().spec
    model = surrogate.Surrogate(spec).fit(table)
    strategy = functools.partial(surrogate.SurrogateEvaluator, table=table, surrogate=model)
    known = {e["key"]: e for e in table}
    for algorithm in ("ga", "mu-plus-lambda", "random", "nsga2"):
        search = build_search(TINY.config(algorithm=algorithm, population=6, generations=3, seed=2),
                              TINY.make_task(), evaluator_class=strategy).run()
        records = list(search.cache.values())
        assert len(records) >= 6 and all(r["error"] is None for r in records)
        for r in records:  # a recorded architecture gets its record; any other the surrogate's prediction
            if r["key"] in known:
                assert r["fitness"][0] == known[r["key"]]["fitness"][0] and not r["surrogate"]
            else:
                assert r["surrogate"] and r["fitness"][0] == pytest.approx(float(model.predict([r["bits"]])[0]))
        assert search.best() is not None


def test_fit_noise_scores_every_architecture_at_the_surrogate_level_plus_a_seeded_draw(table):
    """With noise, a recorded architecture is scored like any other (the surrogate's level plus its fit's own
    draw): a search repeats exactly with its seed, another seed draws other scores, and the true PSNR is
    the surrogate's noiseless level."""
    spec = TINY.evaluator().spec
    model = surrogate.Surrogate(spec).fit(table)

    def run(seed, noise):
        strategy = functools.partial(surrogate.SurrogateEvaluator, table=table, surrogate=model, noise=noise)
        search = build_search(TINY.config(algorithm="random", population=40, generations=0, seed=seed),
                              TINY.make_task(), evaluator_class=strategy).run()
        return {r["key"]: r for r in search.cache.values()}

    first, again, other = run(3, 1.0), run(3, 1.0), run(4, 1.0)
    assert {k: r["fitness"] for k, r in first.items()} == {k: r["fitness"] for k, r in again.items()}
    levels = {k: float(model.predict([r["bits"]])[0]) for k, r in first.items()}
    draws = [r["fitness"][0] - levels[k] for k, r in first.items()]
    assert all(r["surrogate"] for r in first.values())
    assert 0.5 < (sum(d * d for d in draws) / len(draws)) ** 0.5 < 1.6  # a 1 dB draw a fit, 40 fits
    for k, r in first.items():
        assert r["metrics"]["psnr"] == pytest.approx(float(model.predict([r["bits"]], "psnr")[0]))
    shared = set(first) & set(other)  # classical DIP at least: the same architecture, another fit's draw
    assert shared and all(first[k]["fitness"] != other[k]["fitness"] for k in shared)
    with pytest.raises(surrogate.UserError, match="fit noise must be"):
        surrogate.SurrogateEvaluator(None, None, None, table=table, surrogate=model, noise=-1)
    with pytest.raises(surrogate.UserError, match="needs a surrogate"):
        surrogate.SurrogateEvaluator(None, None, None, table=table, surrogate=None, noise=0.5)


def test_a_small_grid_writes_its_table_and_figures(table, tmp_path, monkeypatch):
    monkeypatch.setitem(recorded.PROBLEMS, TINY.name, TINY)
    folder = tmp_path / "recorded"
    folder.mkdir()
    with gzip.open(TINY.path(folder), "wt") as f:
        f.write("".join(json.dumps(e) + "\n" for e in table))
    out = tmp_path / "out"
    cells = ["ga,two-point,flip-bit", "ga,uniform,flip-bit", "random,two-point,flip-bit"]
    assert effectiveness.main(["--problems", TINY.name, "--folder", str(folder), "--seeds", "3", "--cells", *cells,
                               "--population", "4", "--generations", "2", "--out", str(out)]) == 0
    text = (out / "table.md").read_text()
    assert "| ga two-point flip-bit | 3 |" in text and "| random | 3 |" in text and "p vs default" in text
    assert (out / f"{TINY.name}.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())["problems"][0]
    for cell in summary["cells"].values():
        assert all(len(c) == summary["fits"] for c in (cell["median"], cell["q25"], cell["q75"]))
        assert all(a <= b for a, b in zip(cell["median"], cell["median"][1:]))  # best-so-far never drops
        assert cell["seeds"] == 3
    assert summary["targets"]["p90"] <= summary["targets"]["p99"] <= summary["targets"]["best"]
    # the default's own final best: every default seed at or above its median reaches it, within its fits
    default = summary["cells"]["ga two-point flip-bit"]
    reached = [v for v in default["reach"]["default_final"] if math.isfinite(v)]
    assert len(reached) >= 2 and max(reached) <= summary["fits"]
    assert f"true PSNR at {summary['equal_fits']} fits" in text and "fits to the default's final best" in text
    assert all(len(c["psnr_at_equal_fits"]) == 3 for c in summary["cells"].values())
    for name, cell in summary["cells"].items():  # paired by seed against the default's searches
        if name != "ga two-point flip-bit":
            diffs = [a - b for a, b in zip(cell["auc"], default["auc"])]
            assert cell["paired"]["of"] == 3 and cell["paired"]["ahead"] == sum(d > 0 for d in diffs)
    assert "paired by seed: ahead, p" in text
    # the same grid with fit noise: every score drawn afresh, the mode in each table's heading
    noisy = tmp_path / "noisy"
    assert effectiveness.main(["--problems", TINY.name, "--folder", str(folder), "--seeds", "2", "--cells", *cells[:2],
                               "--population", "4", "--generations", "1", "--fit-noise", "0.5",
                               "--out", str(noisy)]) == 0
    assert "(surrogate + 0.5 dB fit noise;" in (noisy / "table.md").read_text()
    # a cell may change search settings: here random search with as many genomes as 7 fits, one generation
    settings = tmp_path / "settings"
    assert effectiveness.main(["--problems", TINY.name, "--folder", str(folder), "--seeds", "2", "--cells",
                               cells[0], "random,two-point,flip-bit,population=7,generations=0",
                               "ga,two-point,flip-bit,init_spread=0.1", "--population", "4", "--generations", "1",
                               "--out", str(settings)]) == 0
    found = json.loads((settings / "summary.json").read_text())["problems"][0]["cells"]
    assert set(found) == {"ga two-point flip-bit", "random population=7 generations=0",
                          "ga two-point flip-bit init_spread=0.1"}
    runs = [json.loads(line) for line in (settings / f"{TINY.name}.runs.jsonl").read_text().splitlines()]
    assert {r["fits"] for r in runs if r["cell"].startswith("random")} == {7}
    assert json.loads((noisy / "summary.json").read_text())["problems"][0]["cells"]["ga two-point flip-bit"]["seeds"] == 2


def test_bad_cells_and_empty_tables_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(recorded.PROBLEMS, TINY.name, TINY)
    for argv, needle in ((["--cells", "ga,nope,flip-bit"], "unknown operator 'nope'"),
                         (["--cells", "ga:foo=1,two-point,flip-bit"], "takes no parameter 'foo'"),
                         (["--import", "no_such_module_of_operators"], "cannot import 'no_such_module_of_operators'"),
                         (["--cells", "ga,two-point,flip-bit,population=0"], "--population must be"),
                         ([], "has 0 entries; build it first")):
        with pytest.raises(SystemExit) as refused:
            effectiveness.main(["--problems", TINY.name, "--folder", str(tmp_path), "--seeds", "1",
                                "--out", str(tmp_path / "out"), *argv])
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    for argv, needle in ((["--fit-noise", "-1"], "must be >= 0, got -1.0"), (["--fit-noise", "nan"], "finite number"),
                         (["--fit-noise", "0.5", "--real"], "--fit-noise models real fits' noise"),
                         (["--cells", "ga,two-point,flip-bit,nonsense=1"], "'nonsense' is not a search setting"),
                         (["--cells", "ga,two-point,flip-bit,seed=3"], "'seed' is not a search setting"),
                         (["--cells", "ga,two-point"], "a cell is ALGORITHM,CROSSOVER,MUTATION")):
        with pytest.raises(SystemExit) as refused:
            effectiveness.main(["--problems", TINY.name, "--folder", str(tmp_path), "--seeds", "1", *argv])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and needle in err.splitlines()[-1] and "Traceback" not in err, err


def test_the_grid_runs_on_real_fits_too(tmp_path, monkeypatch, capsys):
    """--real: the same cells with real DIP fits at the problem's settings (targets from the run's own fits
    when the problem has no records); --size crops the photo larger; an interrupted grid resumes from the
    searches it finished."""
    monkeypatch.setitem(recorded.PROBLEMS, TINY.name, TINY)
    out = tmp_path / "out"
    argv = ["--problems", TINY.name, "--folder", str(tmp_path), "--real", "--seeds", "2", "--size", "24",
            "--cells", "ga,two-point,flip-bit", "random,two-point,flip-bit",
            "--population", "2", "--generations", "1", "--out", str(out)]
    assert effectiveness.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "real fits"
    problem = summary["problems"][0]
    assert problem["problem"] == "tiny-synthetic-24"
    cells = problem["cells"]
    assert set(cells) == {"ga two-point flip-bit", "random"} and all(c["predicted_share"] == 0 for c in cells.values())
    assert all(c["seeds"] == 2 and c["final_psnr"] for c in cells.values())  # real fits record the true PSNR
    # the default reaches its own seed's final best, at or before its last fit
    assert all(1 <= v <= problem["fits"] for v in cells["ga two-point flip-bit"]["reach"]["seed_default_final"])
    assert "fits to the same seed's default final best" in (out / "table.md").read_text()
    log = out / "tiny-synthetic-24.runs.jsonl"
    assert len(log.read_text().splitlines()) == 4  # one line per search
    # a second run with the same settings refits nothing: its searches come from the log
    monkeypatch.setattr(effectiveness, "run_cell", lambda *a: pytest.fail("a finished search was run again"))
    assert effectiveness.main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["problems"][0]["cells"] == cells
    with pytest.raises(SystemExit) as refused:  # the recorded problems hold one size each
        effectiveness.main(["--problems", TINY.name, "--size", "24", "--out", str(out)])
    assert refused.value.code == 2 and "--size needs --real" in capsys.readouterr().err


def test_the_validation_table_prints_a_row_per_model(table, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(recorded.PROBLEMS, TINY.name, TINY)
    with gzip.open(TINY.path(tmp_path), "wt") as f:
        f.write("".join(json.dumps(e) + "\n" for e in table))
    assert surrogate.main(["--problems", TINY.name, "--folder", str(tmp_path), "--folds", "3", "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {TINY.name} |")]
    assert [row.split("|")[3].strip() for row in rows] == list(surrogate.Surrogate.MODELS)
    assert all(" +- " in row.split("|")[4] for row in rows)
    with pytest.raises(SystemExit) as refused:  # one fold has nothing to train on: argparse's one line
        surrogate.main(["--problems", TINY.name, "--folder", str(tmp_path), "--folds", "1"])
    assert refused.value.code == 2 and "must be >= 2" in capsys.readouterr().err
