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
from .backends import check_backend, make_backend, torch_threads
from .errors import GenomeError, UserError
from .fidelity import make_fidelity, patience_for
from .finalists import finalist_table, make_finalists
from .fitness import Evaluator, FitnessSettings, derive_seed, final_budget
from .genome import GenomeSpec, classical_dip
from .image_io import save_image
from .problem import build_task
from .registry import ALGORITHMS, OPERATORS, TASKS
from .runfolder import prepare_run_dir, read_json, write_json

log = logging.getLogger("nasdip")


def run(args: argparse.Namespace) -> int:
    return {"search": search, "restore": restore, "baseline": baseline, "list": list_registered,
            "report": report}[args.command](args)


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


def final_fit(arch: Architecture, task, iterations: int, args, run_dir: Path, label: str,
              picture: str = "restored.png", exact: bool = False) -> dict:
    """Fit ``arch`` on all observed pixels and write ``picture``; returns a JSON-able summary.
    ``iterations`` is a budget: an architecture that evolved its share of it trains for that share
    (``exact``: ``iterations`` steps, already chosen for this architecture)."""
    from .fit import fit

    iterations = iterations if exact else arch.iterations_within(iterations)
    seed = derive_seed(args.seed, arch.key())  # the seed its search fit used, so reference scores match
    with torch_threads(getattr(args, "threads", None)):  # and the search's thread count (CPU results depend on it)
        result = fit(arch, task, iterations, device=args.device, seed=seed)
    save_image(result.restored, run_dir / picture)
    summary = {"label": label, "picture": picture, "iterations": result.iterations, "seconds": round(result.seconds, 3),
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
    from . import checkpoint
    from .operators import bind_operator  # noqa: F401  (package dir operators/)
    from .search import make_toolbox

    state = None
    if getattr(args, "resume", None):
        args, state = checkpoint.resume_arguments(args)  # reads only; the run folder is left as it is
    spec = make_spec(args)
    algorithm_cls = ALGORITHMS.get(args.algorithm)
    mode = args.fitness
    task = build_task(args, spec.levels, args.seed)
    if mode == "auto":
        mode = "reference" if task.clean is not None else "blind"
    objectives = ("quality", args.cost) if algorithm_cls.multi_objective else ("quality",)
    settings = FitnessSettings(mode=mode, iterations=args.iterations, holdout=args.holdout, seed=args.seed,
                               device=args.device, objectives=objectives, threads=args.threads,
                               timeout=args.eval_timeout, fidelity=getattr(args, "fidelity", "full"),
                               early_stop=patience_for(getattr(args, "fidelity", "full"),
                                                       getattr(args, "early_stop", None)),
                               precision=getattr(args, "precision", "fp32"),
                               channels_last=getattr(args, "channels_last", False),
                               cuda_graph=getattr(args, "cuda_graph", True))
    make_fidelity(settings.fidelity)  # check the choice before any file is written
    check_backend(args.backend, args.workers)
    evaluator = Evaluator(spec, task, settings)
    algorithm = algorithm_cls(cxpb=args.cxpb, mutpb=args.mutpb, lambda_=args.lambda_)
    toolbox = make_toolbox(spec, evaluator, len(objectives))
    operators = {
        "crossover": bind_operator(toolbox, "mate", args.crossover, "crossover", spec),
        "mutation": bind_operator(toolbox, "mutate", args.mutation, "mutation", spec),
        "selection": bind_operator(toolbox, "select", args.selection or algorithm_cls.default_selection,
                                   "selection", spec),
    }
    algorithm_cls.check_selection(operators["selection"]["name"], toolbox.select.func)
    imported = checkpoint.read_cache_files(args.cache, evaluator)
    if state is not None:
        run_dir = Path(args.resume)
        checkpoint.check_context(state, evaluator, run_dir)
        degraded = checkpoint.record_resume(run_dir, args, state)  # the last check; then config.json notes it
        log.info("resuming %s after generation %d (of %d)", run_dir, state["generation"], args.generations)
        return run_search(args, run_dir, degraded, state, imported, task, evaluator, toolbox, algorithm)
    run_dir = prepare_run_dir(args.out, args.force, "search")
    degraded = write_inputs(task, run_dir)
    config = {"command": "search", "task": task.describe(), "image": args.image, "observed": args.observed,
              "clean": args.clean, "crop": args.crop, "spec": spec.to_dict(), "fitness": evaluator.describe(),
              "algorithm": algorithm.describe(), "operators": operators, "population": args.population,
              "generations": args.generations, "seed": args.seed, "hof_size": args.hof_size,
              "seed_classical": not args.no_classical_seed, "init_spread": args.init_spread, "degraded": degraded,
              "environment": environment(),
              "arguments": checkpoint.saved_settings(args, run_dir)}
    write_json(run_dir / "config.json", config)
    log.info("search: task %s, %s fitness, %s, population %d, %d generations, %d iterations per fit -> %s",
             task.name, mode, algorithm.name, args.population, args.generations, args.iterations, run_dir)
    return run_search(args, run_dir, degraded, state, imported, task, evaluator, toolbox, algorithm)


def run_search(args, run_dir: Path, degraded: dict, state, imported: dict, task, evaluator, toolbox,
               algorithm) -> int:
    """Run (or, given a checkpoint ``state``, continue) the search with its hooks, then finish it."""
    from . import checkpoint, hooks
    from .search import Search, max_generations

    run = Search(spec=evaluator.spec, evaluator=evaluator, toolbox=toolbox, algorithm=algorithm,
                 population_size=args.population, termination=max_generations(args.generations), seed=args.seed,
                 archive_size=args.hof_size, seed_classical=not args.no_classical_seed,
                 init_spread=getattr(args, "init_spread", None),
                 finalists=make_finalists(getattr(args, "finalists", 0) or 0,  # settings saved before --finalists
                                          getattr(args, "finalist_repeats", 2)),
                 fidelity=make_fidelity(evaluator.settings.fidelity),
                 hooks=[hooks.ResultsWriter(run_dir), checkpoint.CacheFile(run_dir, evaluator.context),
                        checkpoint.CheckpointHook(run_dir, checkpoint.saved_settings(args, run_dir)),
                        hooks.ProgressHook(quiet=args.quiet, generations=args.generations)])
    if state is not None:
        for name in ("evaluations.jsonl", "errors.jsonl"):
            checkpoint.repair_jsonl_tail(run_dir / name)
        checkpoint.restore(run, state, rng=False)
    checkpoint.preload_cache(run, run_dir, imported)
    backend = make_backend(args.backend, args.workers, args.threads, args.eval_timeout, lost=evaluator.lost_record,
                           device=args.device)
    log.info("evaluation backend: %s with %d worker(s)", backend.name, backend.workers)
    toolbox.register("map", backend.map)
    if state is not None:
        checkpoint.set_rng_states(state["rng"])  # last: nothing may draw between here and the next generation
    try:
        run.run()
    finally:
        backend.close()
    return finish_search(run, task, args, run_dir, degraded)


def finish_search(run, task, args, run_dir: Path, degraded: dict) -> int:
    from .runfolder import result_entry

    best = run.best()
    arch = run.spec.decode(best)
    log.info("best architecture: %s", arch.summary())
    iterations, exact = final_budget(run.record_for(best), args.iterations, args.final_iterations)
    final = final_fit(arch, task, iterations, args, run_dir, "best found", exact=exact)
    entry = result_entry(run, best)
    totals = run.totals
    log.info("compute: %d fits, %d DIP iterations, %.1f fit seconds, %d cache hits, %d duplicates, %d failed",
             totals.fits, totals.iterations, totals.fit_seconds, totals.cache_hits, totals.duplicates,
             totals.failures)
    best_json = {**entry, "spec": run.spec.to_dict(), "task": task.describe(),
                 "fitness_mode": run.evaluator.settings.mode, "final": final,
                 "psnr": final.get("psnr"), "ssim": final.get("ssim"), "degraded_psnr": degraded.get("psnr"),
                 "compute": {"fits": totals.fits, "iterations": totals.iterations,
                             "fit_seconds": round(totals.fit_seconds, 3), "cache_hits": totals.cache_hits,
                             "failures": totals.failures, "duplicates": totals.duplicates},
                 "baseline": classical_baseline(run, task, args, run_dir, arch, final),
                 "finalists": finalist_table(run)}
    write_json(run_dir / "best.json", best_json)
    print(f"best: {arch.summary()}")
    print_quality("best found", final, degraded)
    print(f"report: {write_report(run_dir)}")
    print(f"results in {run_dir}")
    return 0


def classical_baseline(run, task, args, run_dir: Path, best_arch: Architecture, best_final: dict) -> dict | None:
    """Classical DIP for the report. With ``--baseline-fit``: a final fit with the best's budget
    (baseline.png). Otherwise its search fit's score from the cache (it is individual 0 of the first
    population unless ``--no-classical-seed``), without a picture; when the best *is* classical DIP,
    the best's final fit. None when the run never scored it."""
    arch = run.spec.decode(run.spec.encode(classical_dip(run.spec.levels)))  # as the genome encodes it
    if arch == best_arch:
        return {**best_final, "label": "classical DIP", "source": "final fit (it is the best found)"}
    record = run.cache.get(run.evaluator.cache_key(arch.key()))
    if getattr(args, "baseline_fit", False):
        iterations, exact = final_budget(record, args.iterations, args.final_iterations)
        summary = final_fit(arch, task, iterations, args, run_dir, "classical DIP", picture="baseline.png",
                            exact=exact)
        return {**summary, "source": "final fit"}
    if record is None:
        return None
    return {"label": "classical DIP", "source": "search fit", "picture": None, "iterations": record["iterations"],
            "seconds": record["seconds"], "device": record["device"], "fitness": record["fitness"],
            **record["metrics"]}


def write_report(run_dir: Path) -> Path:
    from .report import write_report as write

    return write(run_dir)


# -- report ---------------------------------------------------------------------------------------
def report(args) -> int:
    path = write_report(Path(args.run_dir))
    print(f"report: {path}")
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
    registries = (("tasks", TASKS), ("operators", OPERATORS), ("algorithms", ALGORITHMS))
    width = max([16] + [len(name) for _, registry in registries for name in registry.names()])
    for title, registry in registries:
        print(f"{title}:")
        for entry in registry.entries():
            kind = f"[{entry.kind}] " if entry.kind else ""
            print(f"  {entry.name:<{width}} {kind}{entry.summary}")
        for name, error in registry.plugin_errors.items():
            print(f"  {name:<{width}} (plugin failed to load: {error})")
    return 0
