"""What the predictor-guided algorithm costs besides fits, at the paper's population of 500.

A search is built through ``compose.build_search`` (as the CLI builds one) with population 500 on a 64 px
denoising crop, and its ``predictor-guided`` algorithm is driven by ask and tell for ``--generations``
generations over stand-in records: every asked child gets a record with a score drawn at random, so
the model trains on as many rows as a real run of that length has (500 per generation) without the
fits. Per generation it times the whole non-fit part (breeding ``pool`` x 500 children, their cache
keys, features, the model's fit and predictions, survivor selection) and the model alone, and compares
them with the fit seconds of one generation: 500 times the median of ``--fits`` real 64 px fits of
classical DIP at the default iteration count (or ``--fit-seconds`` from a real run on this machine).

    python benchmarks/predictor_overhead.py --pool 20 --generations 4 --fits 1
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_args import positive_int  # noqa: E402

from nasdip_deap.compose import SearchConfig, build_search  # noqa: E402
from nasdip_deap.genome import classical_dip  # noqa: E402
from nasdip_deap.tasks import Denoise  # noqa: E402


def task_64(seed: int = 0):
    """A 64 px denoising problem: the F16 crop when the shared images are there, a smooth synthetic image otherwise."""
    path = ROOT.parent / "shared" / "data" / "F16_GT.png"
    if path.exists():
        from nasdip_deap.image_io import center_crop, load_image

        clean = center_crop(load_image(path), 64)
    else:
        y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
        clean = torch.stack([x, y, (x * y) ** 0.5])
    return Denoise.from_clean(clean, {"sigma": 25.0}, seed=seed)


def stand_in(search, bits) -> dict:
    """A record of ``bits`` as a fit would leave it, with a random score (the model's cost does not depend on it)."""
    arch = search.spec.decode(bits)
    quality = random.gauss(25.0, 2.0)
    return {"key": arch.key(), "bits": list(bits), "architecture": arch.to_dict(), "fitness": [quality],
            "objectives": {"quality": quality}, "metrics": {}, "iterations": 1, "seconds": 0.0, "error": None,
            "failure": None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=positive_int, default=500)
    parser.add_argument("--pool", type=positive_int, default=20, help="children bred per child fitted")
    parser.add_argument("--model", default="forest")
    parser.add_argument("--trees", type=positive_int, default=100)
    parser.add_argument("--generations", type=positive_int, default=4)
    parser.add_argument("--fits", type=int, default=1, help="real 64 px fits to time (0: use --fit-seconds)")
    parser.add_argument("--fit-seconds", type=float, default=None, help="seconds of one 64 px fit, measured elsewhere")
    args = parser.parse_args(argv)
    if args.fits <= 0 and args.fit_seconds is None:
        parser.error("give --fits N (N >= 1) or --fit-seconds S")

    config = SearchConfig(population=args.population, generations=args.generations, proxy="none", device="cpu",
                          algorithm=f"predictor-guided:pool={args.pool},model={args.model},trees={args.trees}")
    search = build_search(config, task_64())
    fit_times = []
    for _ in range(max(args.fits, 0)):
        record = search.evaluator.record(search.spec.encode(classical_dip(config.levels)))
        fit_times.append(record["seconds"])
    per_fit = statistics.median(fit_times) if fit_times else args.fit_seconds
    print(f"one 64 px fit of classical DIP, {config.iterations} iterations: {per_fit:.2f} s "
          f"({'median of ' + str(len(fit_times)) + ' measured' if fit_times else 'given'}); "
          f"threads {config.threads}, torch {torch.__version__}")

    rows = []
    while not search.done():
        started = time.perf_counter()
        genomes = search.ask()
        asked = time.perf_counter()
        records = [stand_in(search, bits) for bits in genomes]  # what fits would return: not the search's cost
        telling = time.perf_counter()
        search.tell(records)
        overhead = (asked - started) + (time.perf_counter() - telling)
        if search.generation == 0:
            continue
        log = search.algorithm.generations[-1]
        rows.append((overhead, log["model_seconds"], log["candidates"], len(search.history().records)))
        print(f"generation {search.generation}: {log['bred']} bred, {log['candidates']} new, {log['fitted']} chosen; "
              f"model trained on {rows[-1][3] - log['fitted']} records; non-fit {overhead:.2f} s, "
              f"model {log['model_seconds']:.2f} s")
    generation_fits = args.population * per_fit
    overhead = statistics.median(r[0] for r in rows)
    model = statistics.median(r[1] for r in rows)
    print(f"median per generation: non-fit {overhead:.2f} s, model {model:.2f} s; fits of a generation "
          f"{generation_fits:.0f} s ({args.population} x {per_fit:.2f} s)")
    print(f"non-fit / fit: {100 * overhead / generation_fits:.3f} %; "
          f"model / fit: {100 * model / generation_fits:.3f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
