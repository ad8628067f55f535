"""What each ``nasdip`` subcommand does (argument parsing lives in cli.py). Searches are built by
``compose.build_search`` and finished through ``api.SearchResult``, like the Python API's."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import sys
from pathlib import Path

import torch

from . import __version__
from .api import SearchResult
from .architecture import Architecture
from .compose import PRIOR_NAMES, RestoreConfig, SearchConfig, build_search, config_to_dict, part_label, start_run
from .errors import GenomeError, UserError
from .fitness import SELECTED_WITH
from .genome import GenomeSpec, classical_dip
from .hooks import FitProgress
from .image_io import save_image
from .problem import Inputs, build_task
from .registry import ALGORITHMS, OPERATORS, TASKS
from .restoration import Restoration, restore as restore_fits
from .runfolder import RunLock, clear_previous_run, prepare_run_dir, read_json, result_entry, write_json

log = logging.getLogger("nasdip")


def run(args: argparse.Namespace) -> int:
    return {"search": search, "restore": restore, "baseline": baseline, "list": list_registered,
            "report": report}[args.command](args)


def resume_hint(args: argparse.Namespace) -> str:
    """How to continue an interrupted search, for the interruption message."""
    run_dir = getattr(args, "run_dir_in_use", None)
    if getattr(args, "command", None) != "search" or run_dir is None:
        return ""
    return f"; continue it with: nasdip search --resume {run_dir}"


# -- from arguments to values -----------------------------------------------------------------------
def config_from_args(args: argparse.Namespace, cls):
    """A ``SearchConfig`` or ``RestoreConfig`` from parsed arguments (fields the parser has)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if cls is SearchConfig:
        values["seed_classical"] = not getattr(args, "no_classical_seed", False)
        if isinstance(values.get("init_prior"), list):  # files absolute, so that --resume elsewhere reads them
            values["init_prior"] = tuple(p if p in PRIOR_NAMES else os.path.abspath(p)
                                         for p in values["init_prior"])
    return cls(**values)


def task_from_args(args: argparse.Namespace, levels: int):
    """The task of ``--task`` with the options given for it; an option of another task is an error."""
    cls, given, inputs = task_parts(args)
    return build_task(cls, given, inputs, levels, args.seed)


def task_parts(args: argparse.Namespace) -> tuple[type, dict, Inputs]:
    """(task class, the options given for it, the input files) of ``--task``."""
    cls = TASKS.get(args.task)
    own = {o.name for o in cls.OPTIONS}
    given = {}
    for entry in TASKS.entries():
        for option in entry.obj.OPTIONS:
            if option.name in vars(args) and option.name not in given:
                if option.name not in own:
                    owners = [e.name for e in TASKS.entries() if any(o.name == option.name for o in e.obj.OPTIONS)]
                    raise UserError(f"{option.flag} applies to task {', '.join(owners)}, not {cls.name}")
                given[option.name] = getattr(args, option.name)
    inputs = Inputs(image=args.image, observed=args.observed, clean=args.clean, crop=args.crop)
    if args.crop is not None and args.crop < 0:
        raise UserError(f"--crop must be >= 0 (0 = no crop), got {args.crop}")
    return cls, given, inputs


def write_inputs(task, run_dir: Path) -> dict:
    """degraded.png (and clean.png when known); returns the degraded image's metrics."""
    save_image(task.preview(), run_dir / "degraded.png")
    if task.clean is None:
        return {}
    save_image(task.clean, run_dir / "clean.png")
    return task.quality(task.preview(), task.clean) if task.preview().shape == task.clean.shape else {}


def save_restoration(restoration: Restoration, run_dir: Path, label: str, picture: str) -> dict:
    save_image(restoration.image, run_dir / picture)
    return {"label": label, "picture": picture, **restoration.summary()}


def print_quality(label: str, summary: dict, degraded: dict) -> None:
    pooled = len(summary.get("search_fits") or ())
    if pooled:
        ensemble = f" (average of {summary['ensemble']} final fits and {pooled} search fits)"
    else:
        ensemble = f" (average of {summary['ensemble']} fits)" if summary.get("ensemble", 1) > 1 else ""
    if "psnr" in summary:
        base = f" (degraded {degraded['psnr']:.2f} dB)" if "psnr" in degraded else ""
        print(f"{label}{ensemble}: PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f}{base}")
    else:
        print(f"{label}{ensemble}: restored (no clean image given, so no PSNR)")


def environment() -> dict:
    return {"nasdip_deap": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.is_available(), "argv": sys.argv}


def check_applies(args: argparse.Namespace, config: SearchConfig, task) -> None:
    """Options given for something this run does not do are errors, not silently dropped."""
    given = set(getattr(args, "given_options", ()))
    if "holdout" in given and config.fitness != "blind":
        raise UserError("--holdout applies to blind fitness; this run uses reference fitness (give --fitness blind)")
    algorithm = ALGORITHMS.entry(str(config.algorithm).partition(":")[0]) if isinstance(config.algorithm, str) else None
    for name in ("cxpb", "mutpb"):
        if name in given and algorithm is not None and name not in algorithm.params:
            raise UserError(f"--{name} does not apply to algorithm {algorithm.name!r} (its parameters: "
                            f"{', '.join(sorted(algorithm.params)) or 'none'})")
    if "cost" in given and algorithm is not None and not algorithm.obj.multi_objective:
        raise UserError(f"--cost is the second objective of a multi-objective algorithm (nsga2), not of "
                        f"{config.algorithm}")
    if "finalist_repeats" in given and not config.finalists:
        raise UserError("--finalist-repeats applies with --finalists N")
    if "final_holdout" in given and config.fitness != "blind":
        raise UserError("--final-holdout applies to blind fitness; this run uses reference fitness")


# -- search ---------------------------------------------------------------------------------------
def search(args) -> int:
    from . import cache, checkpoint, hooks, resume

    original, state, resuming = args, None, bool(getattr(args, "resume", None))
    if resuming:  # the saved run as a whole, with the command line's run-time options; reads only
        definition, state = resume.resume_run(args)
    else:
        definition = resume.run_definition(args, config_from_args(args, SearchConfig), task_parts(args))
    config, task = resume.build_definition(definition)
    args.baseline_fit = definition["baseline_fit"]
    check_applies(args, config, task)
    run = build_search(config, task)  # checks the device, the parts and their parameters: nothing written yet
    evaluator = run.evaluator
    imported = cache.read_cache_files(args.cache, evaluator)
    if state is not None:
        resume.check_context(state, evaluator, Path(args.resume))
    run_dir = Path(args.resume) if resuming else prepare_run_dir(args.out, args.force, "search")
    with RunLock(run_dir):
        original.run_dir_in_use = str(run_dir)
        if resuming:
            degraded = resume.record_resume(run_dir, args, definition, state)  # the last check; then config.json notes it
            after = "before its first checkpoint" if state is None else f"after generation {state['generation']}"
            log.info("resuming %s %s (of %d generations)", run_dir, after, config.generations)
        else:
            removed = clear_previous_run(run_dir)
            if removed:
                log.info("--force: removed the previous run's %s from %s", ", ".join(removed), run_dir)
            degraded = write_inputs(task, run_dir)
            write_json(run_dir / "config.json", {
                "command": "search", "task": task.describe(), "image": args.image, "observed": args.observed,
                "clean": args.clean, "crop": args.crop, "size": list(task.output_size), "spec": run.spec.to_dict(),
                "fitness": evaluator.describe(), "algorithm": run.algorithm.describe(), "operators": run.operators,
                "population": config.population, "generations": config.generations, "seed": config.seed,
                "hof_size": config.hof_size, "seed_classical": config.seed_classical,
                "init_spread": config.init_spread, "init_prior": config_to_dict(config)["init_prior"],
                "ensemble": config.ensemble, "degraded": degraded,
                "environment": environment(), "arguments": resume.saved_settings(args, run_dir),
                "run": definition})
            log.info("search: task %s, selected with %s, %s, population %d, %d generations, %d iterations per "
                     "fit, candidates scored on %s -> %s", task.name, SELECTED_WITH[evaluator.settings.mode],
                     run.algorithm.name, config.population, config.generations, config.iterations,
                     _proxy_text(evaluator), run_dir)
            if evaluator.settings.mode == "reference":
                log.warning("reference fitness: the clean image selects the architectures (an oracle for "
                            "benchmarks); a restoration without ground truth uses the default, --fitness blind")
        run.hooks += [hooks.ResultsWriter(run_dir), cache.CacheFile(run_dir, evaluator.context),
                     checkpoint.CheckpointHook(run_dir, definition),
                     hooks.ProgressHook(quiet=args.quiet, generations=config.generations)]
        if state is not None:
            for name in ("evaluations.jsonl", "errors.jsonl"):
                cache.repair_jsonl_tail(run_dir / name)
        with start_run(run, config, state=state, run_dir=run_dir, imported=imported, resuming=resuming) as backend:
            log.info("evaluation backend: %s with %d worker(s)", backend.name, backend.workers)
            run.run()
            return finish_search(SearchResult(run, config, task), args, run_dir, degraded, backend.map)


def _proxy_text(evaluator) -> str:
    problems = evaluator.problems
    if len(problems) == 1 and problems[0] is evaluator.task:
        return "the whole image"
    h, w = problems[0].output_size
    what = f"a {w}x{h} px version of the image" if len(problems) == 1 else f"{len(problems)} problems of {w}x{h} px"
    return f"{what} (proxy {part_label(evaluator.proxy)})"


def finish_search(result: SearchResult, args, run_dir: Path, degraded: dict, map_fn) -> int:
    run, config = result.search, result.config
    best = run.best()
    arch = result.best
    log.info("best architecture: %s", arch.summary())
    rule = result.final_stop_rule()
    if rule == "heldout":
        log.info("final fits: a calibration fit of the whole image finds its held-out peak (up to %d steps)",
                 config.final_step_cap())
    elif rule == "cap":
        log.info("final fits: %s has no noise to overfit, so they train to the cap (%d steps)",
                 result.task.name, config.final_step_cap())
    steps, exact = result.final_iterations()
    if result.final_stop:
        log.info("held-out peak at step %d (calibration fit of %d steps, held-out PSNR %.2f dB)",
                 result.final_stop["steps"], result.final_stop["calibration_iterations"],
                 result.final_stop["heldout_psnr"])
    iterations = steps if exact else arch.iterations_within(steps)
    h, w = result.task.output_size
    log.info("final restoration: %d fit(s) of %d iterations on the whole %dx%d px image", config.ensemble,
             iterations, w, h)
    restoration = result.restore(iterations=iterations, map_fn=map_fn,
                                 progress=FitProgress(config.ensemble, "final fits", quiet=args.quiet))
    if restoration.search_fits:
        log.info("the final fits are averaged with the %d best search fits", len(restoration.search_fits))
    final = save_restoration(restoration, run_dir, "best found", "restored.png")
    totals = run.totals
    log.info("compute: %d fits, %d DIP iterations, %.1f fit seconds, %d cache hits, %d duplicates, %d varied again, "
             "%d failed", totals.fits, totals.iterations, totals.fit_seconds, totals.cache_hits, totals.duplicates,
             totals.revaried, totals.failures)
    best_json = {**result_entry(run, best), "spec": run.spec.to_dict(), "task": result.task.describe(),
                 "fitness_mode": run.evaluator.settings.mode,
                 "selected_with": SELECTED_WITH[run.evaluator.settings.mode], "final": final,
                 "psnr": final.get("psnr"), "ssim": final.get("ssim"), "degraded_psnr": degraded.get("psnr"),
                 "compute": {**dataclasses.asdict(totals), "fit_seconds": round(totals.fit_seconds, 3),
                             "final_iterations": restoration.iterations * restoration.ensemble,
                             "calibration_iterations": (result.final_stop or {}).get("calibration_iterations", 0),
                             "final_seconds": round(restoration.seconds, 3)},
                 "baseline": classical_baseline(result, args, run_dir, arch, final, map_fn),
                 "finalists": run.finalist_table(),
                 "final_stop": ({**result.final_stop, "final_steps": restoration.iterations} if result.final_stop
                                else {"rule": rule, "steps": restoration.iterations})}
    write_json(run_dir / "best.json", best_json)
    print(f"best: {arch.summary()}")
    print_quality("best found", final, degraded)
    print(f"report: {write_report(run_dir)}")
    varying = config.fidelity != "full" or config.early_stop is not None or config.evolve_iterations
    print(f"results in {run_dir} (search fits: {'up to ' if varying else ''}{config.iterations} iterations"
          f"{'' if varying else ' each'}; final fits: {restoration.iterations} iterations each)")
    return 0


def classical_baseline(result: SearchResult, args, run_dir: Path, best_arch: Architecture, best_final: dict,
                       map_fn) -> dict | None:
    """Classical DIP for the report. With ``--baseline-fit``: final fits with the best's budget
    (baseline.png). Otherwise its search fit's score from the cache (it is individual 0 of the first
    population unless ``--no-classical-seed``), without a picture; when the best *is* classical DIP,
    the best's final fit. None when the run never scored it."""
    run = result.search
    arch = run.spec.decode(run.spec.encode(classical_dip(run.spec.levels)))  # as the genome encodes it
    if arch == best_arch:
        own = {k: v for k, v in best_final.items() if k not in ("search_fits", "final_fits")}
        if best_final.get("search_fits"):  # restored.png averages search fits in too: the final fits' own scores
            own.update(best_final["final_fits"], picture=None)
        return {**own, "label": "classical DIP", "source": "final fit (it is the best found)"}
    record = run.cache.get(run.evaluator.cache_key(arch.key()))
    if getattr(args, "baseline_fit", False):
        restoration = result.restore(architecture=arch, iterations=best_final["iterations"], map_fn=map_fn,
                                     progress=FitProgress(result.config.ensemble, "classical DIP fits",
                                                          quiet=getattr(args, "quiet", False)))
        return {**save_restoration(restoration, run_dir, "classical DIP", "baseline.png"), "source": "final fit"}
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
def load_genome(path: str) -> tuple[GenomeSpec | None, list[int]]:
    """bits and spec (None when the file has none) from best.json, a hall-of-fame/Pareto list (first
    entry) or a bare bit list."""
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
        spec = GenomeSpec.from_dict(spec_data) if isinstance(spec_data, dict) else None
    except (TypeError, ValueError) as exc:
        raise GenomeError(f"genome file {path!r}: bad 'spec' entry ({exc})") from None
    return spec, bits


def restore(args) -> int:
    spec, bits = load_genome(args.genome)
    if spec is not None and args.levels is not None and args.levels != spec.levels:
        raise UserError(f"--levels {args.levels} does not apply: the genome in {args.genome!r} has {spec.levels} "
                        f"levels (leave --levels out)")
    spec = spec or GenomeSpec(levels=args.levels or 5)
    try:
        spec.check_bits(bits)
    except GenomeError as exc:
        raise GenomeError(f"genome file {args.genome!r}: {exc}") from None
    return restore_with(spec.decode(bits), spec.levels, args, "restore", "restored")


def baseline(args) -> int:
    return restore_with(classical_dip(args.levels), args.levels, args, "baseline", "classical DIP")


def restore_with(arch: Architecture, levels: int, args, command: str, label: str) -> int:
    config = config_from_args(args, RestoreConfig)
    task = task_from_args(args, levels)
    runner = config.runner()
    run_dir = prepare_run_dir(args.out, args.force, command)
    with RunLock(run_dir):
        clear_previous_run(run_dir)
        degraded = write_inputs(task, run_dir)
        iterations = arch.iterations_within(config.iterations)
        log.info("%s: %s on task %s, %d fit(s) of %d iterations -> %s", command, arch.summary(), task.name,
                 config.ensemble, iterations, run_dir)
        restoration = restore_fits(arch, task, runner, iterations,
                                   run_seed=config.seed, ensemble=config.ensemble,
                                   progress=FitProgress(config.ensemble, f"{command} fits", quiet=args.quiet))
        summary = save_restoration(restoration, run_dir, label, "restored.png")
        write_json(run_dir / "summary.json", {"command": command, "task": task.describe(), "image": args.image,
                                               "observed": args.observed, "crop": args.crop,
                                               "architecture": arch.to_dict(), "degraded": degraded,
                                               "result": summary, "environment": environment()})
    print_quality(label, summary, degraded)
    fits = "1 fit" if config.ensemble == 1 else f"{config.ensemble} fits"
    print(f"results in {run_dir} ({fits} of {restoration.iterations} iterations each)")
    return 0


# -- list -----------------------------------------------------------------------------------------
def list_registered(args) -> int:
    from .backends import BACKENDS
    from .fidelity import FIDELITIES
    from .proxy import PROXIES

    registries = (("tasks", TASKS), ("operators", OPERATORS), ("algorithms", ALGORITHMS), ("fidelities", FIDELITIES),
                  ("proxies", PROXIES), ("backends", BACKENDS))
    width = max([16] + [len(name) for _, registry in registries for name in registry.names()])
    for title, registry in registries:
        print(f"{title}:")
        for entry in registry.entries():
            kind = f"[{entry.kind}] " if entry.kind else ""
            print(f"  {entry.name:<{width}} {kind}{entry.summary}")
            for option in getattr(entry.obj, "OPTIONS", ()) if registry is TASKS else ():
                default = f" (default {option.default})" if option.default is not None else ""
                print(f"  {'':<{width}}   {option.flag}: {option.help}{default}")
        for name, error in registry.plugin_errors.items():
            print(f"  {name:<{width}} (plugin failed to load: {error})")
    return 0
