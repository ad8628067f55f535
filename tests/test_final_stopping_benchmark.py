"""benchmarks/final_stopping.py on a tiny crop: a cell per architecture, the rule's, the oracle's and the
fixed count's PSNR from one reference fit, the table, and a rerun that skips the cells already made."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_stopping_table_on_a_tiny_crop(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("final_stopping")
    out = tmp_path / "cells.json"
    argv = ["--size", "32", "--cap", "24", "--fixed", "8", "--photos", "coffee", "--tasks", "denoise", "--out", str(out)]
    assert module.main(argv) == 0
    cells = json.loads(out.read_text())["cells"]
    assert {c["architecture"] for c in cells} >= {"classical"} and all(c["task"] == "denoise" for c in cells)
    for c in cells:
        assert c["oracle_psnr"] >= max(c["rule_psnr"], c["fixed_psnr"])  # the oracle is the best log point
        assert 1 <= c["rule_steps"] <= c["calibration_iterations"] <= 24 and c["fixed_steps"] == 8
    text = capsys.readouterr().out
    assert "| coffee | denoise | classical | 32 |" in text and "product - oracle: mean" in text
    assert module.main(argv) == 0 and json.loads(out.read_text())["cells"] == cells  # nothing fitted again
    assert capsys.readouterr().out.startswith("| photo |")  # no cell line: only the table
    sys.modules.pop("final_stopping", None)


def test_the_product_column_follows_the_products_rule(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("final_stopping")
    # a noiseless task at 128 px trains to the cap; denoising to its held-out peak, at least the fixed count
    base = {"photo": "p", "architecture": "classical", "size": 128, "cap": 3000, "oracle_steps": 2990,
            "oracle_psnr": 30.0, "rule_steps": 700, "rule_psnr": 27.0, "fixed_steps": 300, "fixed_psnr": 25.0,
            "cap_psnr": 29.9, "seconds": 1.0}
    assert module.product_steps({**base, "task": "inpaint"}) == ("cap", 3000, 29.9)
    assert module.product_steps({**base, "task": "super-resolution"}) == ("cap", 3000, 29.9)
    assert module.product_steps({**base, "task": "denoise"}) == ("heldout", 700, 27.0)
    assert module.product_steps({**base, "task": "denoise", "rule_steps": 120}) == ("heldout", 300, 25.0)
    assert module.product_steps({**base, "task": "inpaint", "size": 64}) == ("fixed", 300, 25.0)
    # --calibrate needed fits no calibration where the rule needs none (here: the fixed count at 32 px)
    out = tmp_path / "cells.json"
    argv = ["--size", "32", "--cap", "16", "--fixed", "8", "--photos", "coffee", "--tasks", "inpaint",
            "--calibrate", "needed", "--out", str(out)]
    assert module.main(argv) == 0
    cells = json.loads(out.read_text())["cells"]
    assert cells and all(c["rule_steps"] is None and c["calibration_iterations"] == 0 for c in cells)
    assert all(len(c["curve"]) >= 2 and c["curve"][-1][0] == 16 for c in cells)
    text = capsys.readouterr().out
    assert "| coffee | inpaint | classical | 32 |" in text and "| not fitted | — | fixed, 8," in text
    sys.modules.pop("final_stopping", None)
