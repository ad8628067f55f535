"""benchmarks/outside_photos.py: scikit-image photos as NAME_GT.png / NAME_noisy.png pairs that
standard.py --data reads, one seeded noise draw, bad input refused with argparse's one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import load_script

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def photos():
    return load_script(BENCHMARKS / "outside_photos.py", "outside_photos_benchmark")


def test_pairs_are_the_photo_and_one_seeded_noise_draw(photos, tmp_path):
    assert photos.main(["--names", "coffee", "--sigma", "25", "--seed", "7", "--out", str(tmp_path / "a")]) == 0
    clean = np.asarray(Image.open(tmp_path / "a" / "coffee_GT.png"), dtype=np.float64)
    noisy = np.asarray(Image.open(tmp_path / "a" / "coffee_noisy.png"), dtype=np.float64)
    assert clean.shape == noisy.shape and clean.shape[2] == 3
    inside = (clean > 80) & (clean < 175)  # far from 0 and 255, where clipping does not shrink the noise
    assert 24.0 < float(np.std((noisy - clean)[inside])) < 26.0
    photos.main(["--names", "coffee", "--seed", "7", "--out", str(tmp_path / "b")])
    photos.main(["--names", "coffee", "--seed", "8", "--out", str(tmp_path / "c")])
    same = np.asarray(Image.open(tmp_path / "b" / "coffee_noisy.png"))
    other = np.asarray(Image.open(tmp_path / "c" / "coffee_noisy.png"))
    assert np.array_equal(same, noisy.astype(np.uint8)) and not np.array_equal(other, same)
    standard = load_script(BENCHMARKS / "standard.py", "standard_for_photos")
    assert standard.image_paths("coffee", tmp_path / "a") == (tmp_path / "a" / "coffee_GT.png",
                                                              tmp_path / "a" / "coffee_noisy.png")


@pytest.mark.parametrize("argv", [["--names", "nonsense"], ["--sigma", "0"], ["--sigma", "x"]])
def test_bad_input_is_one_line(photos, argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        photos.main([*argv, "--out", str(tmp_path)])
    assert refused.value.code == 2 and "error:" in capsys.readouterr().err.strip().splitlines()[-1]
