"""The nasdip command: a tiny real search end to end, restore, baseline, and bad inputs."""
import json
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from nasdip_deap.image_io import load_image

TINY = ["--crop", "16", "--iterations", "6"]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """The installed console script itself (``nasdip``, beside this interpreter), in a new process."""
    out = tmp_path_factory.mktemp("run") / "search"
    script = Path(sysconfig.get_path("scripts")) / "nasdip"
    assert script.exists(), f"the console script is not installed at {script} (pip install -e .)"
    proc = subprocess.run([str(script), "search", *TINY, "--levels", "3", "--population", "4", "--generations", "1",
                           "--seed", "3", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_search_writes_the_run_folder(search_run):
    out, proc = search_run
    for name in ("best.json", "restored.png", "degraded.png", "logbook.json", "config.json", "hall_of_fame.json",
                 "evaluations.jsonl"):
        assert (out / name).exists(), name
    best = json.loads((out / "best.json").read_text())
    assert len(best["bits"]) == best["spec"]["length"]
    assert best["architecture"]["encoders"] and "psnr" in best and best["fitness"]
    logbook = json.loads((out / "logbook.json").read_text())
    assert [row["gen"] for row in logbook] == [0, 1]
    assert {"quality_max", "quality_mean", "quality_min", "nevals", "seconds"} <= set(logbook[0])
    assert load_image(out / "restored.png").shape == (3, 16, 16)
    assert "PSNR" in proc.stdout


def test_restore_with_found_genome(search_run, tmp_path, cli):
    out, _ = search_run
    proc = cli("restore", "--genome", str(out / "best.json"), *TINY, "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["result"]["psnr"] > 0 and summary["result"]["ssim"] <= 1
    assert (tmp_path / "r" / "restored.png").exists()
    assert "PSNR" in proc.stdout and "SSIM" in proc.stdout


def test_restore_reproduces_the_searchs_final_fit(search_run, tmp_path, cli):
    """Same genome, seed, budget, ensemble and thread count: the restore gives the figure of the search's
    own final fits."""
    out, _ = search_run
    best = json.loads((out / "best.json").read_text())
    assert best["final"]["ensemble"] == 2  # a search's default
    proc = cli("restore", "--genome", str(out / "best.json"), *TINY, "--seed", "3", "--threads", "1",
               "--ensemble", "2", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert best["final"]["search_fits"]  # the search's own fits were averaged in: compare the final fits alone
    assert summary["result"]["psnr"] == pytest.approx(best["final"]["final_fits"]["psnr"], abs=1e-6)
    assert best["psnr"] != pytest.approx(best["final"]["final_fits"]["psnr"], abs=1e-6)


def test_baseline_is_classical_dip(tmp_path, cli, write_png, tiny_image):
    img = write_png("img.png", tiny_image)
    proc = cli("baseline", "--image", str(img), "--iterations", "10", "--out", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["architecture"]["input_depth"] == 32
    assert [e["channels"] for e in summary["architecture"]["encoders"]] == [128] * 5


def test_same_seed_same_search(tmp_path, cli):
    runs = []
    for name in ("a", "b"):
        proc = cli("search", *TINY, "--levels", "3", "--population", "3", "--generations", "1", "--seed", "5",
                   "--no-classical-seed", "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads((tmp_path / name / "hall_of_fame.json").read_text()))
    assert [e["bits"] for e in runs[0]] == [e["bits"] for e in runs[1]]
    assert [e["fitness"] for e in runs[0]] == [e["fitness"] for e in runs[1]]


def bad(cli, *args):
    proc = cli(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_missing_image(cli, tmp_path):
    assert "does not exist" in bad(cli, "baseline", "--image", str(tmp_path / "nope.png"))


def test_not_an_image(cli, tmp_path):
    f = tmp_path / "notes.png"
    f.write_text("hello")
    assert "not an image" in bad(cli, "baseline", "--image", str(f))


def test_image_too_small(cli, write_png):
    img = write_png("small.png", torch.rand(3, 20, 20))
    line = bad(cli, "baseline", "--image", str(img))
    assert "at least 32x32" in line


def test_output_folder_exists(cli, tmp_path, write_png, tiny_image):
    img = write_png("img.png", tiny_image)
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert "--force" in bad(cli, "baseline", "--image", str(img), "--out", str(out), "--iterations", "2")
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("content,message", [("{not json", "not valid JSON"), ("[0, 1, 1]", "bits"),
                                             ('{"bits": "0101"}', "list of 0/1"), ('{"x": 1}', "no 'bits'")])
def test_bad_genome_file(cli, tmp_path, content, message):
    g = tmp_path / "genome.json"
    g.write_text(content)
    assert message in bad(cli, "restore", "--genome", str(g), "--crop", "32")


@pytest.mark.parametrize("option", ["--population", "--iterations"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_bad_counts(cli, option, value):
    proc = cli("search", option, value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and option in proc.stderr


def test_unknown_task(cli):
    line = bad(cli, "search", "--task", "deblur", *TINY)
    assert "unknown task 'deblur'" in line and "denoise" in line


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16"])
def test_other_image_modes_are_handled(cli, tmp_path, mode):
    from PIL import Image
    import numpy as np
    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray((rng.random((32, 32)) * 65535).astype(np.uint16))
    elif mode == "L":
        img = Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8), "L")
    else:
        img = Image.fromarray((rng.random((32, 32, 4)) * 255).astype(np.uint8), "RGBA")
    path = tmp_path / "img.png"
    img.save(path)
    proc = cli("baseline", "--image", str(path), "--iterations", "3", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    channels = 3 if mode == "RGBA" else 1
    assert load_image(tmp_path / "o" / "restored.png").shape[0] == channels


def test_list_shows_registries(cli):
    proc = cli("list")
    assert proc.returncode == 0
    for word in ("denoise", "two-point", "flip-bit", "tournament", "ga"):
        assert word in proc.stdout
