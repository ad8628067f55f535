"""``nasdip report`` and the report ``nasdip search`` writes at its end."""
from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from nasdip_deap.cli import main
from nasdip_deap.fitness import Evaluator
from nasdip_deap.genome import GenomeSpec, classical_dip

from .conftest import run_main

TINY = ["search", "--crop", "16", "--levels", "3", "--population", "4", "--generations", "2", "--iterations", "8",
        "--seed", "2", "--quiet"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Checker(HTMLParser):
    """Well-formedness: every non-void element closed in order; collects img sources and the text."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            attrs = dict(attrs)
            self.images.append(attrs.get("src"))
            if not attrs.get("alt"):
                self.problems.append("img without alt text")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(run_dir: Path) -> Checker:
    """Parse report.html; assert it is well-formed and every image it references is a PNG in the run folder."""
    page = run_dir / "report.html"
    checker = Checker()
    checker.feed(page.read_text())
    checker.close()
    assert checker.doctype and not checker.problems and not checker.stack, (checker.problems, checker.stack)
    assert checker.images
    for src in checker.images:
        assert not src.startswith(("/", "http:", "https:", "file:")), src  # relative: the folder can move
        path = run_dir / src
        assert path.is_file(), src
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    return checker


@pytest.fixture(scope="module")
def ga_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ga") / "run"
    done = run_main(*TINY, "--baseline-fit", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'report.html'}" in done.stdout
    return out


def test_search_writes_a_well_formed_report_with_existing_images(ga_run):
    checker = check_page(ga_run)
    text = " ".join(checker.text)
    assert set(checker.images) == {"figures/strip.png", "figures/fitness.png"}
    for section in ("Pictures", "Fitness per generation", "Best architecture", "Skip connections",
                    "Meta-parameters", "Hall of fame", "Compute spent", "Settings"):
        assert section in text, section
    best = json.loads((ga_run / "best.json").read_text())
    assert f"{best['final']['psnr']:.2f} dB" in text  # the best's PSNR card
    assert best["baseline"]["source"] in ("final fit", "final fit (it is the best found)")
    assert f"{best['baseline']['psnr']:.2f} dB" in text  # classical DIP beside it
    assert best["summary"] in text
    fits = sum(row["fits"] for row in json.loads((ga_run / "logbook.json").read_text()))
    assert f"{fits} fits" in text
    assert "--population" in text and "--iterations" in text  # the run's settings


def test_strip_has_a_panel_per_picture(ga_run):
    """degraded, classical DIP (--baseline-fit), best found, ground truth: 4 panels side by side."""
    with Image.open(ga_run / "figures" / "strip.png") as img:
        width, height = img.size
    assert width > 3 * height  # four square pictures in a row, with titles and captions


def test_report_command_rewrites_the_report(ga_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(ga_run, run)
    (run / "report.html").unlink()
    shutil.rmtree(run / "figures")
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    check_page(run)


def test_report_of_an_unfinished_run(ga_run, tmp_path):
    """Before best.json exists (a run still going, or killed): generations so far, no final fit."""
    run = tmp_path / "unfinished"
    shutil.copytree(ga_run, run)
    for name in ("best.json", "report.html", "restored.png", "baseline.png"):
        (run / name).unlink(missing_ok=True)  # baseline.png exists only when classical DIP did not win
    shutil.rmtree(run / "figures")
    done = run_main("report", str(run))
    assert done.returncode == 0, done.stderr
    checker = check_page(run)
    assert "has not finished" in " ".join(checker.text)


def test_multi_objective_blind_run_has_a_pareto_front(tmp_path):
    out = tmp_path / "nsga2"
    done = run_main(*TINY, "--algorithm", "nsga2", "--fitness", "blind", "--out", str(out))
    assert done.returncode == 0, done.stderr
    checker = check_page(out)
    assert "figures/pareto.png" in checker.images
    text = " ".join(checker.text)
    assert "Pareto front" in text and "held-out PSNR" in text
    assert "picture not kept" not in text  # the strip's note is drawn in the figure, not the page


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such folder"),
    (lambda d: d.mkdir(), "has no config.json"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("{not json")), "not valid JSON"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"command": "restore"}')), "not the config of"),
], ids=["missing", "empty", "bad-json", "not-a-search"])
def test_report_of_a_bad_folder_is_a_one_line_error(tmp_path, setup, message, capsys):
    folder = tmp_path / "run"
    setup(folder)
    before = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasdip: error:") and err.count("\n") == 1, err
    assert message in err
    assert (sorted(p.name for p in folder.iterdir()) if folder.exists() else None) == before


def stub_winner(monkeypatch, classical_wins: bool) -> str:
    """Real fits, but a quality that the test chooses: classical DIP scores above (or below) every other
    architecture, so which one wins no longer depends on the CPU's floating-point results. Returns
    classical DIP's key (as a 3-level genome encodes it)."""
    spec = GenomeSpec(levels=3)
    classical = spec.decode(spec.encode(classical_dip(3))).key()
    real_score = Evaluator._score

    def score(self, rec, results):
        real_score(self, rec, results)
        others = 20.0 + int(rec["key"][:6], 16) / 16 ** 6  # distinct, fixed per architecture
        quality = (40.0 if classical_wins else 10.0) if rec["key"] == classical else others
        rec["fitness"][0] = rec["objectives"]["quality"] = quality

    monkeypatch.setattr(Evaluator, "_score", score)
    return classical


@pytest.mark.parametrize("classical_wins", [True, False], ids=["classical-wins", "another-wins"])
def test_report_for_either_winner(monkeypatch, tmp_path, classical_wins):
    """With --baseline-fit the report shows classical DIP beside the best whichever wins: its own final fit
    when it is the best (no baseline.png), a fit of its own (baseline.png) when another architecture is."""
    classical = stub_winner(monkeypatch, classical_wins)
    out = tmp_path / "run"
    done = run_main(*TINY, "--baseline-fit", "--out", str(out))
    assert done.returncode == 0, done.stderr
    best = json.loads((out / "best.json").read_text())
    assert (best["key"] == classical) is classical_wins
    assert (out / "baseline.png").exists() is not classical_wins
    assert best["baseline"]["source"] == ("final fit (it is the best found)" if classical_wins else "final fit")
    text = " ".join(check_page(out).text)
    assert f"{best['final']['psnr']:.2f} dB" in text and f"{best['baseline']['psnr']:.2f} dB" in text
    with Image.open(out / "figures" / "strip.png") as img:  # degraded, classical, best, ground truth
        assert img.size[0] > 3 * img.size[1]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out, unfinished)
    for name in ("best.json", "report.html", "restored.png", "baseline.png"):
        (unfinished / name).unlink(missing_ok=True)
    assert run_main("report", str(unfinished)).returncode == 0
    assert "has not finished" in " ".join(check_page(unfinished).text)
