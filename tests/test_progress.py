"""Live progress: a tqdm bar on a terminal, plain log lines otherwise, --quiet and --verbose."""
from __future__ import annotations

import io
import logging
import re

import pytest

from nasdip_deap.hooks import ProgressHook, _duration

from .conftest import run_main
from .helpers import tiny_search as build_tiny

TINY = ["search", "--crop", "16", "--levels", "2", "--population", "3", "--generations", "1", "--iterations", "5",
        "--holdout", "0.25",  # blind fitness on 16 px: enough held-out pixels for no warning under --quiet
        "--seed", "1"]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, so the hook draws its tqdm bar into it."""

    def isatty(self):
        return True


def tiny_search(hooks: list, generations: int = 1):
    """A real 2-level search on a 32 px image: real DEAP loop, real (5-step) torch fits."""
    from nasdip_deap.registry import TASKS
    import torch

    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    clean = torch.stack([x, y, (x * y)]).clamp(0, 1)
    task = TASKS.get("denoise").from_clean(clean, {"sigma": 25.0}, 0)
    return build_tiny(task, hooks, levels=2, iterations=5, mutpb=1.0, mutation="flip-bit:indpb=0.2",
                      crossover="two-point", population=3, generations=generations, seed=2, hof_size=5).run()


@pytest.fixture
def nasdip_log(caplog):
    """Capture the ``nasdip`` logger (it does not propagate to the root logger under the CLI)."""
    logger = logging.getLogger("nasdip")
    saved = logger.handlers[:], logger.propagate
    logger.handlers[:], logger.propagate = [], True
    caplog.set_level(logging.DEBUG, logger="nasdip")
    yield caplog
    logger.handlers[:], logger.propagate = saved


def test_not_a_terminal_gives_plain_log_lines_and_no_bar(nasdip_log):
    stream = io.StringIO()  # isatty() is False
    search = tiny_search([ProgressHook(stream=stream, generations=1, log_every=0)])
    assert stream.getvalue() == ""  # no bar, no escape codes
    lines = [r.getMessage() for r in nasdip_log.records]
    generation_lines = [m for m in lines if re.match(r"gen \d/1: \d+ fits, \d+ cache hits, quality max", m)]
    assert len(generation_lines) == 2
    assert "fits/s" in generation_lines[0] and "left" in generation_lines[0]  # rate and time left of the run
    # in-generation lines (every fit here, log_every=0): done/total, best, mean, rate, time left
    progress = [m for m in lines if re.match(r"gen 0/1: \d/3 fits, best [\d.]+, mean [\d.]+, [\d.]+ fits/s, ~", m)]
    assert [int(m.split(": ")[1].split("/")[0]) for m in progress] == [1, 2]
    fits = [m for m in lines if " fit " in m and "fitness" in m]  # the per-fit debug lines (--verbose)
    assert len(fits) == sum(row["fits"] for row in search.logbook)


def test_terminal_gets_a_tqdm_bar_with_rate_best_and_mean(nasdip_log):
    stream = Terminal()
    tiny_search([ProgressHook(stream=stream, generations=1)])
    shown = stream.getvalue()
    assert "gen 0/1" in shown and "3/3" in shown  # evaluations done of the generation
    assert re.search(r"(fit/s|s/fit)", shown)  # evaluations per second
    assert re.search(r"<\d\d:\d\d", shown)  # time left
    assert re.search(r"best=\d+\.\d\d", shown) and re.search(r"mean=\d+\.\d\d", shown)
    # the per-fit lines go through tqdm.write, above the bar, not into the log
    assert re.search(r"gen 0/1 fit [0-9a-f]{8}: fitness", shown)


def test_quiet_hook_shows_nothing_on_a_terminal():
    stream = Terminal()
    tiny_search([ProgressHook(stream=stream, quiet=True, generations=1)])
    assert stream.getvalue() == ""


def test_cli_progress_quiet_and_verbose(tmp_path):
    normal = run_main(*TINY, "--out", str(tmp_path / "normal"))
    quiet = run_main(*TINY, "--out", str(tmp_path / "quiet"), "--quiet")
    verbose = run_main(*TINY, "--out", str(tmp_path / "verbose"), "--verbose")
    for done in (normal, quiet, verbose):
        assert done.returncode == 0, done.stderr
        assert re.search(r"^best found.*: PSNR", done.stdout, re.M)  # the final result is always printed
    # stderr is a pipe, not a terminal: log lines, no bar
    assert re.search(r"^gen 0/1: \d fits", normal.stderr, re.M) and "\r" not in normal.stderr
    assert not re.search(r"fit [0-9a-f]{8}: fitness", normal.stderr)
    assert quiet.stderr.strip() == ""
    assert re.search(r"^gen 0/1 fit [0-9a-f]{8}: fitness [\d.]+ in", verbose.stderr, re.M)
    assert re.search(r"^gen 1/1: \d fits", verbose.stderr, re.M)


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (65, "1m05s"), (7440, "2h04m"), (3 * 86400 + 7 * 3600, "3d07h"),
                                           (2.06e20, "over 10 years"), (float("inf"), "?")])
def test_duration_format(seconds, text):
    assert _duration(seconds) == text
