"""Shared fixtures: tiny problems, the optional shared data folder, installing test plugins."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# benchmark scripts import their shared modules (bench_args, bench_problems) from their own folder, which
# is on sys.path when a script runs; the tests that load a script by path need it there too
sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The standard DIP test images (../shared/data, or $NASDIP_DATA); skips when absent."""
    path = Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))
    if not (path / "F16_GT.png").exists():
        pytest.skip(f"shared test images not found at {path} (set NASDIP_DATA to their folder)")
    return path


def make_tiny_image() -> torch.Tensor:
    """A 32x32 RGB image with structure (smooth gradients and an edge), deterministic."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    img = torch.stack([x, y, ((x > 0.5) ^ (y > 0.5)).float() * 0.6 + 0.2])
    return img.clamp(0, 1)


@pytest.fixture
def tiny_image() -> torch.Tensor:
    return make_tiny_image()


@pytest.fixture
def write_png(tmp_path):
    """write_png(name, tensor) -> path of a PNG in tmp_path."""
    from nasdip_deap.image_io import save_image

    def write(name: str, img: torch.Tensor) -> Path:
        path = tmp_path / name
        save_image(img, path)
        return path

    return write


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m nasdip_deap ARGS`` in a subprocess (the real console entry, for smoke tests:
    exit codes, signals, entry-point plugins, SCOOP)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "nasdip_deap", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def call_main(main, args: list[str], command: list[str]) -> subprocess.CompletedProcess:
    """``main(args)`` in this process, ended as a process would be: its exit code (a returned one, or
    SystemExit's; 2 when SystemExit carries a message, which goes to stderr), stdout and stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args)) or 0
        except SystemExit as exc:  # argparse's own exits (--help, a bad flag), a script's one-line exits
            code = exc.code if isinstance(exc.code, int) else 2
            if isinstance(exc.code, str):
                print(exc.code, file=err)
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())


def run_main(*args: str) -> subprocess.CompletedProcess:
    """``nasdip ARGS`` in this process (``cli.main``), with its exit code, stdout and stderr: the same
    code path as the console script without the cost of a new interpreter importing torch."""
    from nasdip_deap.cli import main

    return call_main(main, list(args), ["nasdip", *args])


@pytest.fixture
def cli():
    """The CLI run in-process (see ``run_main``)."""
    return run_main


@pytest.fixture(scope="session")
def install_plugin(tmp_path_factory):
    """install_plugin(folder) -> site dir: really pip-installs a test plugin package (with its entry
    points) into a private target folder, so nothing leaks into the environment."""

    def install(folder: Path) -> Path:
        target = tmp_path_factory.mktemp(f"site-{Path(folder).name}")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(target), str(folder)],
                       check=True, capture_output=True, text=True, timeout=300)
        return target

    return install


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the groups into node ids
def pytest_collection_modifyitems(config, items):
    """Tests that share a module-scoped fixture (often a whole search run) go to one xdist worker
    (``--dist loadgroup``), so that the fixture is built once rather than once per worker."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("xdist_group") is not None:
            continue
        for name in info.names_closure:
            definitions = info.name2fixturedefs.get(name)
            if definitions and definitions[-1].scope == "module":
                item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}.{name}"))
                break
    # Long runs first: a group or a slow test that starts last keeps one worker busy while the others
    # have nothing left to do. The sort is stable, so a group's tests keep their order.
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None
               and item.get_closest_marker("slow") is None)
