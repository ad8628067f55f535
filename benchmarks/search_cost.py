"""Search-cost benchmark: the full-fidelity GA against cheaper fidelities, same seed.

Prints, for each row: DIP fits and iterations spent, wall time, the best fitness found, the true PSNR
of the best architecture's search fit, and the mean true PSNR of ``--final-seeds`` final fits of it
(on all pixels; when the row's fits kept their best output, for as many steps as its search fit ran to
its peak) and, for those rows, the mean true PSNR of as many re-fits that stop on their own held-out peak
(new seeds and held-out pixels, like finalists' re-fits); then the iteration ratio and the PSNR
difference against the first row (``full`` by default). A row is a fidelity spec, optionally with
``/es=PATIENCE`` (early stopping, which keeps each fit's best output). Usage:

    python benchmarks/search_cost.py                      # F16 crop from ../shared/data, else astronaut
    python benchmarks/search_cost.py --image IMG --crop 64 --population 8 --generations 3 --iterations 400
    python benchmarks/search_cost.py --crop 48 --iterations 600 --rows full adaptive full/es=4 halving:eta=4
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import nasdip_deap
from nasdip_deap import GenomeSpec
from nasdip_deap.errors import UserError
from nasdip_deap.fidelity import make_fidelity
from nasdip_deap.image_io import center_crop, default_image, load_image
from nasdip_deap.registry import TASKS
from nasdip_deap.runner import derive_seed

REPO = Path(__file__).resolve().parents[1]


def default_image_path() -> Path | None:
    data = Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))
    path = data / "F16_GT.png"
    return path if path.exists() else None


def denoise_task(path: Path | None, crop: int, seed: int):
    """The benchmark's problem: a centre crop of ``path`` (else astronaut), Gaussian noise sigma 25."""
    clean = center_crop(load_image(path) if path else default_image(), crop)
    return TASKS.get("denoise").from_clean(clean, {"sigma": 25.0}, seed=derive_seed(seed, "degrade"))


def parse_row(text: str) -> tuple[str, int | None]:
    """``"adaptive"`` -> ("adaptive", None); ``"full/es=4"`` -> ("full", 4); ValueError for a bad row."""
    fidelity, _, early = text.partition("/es=")
    try:
        make_fidelity(fidelity)
        patience = int(early) if early else None
    except (UserError, ValueError) as exc:
        raise ValueError(f"bad row {text!r} ({exc}); expected FIDELITY[/es=PATIENCE]") from None
    if patience is not None and patience < 1:
        raise ValueError(f"bad row {text!r}: early-stop patience must be >= 1")
    return fidelity, patience


def run_search(task, spec, args, row: str) -> dict:
    fidelity_text, early_stop = parse_row(row)
    started = time.perf_counter()
    result = nasdip_deap.search(task, population=args.population, generations=args.generations,
                                iterations=args.iterations, fitness=args.fitness, seed=args.seed, device="cpu",
                                fidelity=fidelity_text, early_stop=early_stop, levels=spec.levels,
                                init_spread=args.init_spread, proxy="none")
    wall = time.perf_counter() - started
    search = result.search
    best = search.best()
    arch = result.best
    record = result.best_record
    steps, _ = result.final_iterations()  # a fit that kept its best: where it peaked
    restoration = result.restore(iterations=steps, ensemble=args.final_seeds)
    finals = [member["psnr"] for member in restoration.members]
    own_stop = None
    if search.evaluator.keep_best:  # re-fits that stop on their own held-out peak (new seeds and hold-outs)
        refits = [search.evaluator.record(list(best), replicate=k) for k in range(1, args.final_seeds + 1)]
        own_stop = statistics.mean(r["metrics"]["psnr"] for r in refits)
    return {"fidelity": row, "fits": search.totals.fits, "iterations": search.totals.iterations,
            "wall": wall, "fitness": best.fitness.values[0], "search_psnr": record["metrics"].get("psnr"),
            "final_psnr": statistics.mean(finals), "final_steps": steps, "own_stop_psnr": own_stop,
            "arch": arch.summary()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=None, help="clean image (default: F16 from ../shared/data, else astronaut)")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--fitness", choices=("blind", "reference"), default="blind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-spread", type=float,
                        help="start every search from mutants of classical DIP (bit-flip probability), not random")
    parser.add_argument("--rows", nargs="+", default=["full", "adaptive", "halving"],
                        help="searches to run, FIDELITY[/es=PATIENCE] each, e.g. full adaptive full/es=4 "
                             "halving:eta=4; ratios are against the first row")
    parser.add_argument("--final-seeds", type=int, default=3, help="final fits of each best architecture (mean)")
    args = parser.parse_args(argv)
    if args.final_seeds < 1:
        parser.error("--final-seeds must be >= 1")
    for row in args.rows:
        try:
            parse_row(row)
        except ValueError as exc:
            parser.error(str(exc))
    path = args.image or default_image_path()
    task = denoise_task(path, args.crop, args.seed)
    spec = GenomeSpec()
    print(f"image {path or 'astronaut'} crop {args.crop}, denoise sigma 25, {args.fitness} fitness, population "
          f"{args.population}, {args.generations} generations, {args.iterations} iterations, seed {args.seed}, "
          f"{'init spread ' + str(args.init_spread) if args.init_spread is not None else 'random start'}")
    rows = [run_search(task, spec, args, text) for text in args.rows]
    print(f"{'fidelity':<24}{'fits':>6}{'DIP iters':>11}{'wall s':>9}{'fitness':>9}{'search PSNR':>13}"
          f"{'final PSNR':>12}{'final it':>10}{'own-stop PSNR':>15}")
    for r in rows:
        sp = f"{r['search_psnr']:.2f}" if r["search_psnr"] is not None else "-"
        print(f"{r['fidelity']:<24}{r['fits']:>6}{r['iterations']:>11}{r['wall']:>9.1f}{r['fitness']:>9.2f}"
              f"{sp:>13}{r['final_psnr']:>12.2f}{r['final_steps']:>10}"
              f"{'-' if r['own_stop_psnr'] is None else format(r['own_stop_psnr'], '.2f'):>15}")
    full = rows[0]
    for cheap in rows[1:]:
        print(f"{cheap['fidelity']}: iterations ratio {cheap['iterations'] / full['iterations']:.3f}; final PSNR "
              f"difference {cheap['final_psnr'] - full['final_psnr']:+.2f} dB; search PSNR difference "
              f"{(cheap['search_psnr'] or 0) - (full['search_psnr'] or 0):+.2f} dB")
    for r in rows:
        print(f"best ({r['fidelity']}): {r['arch']}")


if __name__ == "__main__":
    main()
