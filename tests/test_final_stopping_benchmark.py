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
