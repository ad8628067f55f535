"""The README is a front door that keeps its promises: its Python example runs as written, its first
screen has the two commands, and it stays short."""
from __future__ import annotations

import re

from .conftest import REPO

README = (REPO / "README.md").read_text()


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def test_the_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_example(), "README.md", "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("enc ") and " dec " in lines[0]  # the architecture found
    psnr, members = lines[1].split(" ", 1)
    assert 5 < float(psnr) < 60 and len(eval(members)) == 2  # the ensemble's PSNR and its two fits'
    assert (tmp_path / "restored.png").exists()
    front = [line.split() for line in lines[2:]]
    assert front and all(len(row) == 2 and 5 < float(row[0]) < 60 and int(row[1]) > 0 for row in front)


def test_the_first_screen_gives_the_two_commands_and_the_readme_is_short():
    first_screen = "\n".join(README.splitlines()[:40])
    assert "pip install torch==2.13.0 && pip install -e . && nasdip search" in first_screen
    assert "python -m pytest tests benchmarks --benchmark-disable" in first_screen
    assert 120 <= len(README.splitlines()) <= 250
    for page in ("genome", "extending", "distributed", "run-folder", "results"):
        assert f"docs/{page}.md" in README and (REPO / "docs" / f"{page}.md").exists()
