"""Which model should rank children for ``predictor-guided``: ranking quality and seconds per model.

Records are real fits: evaluation files of earlier runs (``--records`` evaluations.jsonl or cache.jsonl,
any number), or, without them, a set fitted here through ``compose.build_search`` (random genomes and
mutants of classical DIP on a denoising crop; ``--fits``, ``--size``, ``--iterations``), kept in
``--out`` and reused by the next run. Each model of ``predictor.MODELS`` is trained on a random share
``--train`` of the records and ranks the rest; the script prints, over ``--splits`` splits, the median
Kendall tau between predicted and measured fitness on the held-out records, and the median seconds of
one training plus prediction.

    python benchmarks/predictor_models.py --fits 80 --size 32 --iterations 100 --out runs/predictor-records.jsonl
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_args import positive_int  # noqa: E402

from nasdip_deap.architecture import Architecture  # noqa: E402
from nasdip_deap.compose import SearchConfig, build_search  # noqa: E402
from nasdip_deap.genome import classical_dip  # noqa: E402
from nasdip_deap.predictor import MODELS, RecordModel, architecture_features, kendall_tau  # noqa: E402
from predictor_overhead import task_64  # noqa: E402


def make_records(path: Path, fits: int, size: int, iterations: int, levels: int) -> list[dict]:
    """``fits`` real records (kept in ``path``, one JSON line each, so a stopped run continues)."""
    have = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    task = task_64()
    if size < 64:
        task = type(task).from_clean(task.clean[:, :size, :size], {"sigma": 25.0}, seed=0)
    config = SearchConfig(levels=levels, iterations=iterations, proxy="none", device="cpu")
    search = build_search(config, task)
    rng = random.Random(0)
    classical = search.spec.encode(classical_dip(levels))
    genomes = [[b ^ (rng.random() < 0.1) for b in classical] if i % 2 else search.spec.random_bits(rng)
               for i in range(fits)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for i, bits in enumerate(genomes[len(have):], len(have)):
            record = search.evaluator.record(bits)
            record.pop("output", None)
            record.pop("traceback", None)
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            have.append(record)
            print(f"fit {i + 1}/{fits}: {record['fitness'][0]:.2f} in {record['seconds']:.1f} s", file=sys.stderr)
    return have


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", nargs="*", default=[], help="evaluations.jsonl or cache.jsonl of real runs")
    parser.add_argument("--out", default="runs/predictor-records.jsonl", help="where fitted records are kept")
    parser.add_argument("--fits", type=positive_int, default=80)
    parser.add_argument("--size", type=positive_int, default=32)
    parser.add_argument("--iterations", type=positive_int, default=100)
    parser.add_argument("--levels", type=positive_int, default=3)
    parser.add_argument("--splits", type=positive_int, default=10)
    parser.add_argument("--train", type=float, default=0.6)
    parser.add_argument("--trees", type=positive_int, default=100)
    args = parser.parse_args(argv)
    if args.records:
        records = [json.loads(line) for name in args.records for line in Path(name).read_text().splitlines()]
    else:
        records = make_records(Path(args.out), args.fits, args.size, args.iterations, args.levels)
    records = [r for r in records if r.get("error") is None and math.isfinite(r["fitness"][0])]
    archs = [Architecture.from_dict(r["architecture"]) for r in records]
    levels = max(a.levels for a in archs)
    archs, records = zip(*[(a, r) for a, r in zip(archs, records) if a.levels == levels])
    X = np.array([architecture_features(a, levels) for a in archs])
    y = np.array([r["fitness"][0] for r in records])
    print(f"{len(y)} records ({levels} levels), fitness {y.min():.2f}..{y.max():.2f} dB; "
          f"{args.splits} splits, {args.train:.0%} to train")
    rng = np.random.default_rng(0)
    splits = [rng.permutation(len(y)) for _ in range(args.splits)]
    cut = int(round(args.train * len(y)))
    print(f"{'model':<12} {'tau median':>10} {'tau min':>8} {'seconds':>8}")
    for kind in MODELS:
        taus, seconds = [], []
        for seed, order in enumerate(splits):
            train, test = order[:cut], order[cut:]
            started = time.perf_counter()
            model = RecordModel(kind, args.trees, seed).fit(X[train], y[train, None])
            predicted = model.predict(X[test])[0][:, 0]
            seconds.append(time.perf_counter() - started)
            taus.append(kendall_tau(predicted, y[test]) or 0.0)
        print(f"{kind:<12} {statistics.median(taus):>10.3f} {min(taus):>8.3f} {statistics.median(seconds):>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
