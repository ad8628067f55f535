"""Honest defaults: blind fitness unless the oracle is asked for by name, one per-fit budget for every
command (printed at the end of each), and progress for every command that fits more than once."""
from __future__ import annotations

import io
import json
import logging

import pytest

from nasdip_deap.cli import build_parser
from nasdip_deap.compose import RestoreConfig, SearchConfig
from nasdip_deap.hooks import FitProgress

from .conftest import run_main
from .test_report import check_page

SEARCH = ["search", "--crop", "16", "--levels", "3", "--population", "2", "--generations", "0", "--iterations", "6",
          "--ensemble", "2", "--seed", "1"]


def test_search_restore_and_baseline_share_one_default_budget():
    assert SearchConfig().iterations == RestoreConfig().iterations
    parser = build_parser()
    defaults = {command: parser.parse_args([command] + (["--genome", "g.json"] if command == "restore" else []))
                for command in ("search", "restore", "baseline")}
    assert {args.iterations for args in defaults.values()} == {SearchConfig().iterations}
    assert {args.precision for args in defaults.values()} == {"auto"}
    assert defaults["search"].fitness == "blind"


@pytest.fixture
def pictures(tmp_path, write_png, tiny_image):
    return write_png("clean.png", tiny_image), write_png("noisy.png", (tiny_image * 0.8 + 0.1))


@pytest.mark.parametrize("inputs", ["observed+clean", "image"])
def test_a_search_given_ground_truth_still_selects_blind(tmp_path, pictures, inputs):
    clean, noisy = pictures
    given = ["--observed", str(noisy), "--clean", str(clean)] if inputs == "observed+clean" else ["--image", str(clean)]
    out = tmp_path / "run"
    done = run_main(*SEARCH, *given, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "selected with blind fitness" in done.stderr and "oracle" not in done.stderr
    best = json.loads((out / "best.json").read_text())
    assert best["fitness_mode"] == "blind" and best["selected_with"].startswith("blind fitness")
    assert best["psnr"] is not None  # the clean image still scores the result
    assert "Selected with ground truth" not in " ".join(check_page(out).text)


def test_reference_fitness_is_an_oracle_and_says_so(tmp_path, pictures):
    clean, _ = pictures
    out = tmp_path / "run"
    done = run_main(*SEARCH, "--image", str(clean), "--fitness", "reference", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "selected with ground truth (oracle" in done.stderr and "the clean image selects" in done.stderr
    best = json.loads((out / "best.json").read_text())
    assert best["fitness_mode"] == "reference" and best["selected_with"].startswith("ground truth")
    text = " ".join(check_page(out).text)
    assert "Selected with ground truth" in text and "selected with ground truth (oracle" in text


def test_fitness_auto_is_gone(tmp_path):
    done = run_main(*SEARCH, "--fitness", "auto", "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "invalid choice" in done.stderr
    assert not (tmp_path / "run").exists()


def test_every_command_ends_with_its_per_fit_iterations(tmp_path, pictures):
    clean, _ = pictures
    searched = tmp_path / "search"
    done = run_main(*SEARCH, "--image", str(clean), "--out", str(searched))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("(search fits: 6 iterations each; final fits: 6 iterations each)")
    assert "final fits: 2/2 fits" in done.stderr  # the final fits' progress
    for command, extra in (("baseline", []), ("restore", ["--genome", str(searched / "best.json")])):
        out = tmp_path / command
        done = run_main(command, "--image", str(clean), "--crop", "16", "--iterations", "5", "--ensemble", "2",
                        *extra, *(["--levels", "3"] if command == "baseline" else []), "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == f"results in {out} (2 fits of 5 iterations each)"
        assert f"{command} fits: 2/2 fits" in done.stderr
        assert json.loads((out / "summary.json").read_text())["result"]["iterations"] == 5


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_fit_progress_draws_a_bar_on_a_terminal_and_lines_elsewhere():
    terminal = Terminal()
    progress = FitProgress(3, "final fits", stream=terminal)
    for _ in range(3):
        progress.update()
    assert "final fits" in terminal.getvalue() and "3/3" in terminal.getvalue()
    log, handler, logger = io.StringIO(), Lines(), logging.getLogger("nasdip")
    level = logger.level
    logger.addHandler(handler)  # the CLI's loggers do not propagate to pytest's
    logger.setLevel(logging.INFO)
    try:
        plain = FitProgress(3, "baseline fits", stream=log, log_every=0.0)
        for _ in range(3):
            plain.update()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert log.getvalue() == ""  # no bar outside a terminal: log lines, each with the rate and time left
    lines = [m for m in handler.messages if "baseline fits" in m]
    assert [line.split(":")[1].split(",")[0].strip() for line in lines] == ["1/3 fits", "2/3 fits", "3/3 fits"]
    assert all("fits/s" in line and "left" in line for line in lines)
    quiet = Terminal()
    FitProgress(3, "x", stream=quiet, quiet=True).update()
    single = Terminal()
    FitProgress(1, "x", stream=single).update()
    assert quiet.getvalue() == single.getvalue() == ""
