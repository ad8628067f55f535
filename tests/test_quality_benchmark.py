"""The quality benchmark's machinery on a tiny image, in seconds (benchmarks/quality.py)."""
import argparse
import importlib
import json

import pytest



@pytest.fixture(scope="module")
def quality():
    """The script as the module ``quality`` (conftest puts benchmarks/ on the path), so that the cells
    it sends to spawned processes unpickle there by the same name."""
    return importlib.import_module("quality")


def test_quality_table_on_a_tiny_image(quality, tmp_path, write_png, tiny_image):
    image = write_png("tiny.png", tiny_image)
    rows = quality.main(["--images", str(image), "--size", "16", "--levels", "3", "--population", "2",
                         "--generations", "1", "--iterations", "4", "--final-iterations", "4", "--seeds", "2",
                         "--search-seeds", "2", "--device", "cpu", "--out", str(tmp_path / "q")])
    assert [r["task"] for r in rows] == ["denoise", "inpaint", "super-resolution"]
    for row in rows:
        assert len(row["classical"]["runs"]) == 2 and row["classical"]["psnr"] > 0
        for column in ("blind", "random"):  # whole searches, one restoration each
            assert row[column]["seeds"] == len(row[column]["runs"]) == 2 and row[column]["psnr"] > 0
            assert row[column]["psnr_std"] >= 0
        assert row["blind"]["fits"] >= 1 and row["blind"]["iterations"] >= 4
        # random search: as many fits as the same seed's search
        assert row["random"]["fits_seeds"] == row["blind"]["fits_seeds"] and len(row["blind"]["fits_seeds"]) == 2
        candidates = row["blind"]["candidates"]
        assert candidates["count"] >= 2 and candidates["best_psnr"] >= candidates["chosen_psnr"]
        assert candidates["classical_psnr"] is not None  # classical DIP seeds every search
        for mode in ("blind",):  # K: the searches' mean fits, re-fits and final fits over the budget
            equal, timed, searched = row[mode]["equal_compute"], row[mode]["equal_time"], row[mode]
            assert equal["k"] == max(1, round(searched["work"] / 4)) >= 2 and equal["iterations"] == 4 * equal["k"]
            assert timed["k"] >= 1 and timed["iterations"] == 4 * timed["k"]  # K from the measured seconds
            assert equal["psnr"] > 0 and timed["psnr"] > 0
    saved = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert len(saved["rows"]) == 3
    table = (tmp_path / "q" / "quality.md").read_text()
    assert "searched (blind)" in table and "Mean gain" in table and "classical, equal time (K)" in table
    assert "random search" in table and "Paired over cells, blind: searched - equal compute" in table
    assert "over 2 whole searches" in table


def test_the_columns_search_alike_but_for_what_they_vary(quality):
    """blind, random and reference columns: the same search settings but the fitness or the algorithm."""
    args = quality.parse_args(["--also-reference", "--population", "5", "--generations", "2"])
    assert quality.modes(args) == ["blind", "random", "reference"]
    blind, rnd, ref = (quality.search_settings(args, part, 7) for part in quality.modes(args))
    assert rnd == {**blind, "algorithm": "random"} and ref == {**blind, "fitness": "reference"}
    # with the search's fit count: one generation of that many uniform genomes
    assert quality.search_settings(args, "random", 7, fits=13) == {**rnd, "population": 13, "generations": 0,
                                                                   "init_prior": None}
    assert quality.parts(args) == ["classical", "blind", "reference"]
    assert blind["fitness"] == "blind" and blind["seed"] == 7 and blind["population"] == 5
    assert quality.modes(quality.parse_args(["--no-random"])) == ["blind"]


def test_inpaint_uses_the_images_own_mask(quality, shared_data):
    task = quality.make_task("inpaint", str(shared_data / "vase.png"), 64, 0)
    assert task.options == {"mask": "vase_mask.png"}
    assert 0 < float(task.observed_mask.mean()) < 1


def test_cells_run_side_by_side_and_keep_the_table(quality, tmp_path, write_png, tiny_image):
    """--jobs runs cells in spawned processes; every finished cell lands in the saved table."""
    image = write_png("tiny.png", tiny_image)
    out = tmp_path / "q"
    quality.main(["--images", str(image), "--tasks", "denoise", "inpaint", "--size", "16", "--levels", "3",
                  "--population", "2", "--generations", "1", "--iterations", "4", "--seeds", "1", "--search-seeds", "1",
                  "--no-random", "--device", "cpu", "--jobs", "2", "--out", str(out)])
    saved = json.loads((out / "quality.json").read_text())
    assert sorted(r["task"] for r in saved["rows"]) == ["denoise", "inpaint"]
    assert saved["machine"].startswith("CPU")
    for row in saved["rows"]:
        # the searched architecture trains for its evolved share of the shared budget
        assert row["blind"]["fit_iterations"] in (1, 2, 3, 4) and row["blind"]["runs"][0]["psnr"] > 0
        assert "random" not in row
        assert row["classical"]["fit_iterations"] == 4


def test_cells_name_task_and_image(quality, tmp_path, monkeypatch, write_png, tiny_image):
    image = write_png("tiny.png", tiny_image)
    monkeypatch.setenv("NASDIP_DATA", str(image.parent))
    assert quality.parse_cell("inpaint:tiny.png") == ("inpaint", str(image))  # looked up in the data folder
    assert quality.parse_cell(f"denoise:{image}") == ("denoise", str(image))
    for bad, message in (("blur:tiny.png", "expected TASK:IMAGE"), ("denoise:", "expected TASK:IMAGE"),
                         ("denoise:missing.png", "not found")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            quality.parse_cell(bad)
    with pytest.raises(SystemExit) as refused:  # from the command line: argparse's one line and exit 2
        quality.parse_args(["--cells", "blur:tiny.png"])
    assert refused.value.code == 2


def test_finalists_are_refitted_in_the_table(quality, tmp_path, write_png, tiny_image):
    image = write_png("tiny.png", tiny_image)
    common = ["--cells", f"denoise:{image}", "--size", "16", "--levels", "3", "--population", "3", "--generations", "1",
              "--iterations", "4", "--seeds", "1", "--search-seeds", "1", "--no-random", "--device", "cpu"]
    plain = quality.main(common + ["--out", str(tmp_path / "plain")])[0]["blind"]
    refit = quality.main(common + ["--finalists", "2", "--finalist-repeats", "1", "--out", str(tmp_path / "f")])
    refit = refit[0]["blind"]
    assert refit["fits"] == plain["fits"] + 2  # the same search, plus one re-fit of each of 2 finalists
    assert refit["candidates"]["count"] == plain["candidates"]["count"]
    with pytest.raises(SystemExit) as refused:
        quality.parse_args(["--finalists", "-1"])
    assert refused.value.code == 2
