"""Small shared builders for the tests: a tiny search is built exactly as the CLI and the API build
one (``compose.build_search``), only with tiny settings."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nasdip_deap.compose import SearchConfig, build_search

TINY_SEARCH = {"iterations": 6, "device": "cpu", "population": 4, "generations": 2, "hof_size": 3, "proxy": "none",
               "levels": 3}


def tiny_config(**overrides) -> SearchConfig:
    return SearchConfig(**{**TINY_SEARCH, **overrides})


def tiny_search(task, hooks=(), **overrides):
    """A real search (real evaluator, real DEAP loop) with tiny settings; ``overrides`` are config fields."""
    return build_search(tiny_config(**overrides), task, hooks)


def evaluator_for(task, **overrides):
    """The evaluator a tiny search of ``task`` would use (built by ``build_search``, as every evaluator is)."""
    return tiny_search(task, **overrides).evaluator


def searched(task, **settings):
    """The finished ``Search`` of ``nasdip_deap.search(task, **settings)`` (the public API), for tests that
    look at the loop's state."""
    import nasdip_deap

    return nasdip_deap.search(task, **settings).search


def read_jsonl_safely(path: Path) -> list[dict]:
    """Lines of a JSONL file that may be being written: a half-written last line is skipped."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def kill_after_checkpoint(argv: list[str], out: Path, env: dict, generation: int = 1,
                          timeout: float = 300) -> tuple[int | None, int | None, str]:
    """Run ``python -m nasdip_deap *argv --out out`` and SIGKILL it as soon as its checkpoint holds
    ``generation``; returns (the generation seen, the return code, stderr). The checkpoint is written
    atomically, so it is never read half-written."""
    from nasdip_deap import checkpoint

    proc = subprocess.Popen([sys.executable, "-m", "nasdip_deap", *argv, "--out", str(out)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt, seen = out / checkpoint.CHECKPOINT_NAME, None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists():
                seen = checkpoint.read_checkpoint(ckpt)["generation"]
                if seen >= generation:
                    break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        stderr = proc.communicate()[1].decode()
    return seen, proc.returncode, stderr


def load_script(path: Path, name: str):
    """A benchmark script (not a package module) loaded as module ``name``, as its tests call it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
