"""Hooks on the search loop: results files, progress display. (Checkpoints live in checkpoint.py.)

A hook is any object with some of: ``on_start(search)``, ``on_evaluations_start(search, n)``,
``on_evaluation(search, record)``, ``on_generation(search)``, ``on_end(search)``.
"""
from __future__ import annotations

import logging
import sys
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
    """A tqdm bar per generation on a terminal; plain log lines otherwise."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None

    def on_evaluations_start(self, search, n):
        if self.quiet or not self.tty or n == 0:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=n, desc=f"gen {search.generation}", unit="fit", file=self.stream, leave=False)

    def on_evaluation(self, search, record):
        quality = record["fitness"][0]
        if self.bar is not None:
            self.bar.update(1)
            values = [r["fitness"][0] for r in search.cache.values()]
            self.bar.set_postfix(best=f"{max(values):.2f}", mean=f"{sum(values) / len(values):.2f}")
        message = f"gen {search.generation} fit {record['key'][:8]}: fitness {quality:.3f} " \
                  f"in {record['seconds']:.1f}s" + (f" FAILED {record['error']}" if record["error"] else "")
        log.debug(message)

    def on_generation(self, search):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        row = search.logbook[-1]
        extra = f", true PSNR max {row['true_psnr_max']:.2f}" if "true_psnr_max" in row else ""
        log.info("gen %d: %d fits, %d cache hits, quality max %.3f mean %.3f%s, %.1fs",
                 row["gen"], row["fits"], row["cache_hits"], row["quality_max"], row["quality_mean"], extra,
                 row["seconds"])
