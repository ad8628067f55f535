"""Task plugins through the ``nasdip_deap.tasks`` entry-point group: the example JPEG artefact
removal package (tests/plugins/nasdip_jpeg_task) is really pip-installed into a private folder and
used by the CLI in a subprocess; a plugin whose import fails is named with its error while the
other tasks stay usable."""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import run_main


@pytest.fixture
def cli():
    """Entry-point plugins are found by a new interpreter: these tests run the real console command."""
    from .conftest import run_cli

    return run_cli

PLUGIN = Path(__file__).resolve().parent / "plugins" / "nasdip_jpeg_task"


def pythonpath(*sites: Path) -> dict:
    parts = [str(s) for s in sites] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(parts)}


@pytest.fixture(scope="module")
def jpeg_site(install_plugin, tmp_path_factory) -> Path:
    """The example plugin installed from a copy (so no build/ or egg-info lands in the repository)."""
    source = tmp_path_factory.mktemp("src") / PLUGIN.name
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return install_plugin(source)


@pytest.fixture(scope="module")
def broken_site(install_plugin, tmp_path_factory) -> Path:
    """A plugin package whose module raises on import."""
    source = tmp_path_factory.mktemp("src") / "nasdip_broken_task"
    (source / "nasdip_broken_task").mkdir(parents=True)
    (source / "nasdip_broken_task" / "__init__.py").write_text(
        'raise ImportError("needs libfrobnicate, which is not installed")\n')
    (source / "pyproject.toml").write_text((PLUGIN / "pyproject.toml").read_text())
    (source / "setup.cfg").write_text(textwrap.dedent("""\
        [metadata]
        name = nasdip-broken-task
        version = 0.1.0

        [options]
        packages = nasdip_broken_task

        [options.entry_points]
        nasdip_deap.tasks =
            broken = nasdip_broken_task:BrokenTask
        """))
    return install_plugin(source)


def test_an_installed_plugin_task_adds_its_options_to_the_cli(cli, jpeg_site):
    usage = cli("search", "--help", env=pythonpath(jpeg_site))
    assert usage.returncode == 0 and "--jpeg-quality" in usage.stdout
    assert "--jpeg-quality" not in run_main("search", "--help").stdout, "only installed plugins add options"


def test_a_plugin_task_searches_beside_a_broken_plugin(cli, jpeg_site, broken_site, tmp_path):
    """With a broken plugin installed too: it is listed with its error and refused by name, while the
    working plugin's task lists, searches and checks its own option."""
    env = pythonpath(jpeg_site, broken_site)
    listed = cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "jpeg" in listed.stdout and "JPEG" in listed.stdout and "inpaint" in listed.stdout
    assert "broken" in listed.stdout and "needs libfrobnicate" in listed.stdout
    assert "'broken'" in listed.stderr and "ImportError" in listed.stderr  # the warning names plugin and error
    out = tmp_path / "run"
    done = cli("search", "--task", "jpeg", "--jpeg-quality", "10", "--crop", "16", "--levels", "3", "--population", "3",
               "--generations", "1", "--iterations", "4", "--seed", "2", "--out", str(out), "--quiet", env=env)
    assert done.returncode == 0, done.stderr
    best = json.loads((out / "best.json").read_text())
    assert best["task"] == {"task": "jpeg", "jpeg_quality": 10}
    assert np.isfinite(best["psnr"])
    degraded = np.asarray(Image.open(out / "degraded.png"), dtype=float)
    clean = np.asarray(Image.open(out / "clean.png"), dtype=float)
    assert degraded.shape == clean.shape == (16, 16, 3)
    assert 0 < np.abs(degraded - clean).mean() < 30, "JPEG at quality 10 changes the image, not beyond recognition"
    bad = cli("baseline", "--task", "jpeg", "--jpeg-quality", "0", "--out", str(tmp_path / "bad"), env=env)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("nasdip: error: --jpeg-quality")
    refused = cli("baseline", "--task", "broken", "--out", str(tmp_path / "no"), env=env)
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("nasdip: error: unknown task 'broken'") and "needs libfrobnicate" in last
    assert "denoise" in last and "jpeg" in last
