"""Hooks on the search loop: results files, progress display. (Checkpoints live in checkpoint.py.)

A hook is any object with some of: ``on_start(search)``, ``on_evaluations_start(search, n)``,
``on_fit_output(search, key, record, output)`` (a whole-image fit's output tensor, before its record),
``on_evaluation(search, record)``, ``on_generation(search)``, ``on_finalists(search)``, ``on_end(search)``.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from .runfolder import append_jsonl, result_entry, write_json

log = logging.getLogger("nasdip")


class ResultsWriter:
    """Keeps the run folder's JSON results current after every evaluation and generation."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_evaluation(self, search, record):
        entry = {k: v for k, v in record.items() if k != "traceback"}
        append_jsonl(self.run_dir / "evaluations.jsonl", entry)
        if record["error"] is not None:
            append_jsonl(self.run_dir / "errors.jsonl", {"key": record["key"], "bits": record["bits"],
                                                         "generation": record.get("generation"),
                                                         "error": record["error"],
                                                         "traceback": record.get("traceback")})

    def on_generation(self, search):
        write_json(self.run_dir / "logbook.json", list(search.logbook))
        name = "pareto_front.json" if search.algorithm.multi_objective else "hall_of_fame.json"
        write_json(self.run_dir / name, [result_entry(search, ind) for ind in search.archive])


class ProgressHook:
    """Progress of a search. On a terminal: a tqdm bar per generation with fits done, best and mean
    quality, fits per second and time left. Otherwise: plain log lines, one per generation and, in
    long generations, one every ``log_every`` seconds. ``quiet`` shows no bar (logging is then at
    warning level, so no lines either); ``--verbose`` adds a line per fit."""

    def __init__(self, stream=None, quiet: bool = False, generations: int | None = None,
                 log_every: float = 60.0):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.generations = generations
        self.log_every = log_every
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        self.run_started = self.gen_started = self.last_line = time.perf_counter()
        self.first_generation = 0
        self.total = self.done = 0
        self.values: list[float] = []

    def _label(self, search) -> str:
        return f"gen {search.generation}" + (f"/{self.generations}" if self.generations is not None else "")

    def on_start(self, search):
        self.run_started = time.perf_counter()
        self.first_generation = search.generation if search.population is not None else -1

    def on_evaluations_start(self, search, n):
        self.total, self.done, self.values = n, 0, []
        self.gen_started = self.last_line = time.perf_counter()
        if self.quiet or not self.tty or n == 0:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=n, desc=self._label(search), unit="fit", file=self.stream, leave=False,
                        dynamic_ncols=True)

    def _best(self, search) -> float | None:
        archived = [ind.fitness.values[0] for ind in search.archive]
        return max(archived + self.values) if archived or self.values else None

    def on_evaluation(self, search, record):
        quality = record["fitness"][0]
        self.done += 1
        if record["error"] is None:
            self.values.append(quality)
        best = self._best(search)
        mean = sum(self.values) / len(self.values) if self.values else None
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(best=_number(best), mean=_number(mean), refresh=False)
        elif not self.quiet and time.perf_counter() - self.last_line >= self.log_every and self.done < self.total:
            self.last_line = time.perf_counter()
            elapsed = self.last_line - self.gen_started
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d fits, best %s, mean %s, %.2f fits/s, ~%s left in this generation",
                     self._label(search), self.done, self.total, _number(best), _number(mean), rate,
                     _duration(left))
        message = f"{self._label(search)} fit {record['key'][:8]}: fitness {quality:.3f} " \
                  f"in {record['seconds']:.1f}s" + (f" FAILED {record['error']}" if record["error"] else "")
        if self.bar is not None and log.isEnabledFor(logging.DEBUG):
            self.bar.write(message, file=self.stream)  # keeps the bar intact
        else:
            log.debug(message)

    def on_generation(self, search):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        row = search.logbook[-1]
        extra = f", true PSNR max {row['true_psnr_max']:.2f}" if "true_psnr_max" in row else ""
        rate = f", {row['fits'] / row['seconds']:.2f} fits/s" if row["fits"] and row["seconds"] > 0 else ""
        log.info("%s: %d fits, %d cache hits, quality max %.3f mean %.3f%s, %.1fs%s%s",
                 self._label(search), row["fits"], row["cache_hits"], row["quality_max"], row["quality_mean"],
                 extra, row["seconds"], rate, self._run_left(search))

    def _run_left(self, search) -> str:
        """Time left for the whole run, from the mean generation time of this session."""
        done = search.generation - self.first_generation
        if self.generations is None or done <= 0 or search.generation >= self.generations:
            return ""
        per_generation = (time.perf_counter() - self.run_started) / done
        return f"; ~{_duration(per_generation * (self.generations - search.generation))} left"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _duration(seconds: float) -> str:
    """45s, 3m05s, 2h04m, 3d07h, or "over 10 years": short enough for a progress line."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    if seconds >= 10 * 365 * 86400:
        return "over 10 years"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


class FitProgress:
    """Progress of a fixed number of fits outside the search loop (the final fits of a search, an ensemble
    of ``restore`` or ``baseline``): on a terminal a tqdm bar (fits done, rate, time left); otherwise a log
    line after a fit when ``log_every`` seconds have passed since the last, and after the last fit. A single
    fit shows nothing (its own time is the whole wait)."""

    def __init__(self, total: int, label: str = "fits", stream=None, quiet: bool = False, log_every: float = 30.0):
        self.total, self.label, self.quiet, self.log_every = total, label, quiet, log_every
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = self.last_line = time.perf_counter()
        self.bar = None
        if total > 1 and not quiet and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            # mininterval 0: an update is a whole fit (seconds apart), so each one is drawn
            self.bar = tqdm(total=total, desc=label, unit="fit", file=self.stream, leave=False, dynamic_ncols=True,
                            mininterval=0)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if self.done >= self.total:
                self.close()
            return
        now = time.perf_counter()
        if self.quiet or self.total <= 1 or (now - self.last_line < self.log_every and self.done < self.total):
            return
        self.last_line = now
        rate = self.done / (now - self.started) if now > self.started else float("inf")
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        log.info("%s: %d/%d fits, %.3f fits/s, ~%s left", self.label, self.done, self.total, rate, _duration(left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
