"""Does bfloat16 + channels-last cost restoration quality? Final fits of classical DIP in fp32 and in
bf16 autocast with the channels-last layout, per (task, image) cell and seed, at the quality table's
per-fit budget; the mean difference per task and overall, and the rule for the CPU default: bf16 is
the default where the CPU runs it natively while no task loses more than 0.2 dB on average and the mean
over every fit does not drop by more than 0.1 dB (a gain passes).

    python benchmarks/precision_quality.py --size 48 --iterations 500 --seeds 2 --out runs/precision.json

On a CPU without native bf16 (no AMX or AVX-512 BF16) oneDNN emulates it: the PSNR figures are valid
(the same arithmetic), the times are not.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from bench_args import positive_int
from bench_problems import TASK_NAMES, classical_for, make_task, parse_cell
from nasdip_deap.engine import EngineOptions, cpu_bf16_accelerated
from nasdip_deap.runner import FitRunner, fit_seed

DEFAULT_CELLS = [f"{task}:{image}" for task in TASK_NAMES for image in ("F16_GT.png", "snail.jpg", "kate.png")]
VARIANTS = {"fp32": EngineOptions(), "bf16 channels-last": EngineOptions(precision="bf16", channels_last=True)}


def run(args) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    for task_name, image in args.cells:
        task = make_task(task_name, image, args.size, args.seed)
        arch = classical_for(task_name)
        for seed in range(args.seeds):
            row = {"task": task_name, "image": Path(image).name, "seed": seed}
            for name, options in VARIANTS.items():
                started = time.perf_counter()
                result = FitRunner("cpu", 1, options).fit(arch, task, args.iterations, seed=fit_seed(seed, arch))
                row[name] = {"psnr": result.metrics["psnr"], "ssim": result.metrics["ssim"],
                             "seconds": time.perf_counter() - started}
            rows.append(row)
            print(f"{task_name:<17} {row['image']:<12} seed {seed}: fp32 {row['fp32']['psnr']:.2f}, bf16 "
                  f"{row['bf16 channels-last']['psnr']:.2f} dB", flush=True)
            if args.out:
                settings = {k: v for k, v in vars(args).items() if k != "cells"}
                Path(args.out).write_text(json.dumps({"settings": settings, "bf16_native": cpu_bf16_accelerated(),
                                                      "rows": rows}, indent=1))
    return rows


def rule_met(mean: float, worst_task_mean: float) -> bool:
    """The rule for bf16 as the CPU default: a loss bounds it, a gain never fails it."""
    return mean >= -0.1 and worst_task_mean >= -0.2


def summary(rows: list[dict]) -> str:
    diff = {t: [r["bf16 channels-last"]["psnr"] - r["fp32"]["psnr"] for r in rows if r["task"] == t]
            for t in dict.fromkeys(r["task"] for r in rows)}
    every = [d for values in diff.values() for d in values]
    lines = ["| task | fits | mean bf16 - fp32 | worst |", "|---|---|---|---|"]
    lines += [f"| {t} | {len(v)} | {statistics.fmean(v):+.3f} dB | {min(v):+.3f} dB |" for t, v in diff.items()]
    mean = statistics.fmean(every)
    worst_task = min(statistics.fmean(v) for v in diff.values())
    verdict = rule_met(mean, worst_task)
    lines.append(f"| all | {len(every)} | {mean:+.3f} dB | {min(every):+.3f} dB |")
    outcome = ("met: bf16 + channels-last can be the default where the CPU runs bf16 natively" if verdict
               else "not met: bf16 stays opt-in")
    lines.append(f"\nRule (the mean drops by no more than 0.1 dB, no task loses more than 0.2 dB on average): "
                 f"{outcome}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", type=parse_cell, metavar="TASK:IMAGE",
                        help="(task, image) cells (default: the three tasks on F16, snail and kate)")
    parser.add_argument("--size", type=positive_int, default=48)
    parser.add_argument("--iterations", type=positive_int, default=500)
    parser.add_argument("--seeds", type=positive_int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradations")
    parser.add_argument("--out", help="JSON file of the fits (rewritten after each)")
    args = parser.parse_args(argv)
    if args.cells is None:
        try:
            args.cells = [parse_cell(c) for c in DEFAULT_CELLS]
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    print(summary(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
