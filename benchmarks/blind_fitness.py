"""Does blind fitness rank architectures like the true PSNR does? (a script, not a pytest file)

For each task (denoise sigma 25, inpaint with a text mask, super-resolution x4) it trains the same
fixed set of architectures - classical DIP plus random genomes drawn from a fixed seed - on a
centre crop of a standard test image, with the ``blind`` fitness (a random share of the observed
pixels held out of the loss, scored by PSNR on them). The ground truth is used only afterwards, to
print each architecture's true PSNR (the same fit's, as the Evaluator records it) beside its blind
score and the Spearman rank correlation of the two per task.

Crops: 64 px for denoising and inpainting, 96 px for super-resolution x4, whose observation is then
24 x 24 px (at 64 px it would be 16 x 16, and a 10% hold-out of 26 low-resolution pixels ranks
noisily). About 13 min on 2 idle CPU cores with the defaults (500 iterations, 5 levels).

    python benchmarks/blind_fitness.py                       # defaults as above, all three tasks
    python benchmarks/blind_fitness.py --crop 48 --iterations 200 --architectures 12 --workers 2
    NASDIP_DATA=/path/to/images python benchmarks/blind_fitness.py --json results.json

Fits run in ``--workers`` processes of one torch thread each (2 on a 2-core machine).
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from nasdip_deap.compose import SearchConfig, build_search
from nasdip_deap.fitness import Evaluator
from nasdip_deap.genome import GenomeSpec, classical_dip
from nasdip_deap.image_io import center_crop, load_image
from nasdip_deap.registry import TASKS

REPO = Path(__file__).resolve().parents[1]
# task name -> (image file, task options, crop); the inpainting mask is synthesised (text overlay)
SETUPS = {
    "denoise": ("F16_GT.png", {"sigma": 25.0}, 64),
    "inpaint": ("kate.png", {"mask_pattern": "text"}, 64),
    "super-resolution": ("F16_GT.png", {"scale": 4}, 96),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("NASDIP_DATA", str(REPO.parent / "shared" / "data")),
                   help="folder of the test images (default $NASDIP_DATA or ../shared/data)")
    p.add_argument("--tasks", default=",".join(SETUPS), help="comma-separated tasks (default: all three)")
    p.add_argument("--crop", type=int, help="centre crop in pixels for every task (default: 64, and 96 for "
                                             "super-resolution)")
    p.add_argument("--iterations", type=int, default=500, help="Adam steps per fit (default 500)")
    p.add_argument("--architectures", type=int, default=12, help="classical DIP + random genomes (default 12)")
    p.add_argument("--levels", type=int, default=5, help="encoder-decoder levels (default 5, as the CLI)")
    p.add_argument("--holdout", type=float, default=0.1, help="held-out share of observed pixels (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the genomes, degradations and fits (default 0)")
    p.add_argument("--workers", type=int, default=2, help="parallel fits, one torch thread each (default 2)")
    p.add_argument("--json", help="also write all records to this JSON file")
    return p.parse_args(argv)


def architectures(spec: GenomeSpec, count: int, seed: int) -> list[list[int]]:
    """Classical DIP first, then ``count - 1`` random genomes from a fixed seed."""
    rng = random.Random(seed)
    return [spec.encode(classical_dip(spec.levels))] + [spec.random_bits(rng) for _ in range(count - 1)]


def make_task(name: str, data: Path, crop: int | None, seed: int):
    image, options, default_crop = SETUPS[name]
    crop = crop or default_crop
    path = data / image
    if not path.exists():
        sys.exit(f"blind_fitness: {path} not found (set --data or NASDIP_DATA to the test image folder)")
    clean = center_crop(load_image(path), crop)
    return TASKS.get(name).from_clean(clean, dict(options), seed)


def init_worker() -> None:
    torch.set_num_threads(1)


def timed_record(evaluator: Evaluator, bits: list[int]) -> dict:
    """``evaluator.record`` plus the CPU seconds it took (wall time depends on what else runs)."""
    cpu = time.process_time()
    record = evaluator.record(bits)
    record["cpu_seconds"] = time.process_time() - cpu
    return record


def run_task(name: str, args, pool) -> dict:
    spec = GenomeSpec(levels=args.levels)
    task = make_task(name, Path(args.data), args.crop, args.seed)
    config = SearchConfig(fitness="blind", iterations=args.iterations, holdout=args.holdout, seed=args.seed,
                          device="cpu", levels=args.levels, proxy="none", search_fits=0)
    evaluator = build_search(config, task).evaluator
    genomes = architectures(spec, args.architectures, args.seed)
    started = time.perf_counter()
    work = functools.partial(timed_record, evaluator)
    records = list(pool.map(work, genomes, chunksize=1)) if pool else [work(g) for g in genomes]
    seconds = time.perf_counter() - started
    cpu = sum(r["cpu_seconds"] for r in records)
    ok = [r for r in records if r["error"] is None]
    blind = [r["metrics"]["heldout_psnr"] for r in ok]
    true = [r["metrics"]["psnr"] for r in ok]
    rho = float(spearmanr(blind, true).statistic) if len(ok) >= 3 else float("nan")
    print(f"\n## {name} {task.describe()} - {task.output_size[0]} px crop, {args.iterations} iterations, "
          f"holdout {args.holdout}, {len(ok)}/{len(records)} fits ok, {seconds:.0f} s wall, {cpu:.0f} s CPU")
    print(f"{'#':>2} {'blind dB':>9} {'true dB':>8} {'params':>9} {'CPU s':>6}  architecture")
    for i, r in enumerate(records):
        if r["error"] is not None:
            print(f"{i:>2} {'failed':>9} {'':>8} {'':>9} {r['cpu_seconds']:6.1f}  {r['error']}")
            continue
        label = "classical DIP" if i == 0 else spec.decode(r["bits"]).summary()
        print(f"{i:>2} {r['metrics']['heldout_psnr']:9.3f} {r['metrics']['psnr']:8.3f} {r['parameters']:>9,} "
              f"{r['cpu_seconds']:6.1f}  {label}")
    print(f"Spearman rank correlation (blind fitness vs true PSNR), {name}: {rho:.3f}")
    return {"task": name, "describe": task.describe(), "crop": task.output_size[0], "spearman": rho,
            "seconds": seconds, "cpu_seconds": cpu,
            "records": [{k: r.get(k) for k in ("key", "metrics", "parameters", "seconds", "cpu_seconds", "error")}
                        for r in records]}


def main(argv=None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    for n in names:
        if n not in SETUPS:
            sys.exit(f"blind_fitness: unknown task {n!r}; valid: {', '.join(SETUPS)}")
    started = time.perf_counter()
    results = []
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers, initializer=init_worker) as pool:
            results = [run_task(n, args, pool) for n in names]
    else:
        torch.set_num_threads(1)
        results = [run_task(n, args, None) for n in names]
    total = time.perf_counter() - started
    print("\n## summary")
    for r in results:
        print(f"{r['task']:<18} Spearman {r['spearman']:6.3f}   ({r['seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU)")
    cpu = sum(r["cpu_seconds"] for r in results)
    print(f"total {total / 60:.1f} min wall on {args.workers} worker(s); {cpu / 60:.1f} min of CPU, i.e. about "
          f"{cpu / 60 / max(1, args.workers):.1f} min on {max(1, args.workers)} idle cores; torch {torch.__version__}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "minutes": total / 60},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
