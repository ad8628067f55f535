"""Evaluation throughput of the backends: fits per second of a tiny search's genomes with 1 and 2
workers, for ``processes``, ``dask`` (a local cluster) and ``scoop`` (and ``serial`` for reference).
Usage:

    python benchmarks/throughput.py                       # 12 genomes, 32 px, 30 iterations, 3 rounds
    python benchmarks/throughput.py --fits 12 --iterations 30 --rounds 5 --json throughput.json
    python benchmarks/throughput.py --backends processes,dask --crop 64 --iterations 100 --fits 8

With both ``processes`` and ``dask`` it also prints Dask's overhead per fit: the difference of their
median rounds (same fits, same worker count) divided by the fits, and that as a share of a fit.

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


class SleepFit:
    """A stand-in fit of a fixed wall time that carries the real evaluator (so the function shipped to
    the workers weighs what a search's does): a round of them measures what a backend adds per fit,
    whatever the load of the machine's cores."""

    def __init__(self, evaluator, seconds: float):
        self.evaluator, self.seconds = evaluator, seconds

    def __call__(self, bits) -> dict:
        time.sleep(self.seconds)
        return {"error": None, "duration": self.seconds}


def overhead_rounds(args, chosen: list[str]) -> dict:
    """{(backend, workers): [seconds per round]} of SleepFit rounds; each round maps a new function
    object, as each generation of a search does (processes sends it to each worker again; dask sends it
    again only when its pickle changed)."""
    from nasdip_deap.backends import BackendOptions, ProcessBackend
    from nasdip_deap.dask_backend import DaskBackend

    evaluator, genomes = make_evaluator(args)
    pools = {}
    try:
        for workers in (1, 2):
            if "processes" in chosen:
                pools["processes", workers] = ProcessBackend(workers=workers, threads=1, gpu_count=0)
            if "dask" in chosen:
                pools["dask", workers] = DaskBackend(BackendOptions(workers=workers, threads=1, device="cpu"))
        for pool in pools.values():
            list(pool.map(SleepFit(evaluator, 0.0), genomes))  # workers up, code imported
        results = {key: [] for key in pools}
        for _ in range(args.rounds):
            for key, pool in pools.items():
                start = time.perf_counter()
                list(pool.map(SleepFit(evaluator, args.sleep), genomes))
                results[key].append(time.perf_counter() - start)
        return results
    finally:
        for pool in pools.values():
            pool.close()


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
    if "dask" in chosen:
        from nasdip_deap.backends import BackendOptions
        from nasdip_deap.dask_backend import DaskBackend

        for workers in (1, 2):
            pool = DaskBackend(BackendOptions(workers=workers, threads=1, device="cpu"))
            pools.append(pool)
            list(pool.map(time.sleep, [0.2] * workers))  # workers up before timing
            warm_up(pool.map, args)
            runners["dask", workers] = lambda pool=pool: time_round(pool.map, evaluator, genomes)
    if "scoop" in chosen:
        for workers in (1, 2):
            runners["scoop", workers] = lambda workers=workers: scoop_round(args, workers)
    results = {key: [] for key in runners}
    try:
        for r in range(args.rounds):
            for key, runner in runners.items():
                results[key].append(runner())
                print(f"round {r + 1}: {key[0]} x{key[1]} {results[key][-1][0]:.2f} s (load "
                      f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)  # partial figures survive a kill
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
    parser.add_argument("--sleep", type=float, default=0.0,
                        help="instead of fits, rounds of stand-in fits of this many seconds (carrying the real "
                             "evaluator): what processes and dask add per fit, independent of the cores' load")
    parser.add_argument("--inside-scoop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_scoop:
        return inside_scoop(args)

    chosen = args.backends.split(",")
    if args.sleep:
        return print_overheads(args, chosen)
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
    overheads = []
    for workers in (1, 2):
        if ("dask", workers) in medians and ("processes", workers) in medians:
            per_fit = (medians["dask", workers] - medians["processes", workers]) / args.fits
            fit = medians["processes", 1] / args.fits  # one fit's wall time on one worker
            overheads.append({"workers": workers, "seconds_per_fit": per_fit, "share_of_fit": per_fit / fit})
            print(f"dask overhead with {workers} worker(s): {per_fit * 1000:+.1f} ms per fit, "
                  f"{100 * per_fit / fit:+.2f} % of a {fit:.2f} s fit")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "load": [load_before, load_after],
                                               "rows": report, "dask_overhead": overheads}, indent=1))


def print_overheads(args, chosen: list[str]) -> None:
    load_before = os.getloadavg()[0]
    results = overhead_rounds(args, chosen)
    print(f"{args.fits} stand-in fits of {args.sleep:g} s per round ({args.crop} px evaluator shipped each round), "
          f"{args.rounds} rounds; load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after")
    rows = []
    for (name, workers), rounds in results.items():
        ideal = args.sleep * -(-args.fits // workers)  # the fits' own time, spread over the workers
        median = statistics.median(rounds)
        per_fit = (median - ideal) / args.fits
        rows.append({"backend": name, "workers": workers, "seconds": rounds, "overhead_per_fit": per_fit})
        print(f"{name:<10} x{workers}  median {median:.3f} s (ideal {ideal:.2f})  overhead {per_fit * 1000:6.1f} ms "
              f"per fit   rounds {', '.join(f'{r:.3f}' for r in rounds)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
