"""Does a prior learned on other images rank the random architectures of a new one? (``--init-prior``)

For each recorded problem (benchmarks/recorded: 1,000 fits of one 32 px image and task), the product's
``PriorStart`` is trained on the *other* problems' tables and ranks this problem's uniformly random entries,
whose blind fitness and true PSNR were measured. Printed per problem: Kendall's tau of the prior's score
against the measured blind fitness and true PSNR, and over ``--draws`` pools of ``--pool`` random entries,
what a first population of ``--slots`` genomes chosen by the prior (``PriorStart.choose``, its exploring
share included) gets against the first ``--slots`` of the same pool (random search): the true PSNR of the
best-by-blind genome and the mean true PSNR of the chosen ones (medians over draws). No fit is run.

    python benchmarks/prior_transfer.py --draws 40
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_args import positive_int  # noqa: E402
import numpy as np  # noqa: E402
import recorded  # noqa: E402

from nasdip_deap import GenomeSpec  # noqa: E402
from nasdip_deap.predictor import RecordModel, architecture_features  # noqa: E402
from nasdip_deap.prior_start import PriorStart  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", nargs="+", default=list(recorded.PROBLEMS), choices=list(recorded.PROBLEMS))
    p.add_argument("--draws", type=positive_int, default=40, help="pools drawn per problem (default %(default)s)")
    p.add_argument("--pool", type=positive_int, default=150, help="random entries per pool (default %(default)s)")
    p.add_argument("--slots", type=positive_int, default=21,
                   help="genomes chosen from each pool (default %(default)s: random search's fits)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def main(argv=None) -> int:
    args = parse_args(argv)
    tables = {name: recorded.load(name) for name in recorded.PROBLEMS}
    spec = GenomeSpec(levels=next(iter(recorded.PROBLEMS.values())).levels)
    print("| problem | prior from | random entries | tau (blind) | tau (true) | best-by-blind, prior | "
          "best-by-blind, random | chosen mean, prior | chosen mean, random |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.problems:
            others = [other for other in tables if other != name]
            paths = []
            for other in others:
                path = Path(folder) / f"{other}.jsonl.gz"
                if not path.exists():
                    recorded.rewrite(path, tables[other])
                paths.append(str(path))
            prior = PriorStart(paths, spec)
            entries = [e for e in tables[name] if e["error"] is None and str(e.get("source", "")).startswith("random")
                       and e["metrics"].get("psnr") is not None]
            if len(entries) < args.pool:
                raise SystemExit(f"prior_transfer: {name} has {len(entries)} random entries, fewer than --pool")
            by_bits = {tuple(e["bits"]): e for e in entries}
            model = RecordModel(prior.model, prior.trees, args.seed, prior.features).fit(prior.X, prior.y[:, None])
            score, _ = model.predict(np.array([architecture_features(spec.decode(e["bits"]), spec.levels)
                                               for e in entries]))
            tau_blind = kendall(score[:, 0], [e["fitness"][0] for e in entries])
            tau_true = kendall(score[:, 0], [e["metrics"]["psnr"] for e in entries])
            rng = random.Random(args.seed)
            rows = {"prior_best": [], "random_best": [], "prior_mean": [], "random_mean": []}
            for draw in range(args.draws):
                pool = [list(e["bits"]) for e in rng.sample(entries, args.pool)]
                random.seed(args.seed * 1000 + draw)
                for label, chosen in (("prior", prior.choose(pool, args.slots, spec)), ("random", pool[:args.slots])):
                    picked = [by_bits[tuple(bits)] for bits in chosen]
                    rows[f"{label}_best"].append(max(picked, key=lambda e: e["fitness"][0])["metrics"]["psnr"])
                    rows[f"{label}_mean"].append(statistics.mean(e["metrics"]["psnr"] for e in picked))
            med = {k: statistics.median(v) for k, v in rows.items()}
            print(f"| {name} | {', '.join(others)} | {len(entries)} | {tau_blind:.2f} | {tau_true:.2f} | "
                  f"{med['prior_best']:.2f} | {med['random_best']:.2f} | {med['prior_mean']:.2f} | "
                  f"{med['random_mean']:.2f} |", flush=True)
    print(f"\n{args.draws} pools of {args.pool} random entries a problem, {args.slots} chosen; medians over pools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
