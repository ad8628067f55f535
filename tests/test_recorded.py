"""The recorded benchmark problems (benchmarks/recorded.py): the builder records real fits of distinct
architectures and resumes where it stopped; the committed records match a refit of their genomes."""
from __future__ import annotations

import gzip
import importlib
import json

import pytest

recorded = importlib.import_module("recorded")
build_recorded = importlib.import_module("build_recorded")

TINY = recorded.Problem("tiny-denoise", "denoise", "astronaut", 16, 4, {"sigma": 25.0}, holdout=0.25, levels=3)


def test_draws_are_distinct_seeded_and_cover_where_searches_go():
    spec = TINY.evaluator().spec
    entries = []
    batch = build_recorded.next_batch(TINY, spec, entries, 30)
    keys = [spec.decode(bits).key() for bits, _ in batch]
    assert len(set(keys)) == 30 and batch[0][1] == "classical"
    assert {source.split(":")[0] for _, source in batch} == {"classical", "random", "classical-mutant"}
    assert build_recorded.next_batch(TINY, spec, [], 30) == batch  # the same draws on every call
    # once 20 are recorded, children of the best are drawn too, and nothing recorded is drawn again
    entries = [{"key": k, "bits": bits, "fitness": [float(i)], "error": None} for i, (k, (bits, _)) in
               enumerate(zip(keys, batch))]
    more = build_recorded.next_batch(TINY, spec, entries, 12)
    assert "top-child" in {source for _, source in more}
    assert not {spec.decode(bits).key() for bits, _ in more} & set(keys)


def test_the_builder_records_real_fits_and_resumes(monkeypatch, tmp_path):
    monkeypatch.setitem(recorded.PROBLEMS, TINY.name, TINY)
    args = ["--problems", TINY.name, "--batch", "2", "--folder", str(tmp_path)]
    build_recorded.main(["--count", "3", *args])
    first = recorded.read_entries(TINY.path(tmp_path))
    assert len(first) == 3 and len({e["key"] for e in first}) == 3
    assert all(e["iterations"] == 4 and e["seconds"] > 0 and e["parameters"] > 0 for e in first)
    assert all("psnr" in e["metrics"] and e["fitness"][0] == e["metrics"]["heldout_psnr"] for e in first)
    with gzip.open(TINY.path(tmp_path), "at") as f:  # an interrupted write: a torn last line
        f.write('{"key": "torn')
    build_recorded.main(["--count", "5", *args])
    again = recorded.read_entries(TINY.path(tmp_path))
    assert [e["key"] for e in again[:3]] == [e["key"] for e in first]  # kept, not fitted again
    assert len(again) == 5 and len({e["key"] for e in again}) == 5


def committed(name: str) -> list[dict]:
    entries = recorded.load(name)
    if not entries:
        pytest.skip(f"no records of {name} in benchmarks/recorded (build them: python benchmarks/build_recorded.py)")
    return entries


@pytest.mark.parametrize("name", sorted(recorded.PROBLEMS))
def test_committed_records_match_a_refit(name):
    """The fastest recorded fit, refitted at the problem's settings with its seed: the same score on the CPU
    (family, model, kernel flags) and torch version that recorded it, and within 0.3 dB elsewhere (kernels
    round differently; a generic model name such as "AMD EPYC" does not make two chips the same)."""
    entries = committed(name)
    assert len({e["key"] for e in entries}) == len(entries)
    assert all(set(e) >= {"bits", "fitness", "metrics", "parameters", "seconds"} for e in entries)
    chosen = min(entries, key=lambda e: e["seconds"])
    record = recorded.PROBLEMS[name].evaluator().record(chosen["bits"])
    assert record["key"] == chosen["key"] and record["seed"] == chosen["seed"]
    assert record["parameters"] == chosen["parameters"]
    if chosen.get("machine") == recorded.machine():
        assert record["fitness"] == chosen["fitness"] and record["metrics"] == chosen["metrics"]
    else:
        assert record["fitness"][0] == pytest.approx(chosen["fitness"][0], abs=0.3)
        assert record["metrics"]["psnr"] == pytest.approx(chosen["metrics"]["psnr"], abs=0.3)
    json.dumps(record["metrics"])


def test_the_noise_ceiling_refits_architectures_spread_over_the_ranking(monkeypatch, tmp_path, capsys):
    """recorded_noise.py: architectures evenly over the recorded ranking, refitted with another run seed
    through the product's evaluator; the table's tau compares the two fits of each."""
    recorded_noise = importlib.import_module("recorded_noise")
    monkeypatch.setitem(recorded.PROBLEMS, TINY.name, TINY)
    build_recorded.main(["--count", "5", "--problems", TINY.name, "--folder", str(tmp_path)])
    entries = recorded.read_entries(TINY.path(tmp_path))
    chosen = recorded_noise.spread(entries, 3)
    ranked = sorted(e["fitness"][0] for e in entries)
    assert [e["fitness"][0] for e in chosen] == [ranked[0], ranked[2], ranked[4]]  # lowest, middle, highest
    out = tmp_path / "noise.json"
    assert recorded_noise.main(["--problems", TINY.name, "--count", "3", "--folder", str(tmp_path),
                                "--out", str(out)]) == 0
    row = json.loads(out.read_text())[TINY.name]
    assert row["n"] == 3 and row["seed"] == 1 and -1 <= row["kendall"] <= 1
    assert [r["key"] for r in row["refits"]] == [e["key"] for e in chosen]
    assert all(r["refit"] != r["recorded"] for r in row["refits"])  # another initialisation and held-out draw
    assert "| problem | surrogate trained on |" in capsys.readouterr().out
    # --refits reads them back: the same tables, no fit
    monkeypatch.setattr(recorded_noise, "start_backend", None)  # a fit now would fail
    assert recorded_noise.main(["--problems", TINY.name, "--refits", str(out), "--folder", str(tmp_path)]) == 0
    assert f"| {TINY.name} | 3 | {row['kendall']:.2f} |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        recorded_noise.main(["--problems", TINY.name, "--seed", "0", "--folder", str(tmp_path)])
    assert refused.value.code == 2
