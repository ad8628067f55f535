"""Search-cost benchmark: full-fidelity GA against multi-fidelity (successive halving), same seed.

Prints, for each fidelity: DIP fits and iterations spent, wall time, the best fitness found, the true
PSNR of the best architecture's search fit, and the true PSNR of a final full-budget fit of it; then
the iteration ratio and the PSNR difference. Usage:

    python benchmarks/search_cost.py                      # F16 crop from ../shared/data, else astronaut
    python benchmarks/search_cost.py --image IMG --crop 64 --population 8 --generations 3 --iterations 400
    python benchmarks/search_cost.py --crop 48 --iterations 600 --halving halving halving:eta=4
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from nasdip_deap import GenomeSpec
from nasdip_deap.api import search_architecture
from nasdip_deap.fit import fit
from nasdip_deap.fitness import derive_seed
from nasdip_deap.image_io import center_crop, default_image, load_image
from nasdip_deap.registry import TASKS

REPO = Path(__file__).resolve().parents[1]


def default_image_path() -> Path | None:
    data = Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))
    path = data / "F16_GT.png"
    return path if path.exists() else None


def run_search(task, spec, args, fidelity_text: str) -> dict:
    started = time.perf_counter()
    search = search_architecture(task, population=args.population, generations=args.generations,
                                 iterations=args.iterations, fitness=args.fitness, seed=args.seed, device="cpu",
                                 fidelity=fidelity_text, levels=spec.levels, init_spread=args.init_spread)
    wall = time.perf_counter() - started
    best = search.best()
    arch = spec.decode(best)
    record = search.record_for(best)
    final = fit(arch, task, args.iterations, device="cpu", seed=derive_seed(args.seed, arch.key()))
    return {"fidelity": fidelity_text, "fits": search.totals.fits, "iterations": search.totals.iterations,
            "wall": wall, "fitness": best.fitness.values[0], "search_psnr": record["metrics"].get("psnr"),
            "final_psnr": final.metrics["psnr"], "arch": arch.summary()}


def main() -> None:
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
    parser.add_argument("--halving", nargs="+", default=["halving"],
                        help="fidelity specs of the cheap searches, e.g. halving halving:eta=4")
    args = parser.parse_args()
    path = args.image or default_image_path()
    clean = center_crop(load_image(path) if path else default_image(), args.crop)
    task = TASKS.get("denoise").from_clean(clean, {"sigma": 25.0}, seed=derive_seed(args.seed, "degrade"))
    spec = GenomeSpec()
    print(f"image {path or 'astronaut'} crop {args.crop}, denoise sigma 25, {args.fitness} fitness, population "
          f"{args.population}, {args.generations} generations, {args.iterations} iterations, seed {args.seed}, "
          f"{'init spread ' + str(args.init_spread) if args.init_spread is not None else 'random start'}")
    rows = [run_search(task, spec, args, text) for text in ["full"] + args.halving]
    print(f"{'fidelity':<24}{'fits':>6}{'DIP iters':>11}{'wall s':>9}{'fitness':>9}{'search PSNR':>13}"
          f"{'final PSNR':>12}")
    for r in rows:
        sp = f"{r['search_psnr']:.2f}" if r["search_psnr"] is not None else "-"
        print(f"{r['fidelity']:<24}{r['fits']:>6}{r['iterations']:>11}{r['wall']:>9.1f}{r['fitness']:>9.2f}"
              f"{sp:>13}{r['final_psnr']:>12.2f}")
    full = rows[0]
    for cheap in rows[1:]:
        print(f"{cheap['fidelity']}: iterations ratio {cheap['iterations'] / full['iterations']:.3f}; final PSNR "
              f"difference {cheap['final_psnr'] - full['final_psnr']:+.2f} dB; search PSNR difference "
              f"{(cheap['search_psnr'] or 0) - (full['search_psnr'] or 0):+.2f} dB")
    for r in rows:
        print(f"best ({r['fidelity']}): {r['arch']}")


if __name__ == "__main__":
    main()
