"""What each ``nasdip`` subcommand does (argument parsing lives in cli.py)."""
from __future__ import annotations

import argparse
import logging
import platform
import sys
from pathlib import Path

import torch

from . import __version__, metrics
from .architecture import Architecture
from .errors import GenomeError, UserError
from .fitness import Evaluator, FitnessSettings, derive_seed
from .genome import GenomeSpec, classical_dip
from .image_io import save_image
from .problem import build_task
from .registry import ALGORITHMS, OPERATORS, TASKS
from .runfolder import prepare_run_dir, read_json, write_json

log = logging.getLogger("nasdip")


def run(args: argparse.Namespace) -> int:
    return {"search": search, "restore": restore, "baseline": baseline, "list": list_registered}[args.command](args)


# -- shared pieces --------------------------------------------------------------------------------
def make_spec(args) -> GenomeSpec:
    return GenomeSpec(levels=args.levels, evolve_iterations=getattr(args, "evolve_iterations", False))


def write_inputs(task, run_dir: Path) -> dict:
    """degraded.png (and clean.png when known); returns the degraded image's metrics."""
    save_image(task.preview(), run_dir / "degraded.png")
    if task.clean is None:
        return {}
    save_image(task.clean, run_dir / "clean.png")
    return task.quality(task.preview(), task.clean) if task.preview().shape == task.clean.shape else {}


def final_fit(arch: Architecture, task, iterations: int, args, run_dir: Path, label: str) -> dict:
    """Fit ``arch`` on all observed pixels and write restored.png; returns a JSON-able summary."""
    from .fit import fit

    seed = derive_seed(args.seed, arch.key())  # the seed its search fit used, so reference scores match
    result = fit(arch, task, iterations, device=args.device, seed=seed)
    save_image(result.restored, run_dir / "restored.png")
    summary = {"label": label, "iterations": result.iterations, "seconds": round(result.seconds, 3),
               "device": result.device, "seed": seed, **result.metrics,
               "psnr_history": result.psnr_history, "loss_final": result.loss_history[-1]}
    return summary


def print_quality(label: str, summary: dict, degraded: dict) -> None:
    if "psnr" in summary:
        base = f" (degraded {degraded['psnr']:.2f} dB)" if "psnr" in degraded else ""
        print(f"{label}: PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f}{base}")
    else:
        print(f"{label}: restored (no clean image given, so no PSNR)")


def environment() -> dict:
    return {"nasdip_deap": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.is_available(), "argv": sys.argv}


# -- search ---------------------------------------------------------------------------------------
def search(args) -> int:
    from . import hooks
    from .operators import bind_operator  # noqa: F401  (package dir operators/)
    from .search import Search, make_toolbox, max_generations

    spec = make_spec(args)
    algorithm_cls = ALGORITHMS.get(args.algorithm)
    mode = args.fitness
    task = build_task(args, spec.levels, args.seed)
    if mode == "auto":
        mode = "reference" if task.clean is not None else "blind"
    objectives = ("quality", args.cost) if algorithm_cls.multi_objective else ("quality",)
    settings = FitnessSettings(mode=mode, iterations=args.iterations, holdout=args.holdout, seed=args.seed,
                               device=args.device, objectives=objectives)
    evaluator = Evaluator(spec, task, settings)
    algorithm = algorithm_cls(cxpb=args.cxpb, mutpb=args.mutpb, lambda_=args.lambda_)
    toolbox = make_toolbox(spec, evaluator, len(objectives))
    operators = {
        "crossover": bind_operator(toolbox, "mate", args.crossover, "crossover", spec),
        "mutation": bind_operator(toolbox, "mutate", args.mutation, "mutation", spec),
        "selection": bind_operator(toolbox, "select", args.selection or algorithm_cls.default_selection,
                                   "selection", spec),
    }
    run_dir = prepare_run_dir(args.out, args.force, "search")
    degraded = write_inputs(task, run_dir)
    config = {"command": "search", "task": task.describe(), "image": args.image, "observed": args.observed,
              "clean": args.clean, "crop": args.crop, "spec": spec.to_dict(), "fitness": evaluator.describe(),
              "algorithm": algorithm.describe(), "operators": operators, "population": args.population,
              "generations": args.generations, "seed": args.seed, "hof_size": args.hof_size,
              "seed_classical": not args.no_classical_seed, "degraded": degraded, "environment": environment()}
    write_json(run_dir / "config.json", config)
    log.info("search: task %s, %s fitness, %s, population %d, %d generations, %d iterations per fit -> %s",
             task.name, mode, algorithm.name, args.population, args.generations, args.iterations, run_dir)
    run = Search(spec=spec, evaluator=evaluator, toolbox=toolbox, algorithm=algorithm,
                 population_size=args.population, termination=max_generations(args.generations), seed=args.seed,
                 archive_size=args.hof_size, seed_classical=not args.no_classical_seed,
                 hooks=[hooks.ResultsWriter(run_dir), hooks.ProgressHook(quiet=args.quiet)])
    run.run()
    return finish_search(run, task, args, run_dir, degraded)


def finish_search(run, task, args, run_dir: Path, degraded: dict) -> int:
    from .runfolder import result_entry

    best = run.best()
    arch = run.spec.decode(best)
    log.info("best architecture: %s", arch.summary())
    final = final_fit(arch, task, args.final_iterations or args.iterations, args, run_dir, "best found")
    entry = result_entry(run, best)
    totals = run.totals
    best_json = {**entry, "spec": run.spec.to_dict(), "task": task.describe(),
                 "fitness_mode": run.evaluator.settings.mode, "final": final,
                 "psnr": final.get("psnr"), "ssim": final.get("ssim"), "degraded_psnr": degraded.get("psnr"),
                 "compute": {"fits": totals.fits, "iterations": totals.iterations,
                             "fit_seconds": round(totals.fit_seconds, 3), "cache_hits": totals.cache_hits,
                             "failures": totals.failures}}
    write_json(run_dir / "best.json", best_json)
    print(f"best: {arch.summary()}")
    print_quality("best found", final, degraded)
    print(f"results in {run_dir}")
    return 0


# -- restore / baseline ---------------------------------------------------------------------------
def load_genome(path: str, levels: int) -> tuple[GenomeSpec, list[int]]:
    """bits and spec from best.json, a hall-of-fame/Pareto list (first entry) or a bare bit list."""
    data = read_json(path, "genome file")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        if "bits" not in data:
            raise GenomeError(f"genome file {path!r} has no 'bits' entry")
        bits, spec_data = data["bits"], data.get("spec")
    else:
        bits, spec_data = data, None
    if not isinstance(bits, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in bits):
        raise GenomeError(f"genome file {path!r}: 'bits' must be a list of 0/1 integers")
    try:
        spec = GenomeSpec.from_dict(spec_data) if isinstance(spec_data, dict) else GenomeSpec(levels=levels)
    except (TypeError, ValueError) as exc:
        raise GenomeError(f"genome file {path!r}: bad 'spec' entry ({exc})") from None
    try:
        spec.check_bits(bits)
    except GenomeError as exc:
        raise GenomeError(f"genome file {path!r}: {exc}") from None
    return spec, bits


def restore(args) -> int:
    spec, bits = load_genome(args.genome, args.levels)
    return restore_with(spec.decode(bits), spec.levels, args, "restore", "restored")


def baseline(args) -> int:
    return restore_with(classical_dip(args.levels), args.levels, args, "baseline", "classical DIP")


def restore_with(arch: Architecture, levels: int, args, command: str, label: str) -> int:
    task = build_task(args, levels, args.seed)
    run_dir = prepare_run_dir(args.out, args.force, command)
    degraded = write_inputs(task, run_dir)
    log.info("%s: %s on task %s, %d iterations -> %s", command, arch.summary(), task.name, args.iterations, run_dir)
    summary = final_fit(arch, task, args.iterations, args, run_dir, label)
    write_json(run_dir / "summary.json", {"command": command, "task": task.describe(), "image": args.image,
                                           "observed": args.observed, "crop": args.crop,
                                           "architecture": arch.to_dict(), "degraded": degraded,
                                           "result": summary, "environment": environment()})
    print_quality(label, summary, degraded)
    print(f"results in {run_dir}")
    return 0


# -- list -----------------------------------------------------------------------------------------
def list_registered(args) -> int:
    for title, registry in (("tasks", TASKS), ("operators", OPERATORS), ("algorithms", ALGORITHMS)):
        print(f"{title}:")
        for entry in registry.entries():
            kind = f"[{entry.kind}] " if entry.kind else ""
            print(f"  {entry.name:<16} {kind}{entry.summary}")
        for name, error in registry.plugin_errors.items():
            print(f"  {name:<16} (plugin failed to load: {error})")
    return 0
