"""Resuming a run: its saved settings, merged with what the command line gives again.

A run folder keeps the parsed command line in ``config.json`` (``arguments``) and, after every
generation, a checkpoint (see ``checkpoint.py``). ``--resume RUN`` continues from the checkpoint, or,
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


def resume_arguments(args: argparse.Namespace) -> tuple[argparse.Namespace, dict | None]:
    """Load ``RUN_DIR/checkpoint.pkl`` (or, without one, the run's ``config.json``) and merge the run's
    saved settings with the command line; the state is None when there is no checkpoint yet.

    Options given explicitly (``args.given_options``; argparse defaults do not count) must equal the
    saved ones, except the run-time options (``--quiet``, ``--verbose``, ``--device``, ``--backend``,
    ``--workers``, ``--scheduler``, ``--cache``, and ``--generations``, which may extend the run). Nothing is written.
    """
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UserError(f"cannot resume: {str(run_dir)!r} is not a run folder")
    if (run_dir / CHECKPOINT_NAME).exists():
        state = read_checkpoint(run_dir / CHECKPOINT_NAME)
        saved = state["settings"]
    else:
        state, saved = None, saved_arguments(run_dir)
    given = set(getattr(args, "given_options", ()) or ())
    conflicts = []
    for name in sorted(given - RUNTIME_OPTIONS - {"command"}):
        value = getattr(args, name, None)
        if name in saved and not _same(name, value, saved[name]):
            conflicts.append(f"{_flag(name)} {value!r} (the run used {saved[name]!r})")
    if "out" in given and args.out and os.path.abspath(args.out) != os.path.abspath(run_dir):
        conflicts.append(f"--out {args.out!r} (resuming writes into {str(run_dir)!r})")
    if conflicts:
        raise UserError(f"cannot resume {str(run_dir)!r}: conflicting option(s) {'; '.join(conflicts)}; "
                        f"leave them out to use the run's saved settings")
    merged = {**vars(args), **saved}
    if merged.get("fitness") == "auto":  # a run of version 0.2, where auto meant the oracle when a clean image was known
        merged["fitness"] = "blind" if merged.get("observed") and not merged.get("clean") else "reference"
    for name in ("quiet", "verbose", "device", "generations", "backend", "workers", "scheduler"):
        if name in given:
            merged[name] = getattr(args, name)
    for name in ("workers", "scheduler"):  # a saved worker count or scheduler belongs to the saved backend
        if "backend" in given and name not in given:
            merged[name] = getattr(args, name, None)
    merged.update(cache=getattr(args, "cache", None), resume=str(run_dir), out=str(run_dir), force=True,
                  given_options=sorted(given))
    return argparse.Namespace(**merged), state


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


def record_resume(run_dir: Path, args: argparse.Namespace, state: dict | None) -> dict:
    """Note the resume in config.json (its generations and arguments follow an extended run, so the
    report agrees); returns the degraded image's metrics saved there. Reads before it writes."""
    config = read_json(run_dir / "config.json", "run settings")
    if not isinstance(config, dict):
        raise UserError(f"cannot resume: {str(run_dir / 'config.json')!r} is not a run's settings")
    config["generations"] = args.generations
    config["arguments"] = saved_settings(args, run_dir)
    config.setdefault("resumed", []).append({"after_generation": None if state is None else state["generation"],
                                             "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                             "options": list(getattr(args, "given_options", []))})
    write_json(run_dir / "config.json", config)
    return config.get("degraded") or {}




def saved_arguments(run_dir: Path) -> dict:
    """The settings in ``config.json`` of a run stopped before its first checkpoint."""
    path = run_dir / "config.json"
    if not path.exists():
        raise UserError(f"cannot resume {str(run_dir)!r}: it has neither a checkpoint nor a config.json "
                        f"(is it a run folder of `nasdip search`?)")
    config = read_json(path, "run settings")
    saved = config.get("arguments") if isinstance(config, dict) else None
    if not isinstance(saved, dict) or saved.get("command") not in (None, "search"):
        raise UserError(f"cannot resume: {str(path)!r} holds no settings of a search")
    return saved
