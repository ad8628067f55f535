"""Resuming a run: its saved definition, as a whole, with the command line's run-time options.

A run folder keeps the run's definition (the whole ``SearchConfig``, the task and its input files) in
``config.json`` (``run``; the parsed command line beside it, ``arguments``, for the report) and, after
every generation, in a checkpoint (see ``checkpoint.py``). ``--resume RUN`` continues from the checkpoint, or,
when the run was stopped before its first checkpoint, starts it again from its saved settings with the
evaluations it already made (``cache.jsonl``), which then count as this run's own fits.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .checkpoint import CHECKPOINT_NAME, read_checkpoint
from .errors import UserError
from .runfolder import read_json, write_json

# options that may be given again on --resume with a new value: they change how the run is shown or
# where it runs, or (generations) extend it, never what it computes
RUNTIME_OPTIONS = frozenset({"quiet", "verbose", "device", "generations", "cache", "resume", "force", "out",
                             "backend", "workers", "scheduler", "given_options"})
PATH_OPTIONS = ("image", "observed", "clean")


# -- saved settings -------------------------------------------------------------------------------
def saved_settings(args: argparse.Namespace, run_dir: Path) -> dict:
    """The parsed command line as JSON-able data, with file paths made absolute so that a resumed
    run finds its images from any working directory."""
    settings = {k: v for k, v in vars(args).items() if k not in ("resume", "given_options")}
    for name in PATH_OPTIONS + file_options():
        if settings.get(name):
            settings[name] = os.path.abspath(settings[name])
    if settings.get("cache"):
        settings["cache"] = [os.path.abspath(p) for p in settings["cache"]]
    settings["out"] = os.path.abspath(run_dir)
    return settings


def file_options() -> tuple[str, ...]:
    """Task options that name files (an inpainting mask): saved as absolute paths like the images."""
    from .registry import TASKS

    return tuple(sorted({o.name for e in TASKS.entries() for o in e.obj.OPTIONS if o.file}))


def _flag(dest: str) -> str:
    return "--" + dest.rstrip("_").replace("_", "-")


def _same(name: str, given, saved) -> bool:
    if name in PATH_OPTIONS and given and saved:
        return os.path.abspath(given) == os.path.abspath(saved)
    return given == saved


# -- the run as a whole -----------------------------------------------------------------------------
def run_definition(args: argparse.Namespace, config, parts: tuple) -> dict:
    """What a search computes, as JSON data saved in config.json (``run``) and in every checkpoint: the
    whole ``SearchConfig`` (``compose.config_to_dict``), the task with its options and the input files
    (absolute paths), and ``--baseline-fit``. ``parts`` is ``commands.task_parts(args)``."""
    from .compose import config_to_dict

    cls, options, inputs = parts
    files = set(file_options())
    return {"config": config_to_dict(config), "task": cls.name,
            "task_options": {k: os.path.abspath(v) if k in files and v else v for k, v in options.items()},
            "inputs": {"image": _absolute(inputs.image), "observed": _absolute(inputs.observed),
                       "clean": _absolute(inputs.clean), "crop": inputs.crop},
            "baseline_fit": bool(getattr(args, "baseline_fit", False))}


def _absolute(path):
    return os.path.abspath(path) if path else path


def build_definition(definition: dict):
    """(``SearchConfig``, task) of a run definition: the config rebuilt whole and checked as a new one
    is, the task read from its files as the CLI reads them."""
    from .compose import config_from_dict
    from .problem import Inputs, build_task
    from .registry import TASKS

    config = config_from_dict(definition["config"])
    task = build_task(TASKS.get(definition["task"]), dict(definition["task_options"]),
                      Inputs(**definition["inputs"]), config.levels, config.seed)
    return config, task


def _legacy_definition(saved: dict) -> dict:
    """The run definition of a run saved before definitions were (its parsed command line only), made the
    way a new run's is, so both resume through one path."""
    from .commands import config_from_args, task_parts
    from .compose import SearchConfig, config_fields

    values = {**config_fields(), "no_classical_seed": False, "baseline_fit": False, "task": "denoise",
              "image": None, "observed": None, "clean": None, "crop": None, **saved}
    if values.get("fitness") == "auto":  # a run of version 0.2, where auto meant the oracle when a clean image was known
        values["fitness"] = "blind" if values.get("observed") and not values.get("clean") else "reference"
    args = argparse.Namespace(**values)
    return run_definition(args, config_from_args(args, SearchConfig), task_parts(args))


def _saved_value(name: str, definition: dict):
    """The value option ``name`` (an argparse dest) had in the saved run, or KeyError."""
    if name == "no_classical_seed":
        return not definition["config"]["seed_classical"]
    for part in (definition["config"], definition["inputs"], definition["task_options"]):
        if name in part:
            return part[name]
    if name in ("task", "baseline_fit"):
        return definition[name]
    raise KeyError(name)


def resume_run(args: argparse.Namespace) -> tuple[dict, dict | None]:
    """The run definition of ``args.resume`` (from its checkpoint, or from config.json when it was stopped
    before its first checkpoint) and the checkpoint's state (None without one). The definition is the
    saved one as a whole; only the run-time options given on this command line replace their saved
    values (``--device``, ``--backend``, ``--workers``, ``--scheduler``, and ``--generations``, which may
    extend the run; ``--quiet``, ``--verbose`` and ``--cache`` are this command's own). Any other option
    given (argparse defaults do not count) must equal its saved value. Nothing is written."""
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UserError(f"cannot resume: {str(run_dir)!r} is not a run folder")
    if (run_dir / CHECKPOINT_NAME).exists():
        state = read_checkpoint(run_dir / CHECKPOINT_NAME)
        saved = state["settings"]
    else:
        state, saved = None, saved_run(run_dir)
    definition = saved if "config" in saved else _legacy_definition(saved)
    given = set(getattr(args, "given_options", ()) or ())
    conflicts = []
    for name in sorted(given - RUNTIME_OPTIONS - {"command"}):
        value = getattr(args, name, None)
        try:
            before = _saved_value(name, definition)
        except KeyError:
            continue
        if not _same(name, value, before):
            conflicts.append(f"{_flag(name)} {value!r} (the run used {before!r})")
    if "out" in given and args.out and os.path.abspath(args.out) != os.path.abspath(run_dir):
        conflicts.append(f"--out {args.out!r} (resuming writes into {str(run_dir)!r})")
    if conflicts:
        raise UserError(f"cannot resume {str(run_dir)!r}: conflicting option(s) {'; '.join(conflicts)}; "
                        f"leave them out to use the run's saved settings")
    runtime = {name: getattr(args, name) for name in ("device", "generations", "backend", "workers", "scheduler")
               if name in given}
    if "backend" in given:  # a saved worker count or scheduler belongs to the saved backend
        runtime.setdefault("workers", None)
        runtime.setdefault("scheduler", None)
    definition = {**definition, "config": {**definition["config"], **runtime}}
    return definition, state


def check_context(state: dict, evaluator, run_dir: Path) -> None:
    """The rebuilt evaluator must score exactly as the checkpointed run did (same image, task, settings,
    and the same kind of device: a CPU fit and a CUDA fit of one seed differ)."""
    if state["context"] == evaluator.context:
        return
    from .engine import resolve_device

    records = list(state.get("cache", {}).values())
    before = {str(r.get("device") or "cpu").split(":")[0] for r in records if r.get("device")}
    now = resolve_device(evaluator.runner.device).type
    if before and now not in before:
        raise UserError(f"cannot resume {str(run_dir)!r} on {now}: its fits ran on {', '.join(sorted(before))}, "
                        f"and fits on another kind of device score differently; resume it with --device "
                        f"{sorted(before)[0]}")
    raise UserError(f"cannot resume {str(run_dir)!r}: the image, task or fitness settings rebuilt from the "
                    f"saved settings differ from the run's (context {evaluator.context} != "
                    f"{state['context']}); was an input image changed?")


def record_resume(run_dir: Path, args: argparse.Namespace, definition: dict, state: dict | None) -> dict:
    """Note the resume in config.json (its generations, run definition and the command line's run-time
    options follow an extended run, so the report agrees); returns the degraded image's metrics saved
    there. Reads before it writes."""
    config = read_json(run_dir / "config.json", "run settings")
    if not isinstance(config, dict):
        raise UserError(f"cannot resume: {str(run_dir / 'config.json')!r} is not a run's settings")
    given = set(getattr(args, "given_options", []) or [])
    config["generations"] = definition["config"]["generations"]
    config["run"] = definition
    config["arguments"] = {**(config.get("arguments") or {}),
                           **{k: definition["config"][k] for k in sorted(given & set(definition["config"]))
                              if k in RUNTIME_OPTIONS}}
    config.setdefault("resumed", []).append({"after_generation": None if state is None else state["generation"],
                                             "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                             "options": sorted(given)})
    write_json(run_dir / "config.json", config)
    return config.get("degraded") or {}


def saved_run(run_dir: Path) -> dict:
    """The settings in ``config.json`` of a run stopped before its first checkpoint: its run definition,
    or, for a run saved before definitions were, its parsed command line."""
    path = run_dir / "config.json"
    if not path.exists():
        raise UserError(f"cannot resume {str(run_dir)!r}: it has neither a checkpoint nor a config.json "
                        f"(is it a run folder of `nasdip search`?)")
    config = read_json(path, "run settings")
    if isinstance(config, dict) and isinstance(config.get("run"), dict) and "config" in config["run"]:
        return config["run"]
    saved = config.get("arguments") if isinstance(config, dict) else None
    if not isinstance(saved, dict) or saved.get("command") not in (None, "search"):
        raise UserError(f"cannot resume: {str(path)!r} holds no settings of a search")
    return saved
