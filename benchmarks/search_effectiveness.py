"""How well algorithms and operators search, over many seeds, in seconds: a grid of (algorithm, crossover,
mutation) cells run on the recorded problems of ``recorded.py`` through the product's search loop, each fit
answered by the recorded table or its surrogate (``surrogate.py``), so that one search takes a fraction of a
second. After COCO and IOHprofiler: best-so-far blind fitness (and the true PSNR of the best-so-far
architecture) against the number of distinct fits, as a median with the interquartile band; the fits needed
to reach targets (the 90th and 99th percentile of the recorded fitnesses, and the best recorded), as an ECDF;
and a table with the area under the curve and a rank test of every cell against the default.

    python benchmarks/search_effectiveness.py --seeds 20 --out runs/effectiveness          # every problem
    python benchmarks/search_effectiveness.py --real --seeds 3 --problems denoise-chelsea-32  # real DIP fits
    python benchmarks/search_effectiveness.py --real --size 48 --seeds 5 --problems denoise-chelsea-32  # larger crop

The grid varies one factor of the default at a time (every registered crossover, then every mutation, then
every registered algorithm), defaults first. ``--real`` runs the same grid with real fits
at the problem's settings, to check that the surrogate's verdicts hold; ``--size`` crops the same photo larger
(same per-fit budget), and then the targets come from the run's own fits.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench_args import non_negative_float, positive_int, setting_value
from recorded import FOLDER, PROBLEMS, load
from surrogate import Surrogate, SurrogateEvaluator
from nasdip_deap.compose import SearchConfig, build_search, make_algorithm
from nasdip_deap.errors import UserError
from nasdip_deap.fitness import Evaluator
from nasdip_deap.registry import ALGORITHMS, OPERATORS

DEFAULTS = SearchConfig()
SETTING_NAMES = {f.name for f in dataclasses.fields(SearchConfig)}
DEFAULT_CELL = (DEFAULTS.algorithm, DEFAULTS.crossover, DEFAULTS.mutation)


def grid(algorithms=None) -> list[tuple[str, str, str]]:
    """The default cell first, then one factor changed at a time (``algorithms``: every registered one, the
    multi-objective ones read by their best quality)."""
    algorithm, crossover, mutation = DEFAULT_CELL
    algorithms = ALGORITHMS.names() if algorithms is None else algorithms
    cells = [DEFAULT_CELL]
    cells += [(algorithm, c, mutation) for c in OPERATORS.names("crossover") if c != crossover]
    cells += [(algorithm, crossover, m) for m in OPERATORS.names("mutation") if m != mutation]
    cells += [(a, crossover, mutation) for a in algorithms if a != algorithm]
    return cells


def label(cell: tuple) -> str:
    algorithm, crossover, mutation = cell[:3]
    name = algorithm if algorithm == "random" else f"{algorithm} {crossover} {mutation}"
    return " ".join([name, *(f"{key}={json.dumps(value)}" for key, value in cell_settings(cell).items())])


def cell_settings(cell: tuple) -> dict:
    """The search settings a cell changes besides its algorithm and operators (``population=10``, ...)."""
    return dict(cell[3]) if len(cell) > 3 else {}


def trajectory(search) -> tuple[list[float], list[float | None]]:
    """Best-so-far blind fitness after each distinct fit, and the true PSNR of the best-so-far architecture."""
    best, best_psnr, curve, psnr = -math.inf, None, [], []
    for record in search.cache.values():  # insertion order: the order fits came back
        quality = record["fitness"][0] if record["error"] is None else -math.inf
        if quality > best:
            best, best_psnr = quality, record["metrics"].get("psnr")
        curve.append(best)
        psnr.append(best_psnr)
    return curve, psnr


def run_cell(problem, cell, seed: int, args, evaluator_class) -> dict:
    algorithm, crossover, mutation = cell[:3]
    config = problem.config(**{"algorithm": algorithm, "crossover": crossover, "mutation": mutation, "seed": seed,
                               "population": args.population, "generations": args.generations,
                               **cell_settings(cell)})
    started = time.perf_counter()
    search = build_search(config, problem.make_task(), evaluator_class=evaluator_class).run()
    curve, psnr = trajectory(search)
    return {"cell": label(cell), "seed": seed, "curve": curve, "psnr": psnr, "seconds": time.perf_counter() - started,
            "fits": len(curve), "predicted": sum(bool(r.get("surrogate")) for r in search.cache.values())}


def fits_to_reach(curve: list[float], target: float) -> float:
    """Distinct fits until the best-so-far reaches ``target`` (inf when it never does)."""
    return next((i + 1 for i, value in enumerate(curve) if value >= target), math.inf)


def padded(curves: list[list[float]], length: int) -> np.ndarray:
    return np.array([c + [c[-1]] * (length - len(c)) if c else [np.nan] * length for c in curves], dtype=float)


def summarise(problem_name: str, runs: list[dict], recorded_fitness: list[float]) -> dict:
    """Per cell: median and IQR curves, fits to each target, area under the curve, rank tests vs default."""
    from scipy.stats import mannwhitneyu, wilcoxon

    targets = {"p90": float(np.percentile(recorded_fitness, 90)), "p99": float(np.percentile(recorded_fitness, 99)),
               "best": float(max(recorded_fitness))}
    length = max(r["fits"] for r in runs)
    cells = list(dict.fromkeys(r["cell"] for r in runs))
    out = {"problem": problem_name, "targets": targets, "fits": length, "cells": {}}
    for cell in cells:
        mine = [r for r in runs if r["cell"] == cell]
        curves = padded([r["curve"] for r in mine], length)
        psnr = [r["psnr"][-1] for r in mine if r["psnr"] and r["psnr"][-1] is not None]
        out["cells"][cell] = {
            "seeds": len(mine), "median": np.median(curves, 0).tolist(),
            "q25": np.percentile(curves, 25, 0).tolist(), "q75": np.percentile(curves, 75, 0).tolist(),
            "auc": [float(np.mean(c)) for c in curves], "final": [float(c[-1]) for c in curves],
            "final_psnr": psnr, "reach": {t: [fits_to_reach(r["curve"], v) for r in mine] for t, v in targets.items()},
            "seconds": statistics.median(r["seconds"] for r in mine),
            "predicted_share": sum(r["predicted"] for r in mine) / max(1, sum(r["fits"] for r in mine))}
    default = out["cells"][cells[0]]
    # the default's final best (median over its seeds) as one more target, and every cell compared at the
    # smallest number of fits any search made (cells differ in how many children needed no fit)
    out["targets"]["default_final"] = float(statistics.median(default["final"]))
    out["equal_fits"] = min(r["fits"] for r in runs)
    for cell in cells:
        mine, runs_of = out["cells"][cell], [r for r in runs if r["cell"] == cell]
        mine["reach"]["default_final"] = [fits_to_reach(r["curve"], out["targets"]["default_final"]) for r in runs_of]
        # the same seed's default final best: in real fits a seed's held-out draw moves its whole blind level,
        # so "reach the GA's result" is read per seed (the default reaches its own at its last improvement)
        own = {r["seed"]: r["curve"][-1] for r in runs if r["cell"] == cells[0] and r["curve"]}
        mine["reach"]["seed_default_final"] = [fits_to_reach(r["curve"], own[r["seed"]]) for r in runs_of
                                               if r["seed"] in own]
        mine["psnr_at_equal_fits"] = [r["psnr"][out["equal_fits"] - 1] for r in runs_of
                                      if r["psnr"] and r["psnr"][out["equal_fits"] - 1] is not None]
        if cell != cells[0]:
            mine["p_auc"] = float(mannwhitneyu(mine["auc"], default["auc"]).pvalue) if len(mine["auc"]) > 1 else None
            # paired by seed: seed i of every cell shares the task's draws (in real fits its held-out pixels
            # too, which move a search's whole blind level by dB), so per-seed differences are far less noisy
            diffs = [a - b for a, b in zip(mine["auc"], default["auc"])]
            mine["paired"] = {"ahead": sum(d > 0 for d in diffs), "of": len(diffs),
                              "p": float(wilcoxon(diffs).pvalue) if len(diffs) > 1 and any(diffs) else None}
    return out


def _median_fits(values: list[float]) -> str:
    finite = sorted(values)
    m = statistics.median(finite)
    reached = sum(math.isfinite(v) for v in values)
    return f"{m:.0f} ({reached}/{len(values)})" if math.isfinite(m) else f"never ({reached}/{len(values)})"


def _p_value(p: float | None) -> str:
    """A p-value for the table: bold below 0.05, a dash when there is none."""
    return "—" if p is None else (f"**{p:.3f}**" if p < 0.05 else f"{p:.3f}")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "—"


def markdown(summary: dict, mode: str) -> str:
    t = summary["targets"]
    lines = [f"### {summary['problem']} ({mode}; targets: p90 {t['p90']:.2f}, p99 {t['p99']:.2f}, best {t['best']:.2f} "
             f"dB blind)", "",
             "| cell | seeds | AUC (median) | final best blind (median) | true PSNR of it (median) | fits to p90 | "
             f"fits to p99 | fits to best | fits to the default's final best ({t['default_final']:.2f}) | "
             "fits to the same seed's default final best | "
             f"true PSNR at {summary['equal_fits']} fits (median) | p vs default (AUC) | paired by seed: ahead, p | "
             "s / search |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in summary["cells"].items():
        sig = _p_value(c.get("p_auc"))
        pair = c.get("paired")
        paired_text = "—" if pair is None else f"{pair['ahead']}/{pair['of']}, {_p_value(pair['p'])}"
        psnr = _median(c["final_psnr"])
        lines.append(f"| {name} | {c['seeds']} | {statistics.median(c['auc']):.3f} | {statistics.median(c['final']):.3f} | "
                     f"{psnr} | {_median_fits(c['reach']['p90'])} | {_median_fits(c['reach']['p99'])} | "
                     f"{_median_fits(c['reach']['best'])} | {_median_fits(c['reach']['default_final'])} | "
                     f"{_median_fits(c['reach']['seed_default_final'])} | "
                     f"{_median(c['psnr_at_equal_fits'])} | {sig} | {paired_text} | {c['seconds']:.2f} |")
    lines.append("")
    lines.append("AUC: the mean best-so-far blind fitness over the fits; fits to a target: median over seeds (seeds "
                 "that reached it / seeds); p: two-sided Mann-Whitney U of the cell's AUCs against the default's; "
                 "paired: the seeds whose AUC is above the default's with the same seed, and the two-sided "
                 "Wilcoxon signed-rank p of the per-seed differences (bold below 0.05).")
    return "\n".join(lines)


def figures(summary: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, ecdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, c in summary["cells"].items():
        x = np.arange(1, len(c["median"]) + 1)
        line, = curves.plot(x, c["median"], label=name, lw=2 if name == next(iter(summary["cells"])) else 1)
        curves.fill_between(x, c["q25"], c["q75"], color=line.get_color(), alpha=0.15)
        reach = sorted(c["reach"]["p90"])
        ecdf.step([v for v in reach if math.isfinite(v)], [(i + 1) / len(reach) for i, v in enumerate(reach)
                                                             if math.isfinite(v)], where="post", color=line.get_color())
    curves.set(xlabel="distinct fits", ylabel="best-so-far blind fitness (dB)",
               title=f"{summary['problem']}: median and IQR over seeds")
    curves.legend(fontsize=7)
    ecdf.set(xlabel="distinct fits", ylabel="share of seeds", xlim=(0, summary["fits"] + 1), ylim=(0, 1.02),
             title=f"fits to reach the 90th percentile ({summary['targets']['p90']:.2f} dB)")
    fig.tight_layout()
    path = folder / f"{summary['problem']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def evaluator_for(problem, real: bool, folder, noise: float = 0.0):
    """The fitness strategy of a problem: the recorded table and its surrogate (with ``noise`` > 0: the
    surrogate's level of every architecture plus that much Gaussian noise a fit, dB), or real fits."""
    if real:
        return Evaluator
    entries = load(problem.name, folder)
    if len(entries) < 10:
        raise UserError(f"recorded problem {problem.name!r} has {len(entries)} entries; build it first "
                        f"(python benchmarks/build_recorded.py)")
    spec = problem.evaluator().spec
    return functools.partial(SurrogateEvaluator, table=entries, surrogate=Surrogate(spec).fit(entries), noise=noise)


def run(args) -> list[dict]:
    # the table scores every architecture: the warning about few held-out pixels of a seed's draw is moot
    # (restored afterwards: a test or notebook running this in-process keeps its warnings)
    logger = logging.getLogger("nasdip.fitness")
    level = logger.level
    if not args.real:
        logger.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        logger.setLevel(level)


def _run(args) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "real fits" if args.real else ("recorded table + surrogate" if not args.fit_noise else
                                          f"surrogate + {args.fit_noise:g} dB fit noise")
    summaries, tables = [], []
    for name in args.problems:
        problem = PROBLEMS[name]
        if args.size is not None and args.size != problem.size:
            # the same photo and per-fit budget, cropped larger: nothing is recorded at that size
            stem = name.removesuffix(f"-{problem.size}")
            problem = dataclasses.replace(problem, size=args.size, name=f"{stem}-{args.size}")
        evaluator_class = evaluator_for(problem, args.real, args.folder, args.fit_noise)
        recorded_fitness = ([e["fitness"][0] for e in load(name, args.folder)] or None
                            if problem.name == name else None)
        runs = []
        started = time.perf_counter()
        # every search is written as it ends, so a long real grid shows its progress and an interrupted one
        # resumes from its finished searches (kept only when their settings match this run's; a surrogate
        # search takes a second, and its model may have changed, so that grid always starts afresh)
        path = out / f"{problem.name}.runs.jsonl"
        done = finished_searches(path, settings(args)) if args.real else {}
        with open(path, "a" if args.real else "w") as log:
            for seed in range(args.seeds):  # seed by seed: a grid cut short still pairs every cell by seed
                for cell in args.cells:
                    result = done.get((label(cell), seed))
                    if result is None:
                        result = run_cell(problem, cell, seed, args, evaluator_class)
                        log.write(json.dumps({"settings": settings(args), **result}) + "\n")
                        log.flush()
                    runs.append(result)
        if recorded_fitness is None:  # real mode without a recorded table: targets from this run's own fits
            recorded_fitness = [v for r in runs for v in r["curve"]]
        summary = summarise(problem.name, runs, recorded_fitness)
        summary["grid_seconds"] = time.perf_counter() - started
        summaries.append(summary)
        tables.append(markdown(summary, mode))
        figures(summary, out)
        print(tables[-1], f"\n\ngrid: {len(runs)} searches in {summary['grid_seconds']:.1f} s", flush=True)
    (out / "table.md").write_text("\n\n".join(tables) + "\n")
    (out / "summary.json").write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "cells"},
                                                  "cells": [label(c) for c in args.cells], "mode": mode,
                                                  "problems": summaries}, indent=1, default=str))
    return summaries


def settings(args) -> dict:
    """What makes two searches of a cell and seed the same search."""
    return {"real": args.real, "size": args.size, "population": args.population, "generations": args.generations,
            "folder": str(args.folder)}


def finished_searches(path: Path, wanted: dict) -> dict:
    """The searches an earlier run of the same settings finished, by (cell, seed)."""
    if not path.exists():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if record.pop("settings", None) == wanted:
            done[(record["cell"], record["seed"])] = record
    return done


def parse_cell(text: str) -> tuple:
    """ALGORITHM,CROSSOVER,MUTATION[,KEY=VALUE...]: KEY a search setting (SearchConfig field) of this cell."""
    parts = text.split(",")
    if len(parts) < 3 or any("=" not in part for part in parts[3:]) or any(not part for part in parts[:3]):
        raise argparse.ArgumentTypeError(f"a cell is ALGORITHM,CROSSOVER,MUTATION[,KEY=VALUE...], got {text!r}")
    settings = []
    for part in parts[3:]:
        key, _, value = part.partition("=")
        if key not in SETTING_NAMES or key in ("algorithm", "crossover", "mutation", "seed"):
            raise argparse.ArgumentTypeError(f"cell {text!r}: {key!r} is not a search setting a cell can change")
        settings.append((key, setting_value(value)))
    return (*parts[:3], tuple(settings)) if settings else tuple(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--cells", nargs="+", type=parse_cell, metavar="ALGORITHM,CROSSOVER,MUTATION[,KEY=VALUE]",
                        help="cells to run (default: the default, then one factor changed at a time); KEY=VALUE "
                        "parts change a search setting of that cell (population=12, init_spread=0.05, ...)")
    parser.add_argument("--seeds", type=positive_int, default=20, help="searches per cell (default 20)")
    parser.add_argument("--population", type=positive_int, default=DEFAULTS.population)
    parser.add_argument("--generations", type=positive_int, default=DEFAULTS.generations)
    parser.add_argument("--real", action="store_true", help="real DIP fits at the problem's settings")
    parser.add_argument("--size", type=positive_int, help="with --real: crop the problem's photo to SIZE px "
                        "(the same per-fit budget; targets from the run's own fits)")
    parser.add_argument("--fit-noise", type=non_negative_float, default=0.0, metavar="DB",
                        help="score every architecture at the surrogate's level plus Gaussian noise of this "
                        "std a fit, as a real fit's blind score varies (default 0: the recorded table)")
    parser.add_argument("--out", default="runs/effectiveness", help="folder of table.md, summary.json, figures")
    parser.add_argument("--folder", default=str(FOLDER), help="the recorded problems' files (default benchmarks/recorded)")
    parser.add_argument("--import", dest="modules", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (a file of your own operators or algorithms that registers them)")
    args = parser.parse_args(argv)
    if args.fit_noise and args.real:
        parser.error("--fit-noise models real fits' noise on the surrogate; real fits have their own")
    if args.size is not None and not args.real:
        parser.error("--size needs --real: the recorded problems hold one crop size each")
    for module in args.modules:
        sys.path.insert(0, ".")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            parser.exit(2, f"search_effectiveness.py: error: cannot import {module!r}: {exc}\n")
    args.cells = args.cells or grid()
    try:
        for cell in args.cells:  # refuse a bad name or setting before any search runs
            make_algorithm(cell[0], DEFAULTS.cxpb, DEFAULTS.mutpb, None)
            OPERATORS.entry(cell[1]), OPERATORS.entry(cell[2])
            SearchConfig(**cell_settings(cell))
        run(args)
    except UserError as exc:
        parser.exit(2, f"search_effectiveness.py: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
