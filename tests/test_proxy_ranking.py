"""benchmarks/proxy_ranking.py on a tiny noisy/clean pair: its proxies are the product's (the evaluator a
search builds), its whole-image fit is the product's final fit, a rerun skips the fits already made, and
the report ranks them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasdip_deap.image_io import save_image

from .helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "proxy_ranking.py"


@pytest.fixture(scope="module")
def ranking():
    return load_script(SCRIPT, "proxy_ranking_benchmark")


@pytest.fixture
def data(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "dip-color-denoise-25"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, 70), torch.linspace(0, 1, 70), indexing="ij")
    clean = torch.stack([x, y, (x * 7).sin().abs() * y]).clamp(0, 1)
    save_image(clean, folder / "tiny_GT.png")
    save_image((clean + torch.randn(clean.shape, generator=generator) * 0.1).clamp(0, 1), folder / "tiny_noisy.png")
    monkeypatch.setenv("NASDIP_DATA", str(tmp_path / "data"))
    return tmp_path


def test_proxies_are_the_products_and_a_rerun_skips_what_is_done(ranking, data, capsys):
    task = ranking.load_problem("tiny", 64)
    assert task.output_size == (64, 64) and task.clean is not None  # a centre crop, as --crop makes it
    rows = ranking.evaluators(task, 64, iterations=3, seed=0)
    assert set(rows) == {"none", "downscale x2"}  # every crop row is as large as the image: left out
    assert [p.output_size for p in rows["downscale x2"].problems] == [(32, 32)]
    assert rows["none"].problems == [task]

    out = data / "fits.json"
    argv = ["--image", "tiny", "--size", "64", "--iterations", "3", "--archs", "4", "--out", str(out)]
    assert ranking.main(argv) == 0
    fits = json.loads(out.read_text())["fits"]
    assert sorted({f["job"] for f in fits}) == ["downscale x2", "none", "whole"] and len(fits) == 12
    assert len({f["key"] for f in fits}) == 4
    by = {(f["key"], f["job"]): f for f in fits}
    for key in {f["key"] for f in fits}:
        assert by[(key, "whole")]["heldout_psnr"] is None and 0 < by[(key, "whole")]["true_psnr"] < 60
        assert by[(key, "downscale x2")]["pixels"] * 4 == by[(key, "whole")]["pixels"]
        assert by[(key, "none")]["heldout_psnr"] is not None  # blind: scored on held-out pixels

    capsys.readouterr()
    assert ranking.main(argv) == 0  # everything is there: nothing is fitted again
    assert capsys.readouterr().out == "" and json.loads(out.read_text())["fits"] == fits

    table = ranking.report([str(out)])
    assert "| downscale x2 | tiny 64 px (4 archs) |" in table and "| none | tiny 64 px (4 archs) |" in table
