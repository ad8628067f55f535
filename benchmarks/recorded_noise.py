"""How repeatable a recorded problem's blind fitness is: the ceiling on any surrogate's ranking.

A recorded entry is one fit (seed 0: one network initialisation, one draw of held-out pixels). Fitting the
same architectures again with another run seed (new initialisation, new held-out pixels) and ranking the
two sets against each other gives the Kendall tau a perfect model of the *architecture* could reach when it
is scored against single fits, as the surrogate's validation scores it.

    python benchmarks/recorded_noise.py --count 40 --jobs 2          # every problem

``--count`` architectures are taken evenly over the recorded fitness ranking (so the whole range is
covered) and refitted through the product's evaluator and backend (``compose``), with ``--seed``. A second
table scores the default surrogate on them (fitted on every other entry): Kendall tau against the recorded
fit, the refit, and their mean (the architecture's quality with half the seed noise). ``--refits FILE``
reads the refits of an earlier ``--out`` instead of fitting again.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from bench_args import positive_int
from recorded import FOLDER, PROBLEMS, load
from nasdip_deap.compose import start_backend


def spread(entries: list[dict], count: int) -> list[dict]:
    """``count`` entries evenly over the ranking by recorded blind fitness (failed fits left out)."""
    ranked = sorted((e for e in entries if e.get("error") is None), key=lambda e: e["fitness"][0])
    if len(ranked) <= count:
        return ranked
    return [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)]


def repeatability(first: list[float], second: list[float]) -> dict:
    from scipy.stats import kendalltau, spearmanr

    diff = np.array(second) - np.array(first)
    return {"kendall": float(kendalltau(first, second).statistic), "spearman": float(spearmanr(first, second).statistic),
            "diff_std": float(diff.std(ddof=1)), "diff_mean": float(diff.mean()), "n": len(first)}


def surrogate_taus(name: str, entries: list[dict], refits: list[dict]) -> dict:
    """Kendall tau of the default surrogate (fitted on the entries not refitted) on the refitted ones."""
    from scipy.stats import kendalltau

    from surrogate import Surrogate

    keys = {r["key"]: r for r in refits}
    train = [e for e in entries if e["key"] not in keys and e.get("error") is None]
    test = [e for e in entries if e["key"] in keys]
    predicted = Surrogate(PROBLEMS[name].evaluator().spec).fit(train).predict([e["bits"] for e in test])
    first = np.array([e["fitness"][0] for e in test])
    second = np.array([keys[e["key"]]["refit"] for e in test])
    return {"train": len(train), "test": len(test), "recorded": float(kendalltau(first, predicted).statistic),
            "refit": float(kendalltau(second, predicted).statistic),
            "mean": float(kendalltau((first + second) / 2, predicted).statistic)}


def run(args) -> dict:
    if args.refits:
        return json.loads(Path(args.refits).read_text())
    results = {}
    for name in args.problems:
        problem = PROBLEMS[name]
        chosen = spread(load(name, args.folder), args.count)
        evaluator = problem.evaluator(seed=args.seed)
        config = problem.config(seed=args.seed, backend="processes" if args.jobs > 1 else "serial",
                                workers=args.jobs if args.jobs > 1 else None)
        with start_backend(config) as backend:
            records = list(backend.map(evaluator.record, [e["bits"] for e in chosen]))
        pairs = [(e["fitness"][0], r["fitness"][0]) for e, r in zip(chosen, records) if r.get("error") is None]
        results[name] = {**repeatability([a for a, _ in pairs], [b for _, b in pairs]), "seed": args.seed,
                         "refits": [{"key": e["key"], "recorded": e["fitness"][0], "refit": r["fitness"][0]}
                                    for e, r in zip(chosen, records)]}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--count", type=positive_int, default=40, help="architectures refitted a problem (default 40)")
    parser.add_argument("--seed", type=int, default=1, help="run seed of the refits (the records are seed 0)")
    parser.add_argument("--jobs", type=positive_int, default=1)
    parser.add_argument("--folder", default=str(FOLDER))
    parser.add_argument("--out", help="JSON file of the refits and the table's numbers")
    parser.add_argument("--refits", metavar="FILE", help="the refits of an earlier --out: no fits, the tables only")
    args = parser.parse_args(argv)
    if args.seed == 0:
        parser.error("--seed 0 is the recorded fits' own seed: a refit would repeat them exactly")
    results = {name: row for name, row in run(args).items() if name in args.problems}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print("| problem | architectures | Kendall tau, seed 0 vs refit | Spearman | refit - recorded (mean dB) | "
          "std of the difference (dB) |\n|---|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['n']} | {row['kendall']:.2f} | {row['spearman']:.2f} | {row['diff_mean']:+.2f} | "
              f"{row['diff_std']:.2f} |")
    print(f"\nmean Kendall tau {statistics.fmean(r['kendall'] for r in results.values()):.2f}\n")
    print("| problem | surrogate trained on | Kendall tau vs the recorded fit | vs the refit | vs their mean |\n"
          "|---|---|---|---|---|")
    for name, row in results.items():
        taus = surrogate_taus(name, load(name, args.folder), row["refits"])
        print(f"| {name} | {taus['train']} entries | {taus['recorded']:.2f} | {taus['refit']:.2f} | {taus['mean']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
