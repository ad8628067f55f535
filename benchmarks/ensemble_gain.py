"""What averaging K final fits gains: classical DIP and a searched architecture, single fit against the
average of K = 2, 4, 8 fits of the same observation (different seeds), per (task, image) cell.

For each cell the searched architecture is the winner of a blind-fitness search with the product's
defaults (and ``--iterations``); then each architecture is fitted ``--members`` times on every observed
pixel, and, for the searched one, ``--members`` more times keeping the search's held-out pixels out of
the loss (what a blind final fit would do), which also gives the ensemble's held-out PSNR. K-fit
figures are means over disjoint groups of members (K = 2: the 4 pairs of 8 fits), so every member is
used once per K.

    python benchmarks/ensemble_gain.py --cells denoise:F16_GT.png inpaint:kate.png super-resolution:snail.jpg \\
        --size 64 --iterations 500 --out runs/ensemble.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import nasdip_deap
from bench_args import positive_int
from bench_problems import classical_for, make_task, parse_cell
from nasdip_deap.fitness import heldout_psnr
from nasdip_deap.restoration import member_seeds


def group_scores(task, outputs: list[torch.Tensor], k: int, holdout=None) -> dict:
    """Mean PSNR/SSIM (and held-out PSNR) of the averages of disjoint groups of ``k`` outputs."""
    groups = [outputs[i:i + k] for i in range(0, len(outputs) - k + 1, k)]
    rows = []
    for group in groups:
        image = torch.stack(group).mean(0)
        row = dict(task.quality(image, task.clean))
        if holdout is not None:
            row["heldout_psnr"] = heldout_psnr(task, image, holdout)
        rows.append(row)
    return {name: statistics.fmean(r[name] for r in rows) for name in rows[0]} | {"groups": len(rows)}


def members(arch, task, runner, iterations: int, seed: int, count: int, holdout=None) -> list[torch.Tensor]:
    return [runner.fit(arch, task, iterations, seed=s, holdout=holdout).restored
            for s in member_seeds(seed, arch, count)]


def run_cell(task_name: str, image: str, args) -> dict:
    torch.set_num_threads(1)
    task = make_task(task_name, image, args.size, args.seed)
    started = time.perf_counter()
    found = nasdip_deap.search(task, fitness="blind", iterations=args.iterations, seed=args.seed, device="cpu",
                               proxy="none")
    search_seconds = time.perf_counter() - started
    runner = found.search.evaluator.runner
    holdout = found.search.evaluator.holdouts[0]
    ks = [k for k in (1, 2, 4, 8) if k <= args.members]
    rows = {}
    for label, arch, held in (("classical", classical_for(task_name), None), ("searched", found.best, None),
                              ("searched, held-out", found.best, holdout)):
        outputs = members(arch, task, runner, args.iterations, args.seed, args.members, held)
        rows[label] = {str(k): group_scores(task, outputs, k, held) for k in ks}
        print(f"{task_name} {Path(image).name} {label}: " + ", ".join(
            f"K={k} {rows[label][str(k)]['psnr']:.2f}" for k in ks), flush=True)
    return {"task": task_name, "image": Path(image).name, "size": list(task.output_size),
            "iterations": args.iterations, "members": args.members, "architecture": found.best.summary(),
            "search": {"fits": found.totals.fits, "iterations": found.totals.iterations,
                       "seconds": round(search_seconds, 1)},
            "rows": rows, "seconds": round(time.perf_counter() - started, 1)}


def markdown(cells: list[dict]) -> str:
    ks = sorted({int(k) for c in cells for row in c["rows"].values() for k in row})
    lines = ["| image | task | architecture | " + " | ".join(f"K={k}" for k in ks) + " | gain K=2 / 4 / 8 |",
             "|---|---|---|" + "---|" * len(ks) + "---|"]
    for c in cells:
        for label, row in c["rows"].items():
            single = row["1"]["psnr"]
            gains = " / ".join(f"{row[str(k)]['psnr'] - single:+.2f}" for k in ks if k > 1)
            held = f" (held-out {row[str(ks[-1])]['heldout_psnr']:.2f})" if "heldout_psnr" in row["1"] else ""
            lines.append(f"| {c['image']} | {c['task']} | {label}{held} | "
                         + " | ".join(f"{row[str(k)]['psnr']:.2f}" for k in ks) + f" | {gains} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", type=parse_cell, required=True, metavar="TASK:IMAGE")
    parser.add_argument("--size", type=positive_int, default=64, help="centre crop, px (default 64)")
    parser.add_argument("--iterations", type=positive_int, default=500, help="per fit (default 500)")
    parser.add_argument("--members", type=positive_int, default=8, help="fits per architecture (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file of the cells (rewritten as each cell finishes)")
    args = parser.parse_args(argv)
    cells = []
    for task_name, image in args.cells:
        cells.append(run_cell(task_name, image, args))
        if args.out:
            Path(args.out).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "cells"},
                                                  "cells": cells}, indent=1))
    print(markdown(cells))
    return cells


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
