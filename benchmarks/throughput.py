"""Evaluation throughput of the backends: fits per second of a tiny search's genomes with 1 and 2
workers, for ``processes`` and ``scoop`` (and ``serial`` for reference). Usage:

    python benchmarks/throughput.py                       # 12 genomes, 32 px, 30 iterations, 3 rounds
    python benchmarks/throughput.py --fits 12 --iterations 30 --rounds 5 --json throughput.json

Each round maps ``Evaluator.record`` over the same seeded random genomes (each fit with 1 torch
thread, as in a search) after the workers are up, so worker start-up is not counted. Rounds of the
configurations alternate, so that a change in the machine's load hits them alike. Prints the median
seconds per round, fits per second and the speed-up of 2 workers over 1, and the best speed-up 2
workers could reach on these fits (their 1-worker durations dispatched in order to 2 workers: the
fits differ in cost, so one worker may finish early). The SCOOP rows re-run this script under
``python -m scoop -n K`` for each round. On a shared machine the figures are noisy: quote medians,
and the load average printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_evaluator(args, iterations: int | None = None):
    from nasdip_deap.cli import build_parser
    from nasdip_deap.commands import task_from_args
    from nasdip_deap.compose import SearchConfig, build_search

    parsed = build_parser().parse_args(["search", "--crop", str(args.crop), "--seed", str(args.seed)])
    config = SearchConfig(iterations=iterations or args.iterations, seed=args.seed, device="cpu", threads=1,
                          proxy="none")
    evaluator = build_search(config, task_from_args(parsed, config.levels)).evaluator
    spec = evaluator.spec
    rng = random.Random(args.seed)
    return evaluator, [spec.random_bits(rng) for _ in range(args.fits)]


def warm_up(map_fn, args) -> None:
    """An untimed round of 2-step fits of the same genomes: torch's first calls for each shape are slow."""
    evaluator, genomes = make_evaluator(args, iterations=2)
    list(map_fn(evaluator.record, genomes))


def time_round(map_fn, evaluator, genomes) -> tuple[float, list[float]]:
    """(wall seconds, each fit's duration) of one map over the genomes."""
    start = time.perf_counter()
    records = list(map_fn(evaluator.record, genomes))
    seconds = time.perf_counter() - start
    assert len(records) == len(genomes) and not any(r["error"] for r in records)
    return seconds, [r["duration"] for r in records]


def best_speedup(durations: list[float], workers: int = 2) -> float:
    """Total work over the makespan of dispatching ``durations`` in order to ``workers`` free workers."""
    free = [0.0] * workers
    for d in durations:
        i = free.index(min(free))
        free[i] += d
    return sum(durations) / max(free)


def scoop_round(args, workers: int) -> tuple[float, list[float]]:
    """One round under ``python -m scoop -n workers`` (this script again); it writes its timing to a file."""
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / "result.json"
        cmd = ["timeout", "1800", sys.executable, "-m", "scoop", "-n", str(workers), __file__, "--inside-scoop",
               str(result_file), "--fits", str(args.fits), "--iterations", str(args.iterations), "--crop",
               str(args.crop), "--seed", str(args.seed)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if not result_file.exists():
            raise RuntimeError(f"the SCOOP run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        seconds, durations = json.loads(result_file.read_text())
        return seconds, durations


def inside_scoop(args) -> None:
    from nasdip_deap.backends import ScoopBackend

    backend = ScoopBackend()
    evaluator, genomes = make_evaluator(args)
    list(backend.map(time.sleep, [1.0] * (2 * backend.workers)))  # every worker connected before timing
    warm_up(backend.map, args)
    Path(args.inside_scoop).write_text(json.dumps(time_round(backend.map, evaluator, genomes)))


def measure(args, chosen: list[str]) -> dict:
    """{(backend, workers): [(seconds, durations) per round]}, rounds of the configurations alternating."""
    from nasdip_deap.backends import ProcessBackend, SerialBackend

    evaluator, genomes = make_evaluator(args)
    runners = {}
    pools = []
    if "serial" in chosen:
        warm_up(SerialBackend().map, args)
        runners["serial", 1] = lambda: time_round(SerialBackend().map, evaluator, genomes)
    if "processes" in chosen:
        for workers in (1, 2):
            pool = ProcessBackend(workers=workers, threads=1, gpu_count=0)
            pools.append(pool)
            list(pool.map(time.sleep, [0.2] * workers))  # workers up before timing
            warm_up(pool.map, args)
            runners["processes", workers] = lambda pool=pool: time_round(pool.map, evaluator, genomes)
    if "scoop" in chosen:
        for workers in (1, 2):
            runners["scoop", workers] = lambda workers=workers: scoop_round(args, workers)
    results = {key: [] for key in runners}
    try:
        for _ in range(args.rounds):
            for key, runner in runners.items():
                results[key].append(runner())
    finally:
        for pool in pools:
            pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fits", type=int, default=12, help="genomes per round (default 12)")
    parser.add_argument("--iterations", type=int, default=30, help="Adam steps per fit (default 30)")
    parser.add_argument("--crop", type=int, default=32, help="image size in pixels (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per configuration (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", default="serial,processes,scoop", help="which to measure")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--inside-scoop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_scoop:
        return inside_scoop(args)

    chosen = args.backends.split(",")
    load_before = os.getloadavg()[0]
    results = measure(args, chosen)
    load_after = os.getloadavg()[0]

    print(f"{args.fits} fits per round, {args.crop} px, {args.iterations} iterations, {args.rounds} rounds; "
          f"{os.cpu_count()} cores, load average {load_before:.1f} before / {load_after:.1f} after")
    print(f"{'backend':<10} {'workers':>7} {'median s':>9} {'fits/s':>7} {'speed-up':>8} {'best':>6}   rounds (s)")
    medians = {}
    report = []
    for (name, workers), rounds in results.items():
        seconds = [s for s, _ in rounds]
        median = statistics.median(seconds)
        medians[name, workers] = median
        speedup = medians.get((name, 1), median) / median
        one_worker = results.get((name, 1), rounds)
        bound = statistics.median(best_speedup(d, workers) for _, d in one_worker)
        print(f"{name:<10} {workers:>7} {median:>9.2f} {args.fits / median:>7.2f} {speedup:>7.2f}x {bound:>5.2f}x   "
              f"{', '.join(f'{s:.2f}' for s in seconds)}")
        report.append({"backend": name, "workers": workers, "seconds": seconds, "median": median,
                       "fits_per_second": args.fits / median, "speedup_vs_1": speedup, "best_speedup": bound})
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "load": [load_before, load_after],
                                               "rows": report}, indent=1))


if __name__ == "__main__":
    main()
