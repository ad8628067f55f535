"""benchmarks/standard.py on two tiny noisy/clean pairs: every column, the equal-compute K against the
search's counted work, and the saved table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasdip_deap.image_io import save_image

from .helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "standard.py"


@pytest.fixture(scope="module")
def standard():
    return load_script(SCRIPT, "standard_benchmark")


@pytest.fixture
def pairs(tmp_path):
    generator = torch.Generator().manual_seed(0)
    for name in ("one", "two"):
        y, x = torch.meshgrid(torch.linspace(0, 1, 20), torch.linspace(0, 1, 24), indexing="ij")
        clean = torch.stack([x, y, x * y]).clamp(0, 1)
        save_image(clean, tmp_path / f"{name}_GT.png")
        save_image((clean + torch.randn(clean.shape, generator=generator) * 0.1).clamp(0, 1),
                   tmp_path / f"{name}_noisy.png")
    return tmp_path


def test_standard_table_on_tiny_pairs(standard, pairs, tmp_path):
    rows = standard.main(["--data", str(pairs), "--images", "one", "two", "--iterations", "5", "--seeds", "2",
                          "--search-seeds", "2", "--search", "population=2", "--search", "generations=1",
                          "--search", "levels=3", "--out", str(tmp_path / "out")])
    assert [r["image"] for r in rows] == ["one", "two"]
    for row in rows:
        assert row["size"] == [20, 24]
        searched, equal, timed, rnd = row["searched"], row["equal_compute"], row["equal_time"], row["random"]
        assert equal["k"] == max(1, round(searched["iterations"] / 5)) and equal["iterations"] == 5 * equal["k"]
        assert searched["iterations"] >= 5 * (searched["fits"] + 1)  # search fits and the final fit
        # the equal-time column's K follows the measured seconds: the searches' wall time over a classical fit's
        assert timed["k"] == max(1, round(searched["seconds"] / row["classical"]["seconds"]))
        # random search: as many fits of the same budget as the search, and the same final fits
        assert rnd["fits"] == searched["fits"] and rnd["seeds"] == searched["seeds"] == 2
        assert rnd["fits_seeds"] == searched["fits_seeds"] and len(searched["fits_seeds"]) == 2
        assert rnd["iterations"] == 5 * (rnd["fits"] + rnd["ensemble"]) and rnd["ensemble"] == searched["ensemble"]
        assert rnd["iterations"] == searched["iterations"]
        assert len(searched["psnr_seeds"]) == 2 and searched["psnr_std"] >= 0
        assert all(0 < row[c]["psnr"] < 60 and 0 < row[c]["ssim"] <= 1
                   for c in ("classical", "equal_compute", "equal_time", "random", "searched"))
        assert row["classical"]["seeds"] == 2 and searched["ensemble"] >= 1
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| one | 24x20 |" in table and "**mean**" in table and "search settings population=2" in table
    assert "Paired over images: searched - equal compute" in table and "searched - random" in table
    assert json.loads((tmp_path / "out" / "table.json").read_text())["rows"] == rows


def test_the_random_column_samples_uniformly_whatever_start_the_search_has(standard, pairs):
    """--search init_spread=P starts the search from mutants of classical DIP; random search stays uniform."""
    from nasdip_deap.compose import SearchConfig

    columns = __import__("columns")
    settings = {**standard.search_settings(standard.parse_args(["--data", str(pairs), "--images", "one",
                                                                       "--search", "init_spread=0.05"])),
                **columns.random_search(7)}
    config = SearchConfig(**settings)
    assert config.init_spread is None and config.algorithm == "random"
    assert (config.population, config.generations) == (7, 0)
    prior = str(pairs / "one_GT.png")  # any existing file: the setting is checked for existence only
    searched = standard.search_settings(standard.parse_args(["--data", str(pairs), "--images", "one",
                                                             "--search", f"init_prior={prior}"]))
    assert SearchConfig(**searched).init_prior == (prior,)
    assert SearchConfig(**{**searched, **columns.random_search(7)}).init_prior is None


def test_published_figures_are_read_from_the_data_readme(standard, shared_data):
    figures = standard.published(shared_data / "README.md")
    assert figures["F16"] == {"dip": 33.69, "cbm3d": 32.67} and len(figures) == 9


def test_bad_input_is_one_line(standard, pairs):
    for argv in (["--data", str(pairs), "--images", "missing"], ["--data", str(pairs), "--search", "population=0"],
                 ["--data", str(pairs), "--search", "nonsense=1"]):
        with pytest.raises(SystemExit) as refused:
            standard.parse_args(argv)
        assert refused.value.code == 2
