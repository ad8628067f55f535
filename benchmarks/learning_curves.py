"""Can a short fit tell which architectures will do best? (a script; it decides how fits are cut)

Trains a fixed pool of architectures - classical DIP, mutants of it (``--spread`` bit-flip
probability) and random genomes - for the whole budget on one denoising crop with blind fitness,
logging the held-out and the true PSNR every ``--log-every`` steps. Then, for a share of the budget,
it prints the Spearman rank correlation of

- the held-out score at that step (what a successive-halving rung ranks by) with the true PSNR at the
  end of the budget (what the full-budget search is judged by), and
- the best held-out score so far with the true PSNR at the held-out peak (what a fit that stops early
  and keeps its best output returns),

and what keeping the held-out peak instead of the last output gives the same architectures. The ground
truth is used only for these prints. Usage:

    python benchmarks/learning_curves.py                      # F16 crop 48 from ../shared/data, 40 nets
    python benchmarks/learning_curves.py --crop 32 --iterations 60 --mutants 2 --random 2 --jobs 1
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import random
import statistics

import torch
from scipy.stats import spearmanr

from nasdip_deap.engine import fit
from nasdip_deap.fitness import make_holdout
from nasdip_deap.runner import derive_seed
from nasdip_deap.genome import GenomeSpec, classical_dip
from search_cost import default_image_path, denoise_task  # this folder: the same problem as the searches

SHARES = (0.04, 0.08, 0.11, 0.16, 0.2, 0.25, 0.33, 0.5, 1.0)


def make_task(args):
    """The search-cost benchmark's problem (F16 crop from the shared data, else astronaut)."""
    return denoise_task(default_image_path(), args.crop, args.seed)


def pool(args, spec: GenomeSpec) -> list[list[int]]:
    rng = random.Random(args.seed)
    classical = spec.encode(classical_dip(spec.levels))
    mutants = [[b ^ int(rng.random() < args.spread) for b in classical] for _ in range(args.mutants)]
    return [classical] + mutants + [spec.random_bits(rng) for _ in range(args.random)]


def curves(bits, args) -> dict | None:
    """One full-budget fit with the search's seed and hold-out; its held-out and true PSNR curves."""
    torch.set_num_threads(1)
    spec = GenomeSpec()
    arch = spec.decode(bits)
    task = make_task(args)
    try:
        result = fit(arch, task, args.iterations, device="cpu", seed=derive_seed(args.seed, arch.key()),
                     holdout=make_holdout(task, 0.1, args.seed), log_every=args.log_every)
    except Exception as exc:  # a genome too big for the crop: left out of the statistics, said so
        print(f"left out {arch.key()}: {type(exc).__name__}: {exc}")
        return None
    return {"held": result.heldout_history, "true": dict(result.psnr_history)}


def up_to(curve, step):
    return [(s, v) for s, v in curve if s <= step]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crop", type=int, default=48)
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--log-every", type=int, default=12, help="log interval in steps (the search's: budget/50)")
    p.add_argument("--mutants", type=int, default=23, help="mutants of classical DIP in the pool")
    p.add_argument("--random", type=int, default=16, help="random genomes in the pool")
    p.add_argument("--spread", type=float, default=0.05, help="bit-flip probability of the mutants")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    args = p.parse_args(argv)
    if min(args.crop, args.iterations, args.log_every, args.jobs) < 1 or args.mutants < 0 or args.random < 0:
        p.error("--crop, --iterations, --log-every and --jobs must be >= 1; --mutants and --random >= 0")
    genomes = pool(args, GenomeSpec())
    work = functools.partial(curves, args=args)
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as workers:
            runs = workers.map(work, genomes)
    else:
        runs = list(map(work, genomes))
    runs = [r for r in runs if r is not None]
    if len(runs) < 3:
        raise SystemExit("learning_curves.py: error: fewer than 3 architectures could be trained")
    last = [r["true"][r["held"][-1][0]] for r in runs]
    peak_steps = [max(r["held"], key=lambda sv: sv[1])[0] for r in runs]
    kept = [r["true"][s] for r, s in zip(runs, peak_steps)]
    print(f"{len(runs)} architectures, crop {args.crop}, {args.iterations} iterations, blind (10 % held out)")
    print(f"{'share':>6}{'step':>6}{'rho(score, final true)':>25}{'rho(best so far, kept true)':>30}")
    for share in SHARES:
        step = max(args.log_every, round(share * args.iterations / args.log_every) * args.log_every)
        score = [up_to(r["held"], step)[-1][1] for r in runs]
        best = [max(v for _, v in up_to(r["held"], step)) for r in runs]
        print(f"{share:>6.0%}{step:>6}{spearmanr(score, last)[0]:>25.2f}{spearmanr(best, kept)[0]:>30.2f}")
    print(f"held-out peak at step {statistics.median(peak_steps):.0f} (median) of {args.iterations}")
    print(f"true PSNR, last output: median {statistics.median(last):.2f}, best {max(last):.2f} dB; "
          f"output at the held-out peak: median {statistics.median(kept):.2f}, best {max(kept):.2f} dB")


if __name__ == "__main__":
    main()
