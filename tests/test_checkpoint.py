"""Checkpoints, resume and the persistent evaluation cache.

The kill tests run the real CLI in subprocesses: a tiny seeded search is SIGKILLed after a
checkpoint and resumed; a process writing checkpoints in a loop is SIGKILLed in the middle of a
write. The other runs use the CLI in-process. A damaged checkpoint makes ``--resume`` fail with one
line, touching nothing.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nasdip_deap import cache, checkpoint
from nasdip_deap.cli import main
from nasdip_deap.errors import UserError

from .conftest import REPO, run_cli, run_main
from .helpers import kill_after_checkpoint

# a tiny search in which every generation trains new architectures (mutation always, 10% of bits),
# so that it is still running when the test kills it after generation 1
TINY = ["search", "--crop", "16", "--levels", "3", "--population", "4", "--generations", "2",
        "--iterations", "10", "--mutation", "flip-bit:indpb=0.1", "--mutpb", "1.0", "--seed", "3", "--quiet"]
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # one thread: bit-identical CPU fits


def hall_of_fame(run_dir: Path) -> list[dict]:
    """hall_of_fame.json without the timing fields (wall-clock seconds differ between two runs)."""
    entries = json.loads((run_dir / "hall_of_fame.json").read_text())
    return [{k: v for k, v in e.items() if k != "fit_seconds"} for e in entries]


def folder_snapshot(folder: Path) -> dict:
    """Every file's bytes and modification time, to prove a command touched nothing."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (the uninterrupted reference of the resume test)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = run_main(*TINY, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target


# -- acceptance: kill and resume ------------------------------------------------------------------
def test_sigkill_then_resume_gives_the_uninterrupted_hall_of_fame(finished_run, tmp_path):
    out = tmp_path / "killed"
    generation, returncode, stderr = kill_after_checkpoint(TINY, out, ENV)
    assert returncode == -signal.SIGKILL, f"the search ended before it was killed: {stderr}"
    assert generation is not None and generation == 1
    assert not (out / "best.json").exists()  # it really was interrupted

    resumed = run_main("search", "--resume", str(out))  # no other option: the saved settings
    assert resumed.returncode == 0, resumed.stderr
    assert hall_of_fame(out) == hall_of_fame(finished_run)
    logbook = json.loads((out / "logbook.json").read_text())
    assert [row["gen"] for row in logbook] == list(range(3))
    assert json.loads((out / "best.json").read_text())["bits"] == \
        json.loads((finished_run / "best.json").read_text())["bits"]
    for name in ("evaluations.jsonl", "cache.jsonl"):  # a kill mid-append left no broken line behind
        for line in (out / name).read_text().splitlines():
            json.loads(line)


def test_kill_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    """A process rewrites a large checkpoint in a loop; it is SIGKILLed while the temporary file of
    a write exists (between the first byte and the rename). The checkpoint must load every time."""
    path = tmp_path / checkpoint.CHECKPOINT_NAME
    writer = textwrap.dedent(f"""
        import sys
        from nasdip_deap import checkpoint
        payload = bytes(range(256)) * (12 * 4096)  # 12 MiB: each write takes a while
        n = 0
        while True:
            n += 1
            checkpoint.write_checkpoint({str(path)!r}, {{"generation": n, "payload": payload}})
            print(n, flush=True)
    """)
    tmp = checkpoint.temporary_path(path)
    mid_write_kills = 0
    last_generation = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, **ENV})
        try:
            assert proc.stdout.readline().strip()  # one full checkpoint exists
            deadline = time.monotonic() + 60
            while not tmp.exists() and time.monotonic() < deadline:  # the next write has begun
                pass
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.communicate()
        mid_write_kills += tmp.exists()  # still there: the kill landed before the rename
        data = path.read_bytes()
        assert data.startswith(checkpoint.MAGIC)
        import pickle

        state = pickle.loads(data[len(checkpoint.MAGIC) + 65:])
        assert state["generation"] >= max(1, last_generation)
        assert len(state["payload"]) == 12 * 1024 * 1024
        last_generation = state["generation"]
    assert mid_write_kills >= 1, "no kill landed in the middle of a write; the test proved nothing"


def test_half_written_temporary_file_does_not_hide_the_checkpoint(tmp_path):
    """What a kill mid-write leaves: the old checkpoint plus a truncated temporary file."""
    path = tmp_path / checkpoint.CHECKPOINT_NAME
    checkpoint.write_checkpoint(path, {"generation": 1})
    checkpoint.temporary_path(path).write_bytes(checkpoint.MAGIC + b"0" * 20)
    assert pickle_generation(path) == 1
    checkpoint.write_checkpoint(path, {"generation": 2})  # the next write replaces the leftover
    assert pickle_generation(path) == 2
    assert not checkpoint.temporary_path(path).exists()


def pickle_generation(path: Path) -> int:
    import pickle

    return pickle.loads(path.read_bytes()[len(checkpoint.MAGIC) + 65:])["generation"]


# -- acceptance: damaged checkpoint ---------------------------------------------------------------
def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def _garbage(data: bytes) -> bytes:
    return b"\x80\x04this is not a checkpoint"


def _foreign_pickle(data: bytes) -> bytes:
    import hashlib
    import pickle

    payload = pickle.dumps({"format": 99})
    return checkpoint.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


@pytest.mark.parametrize("damage", [_truncate, _flip, _garbage, _foreign_pickle, lambda d: b""],
                         ids=["truncated", "flipped-byte", "garbage", "other-format", "empty"])
def test_damaged_checkpoint_fails_with_one_line_and_touches_nothing(run_copy, damage, capsys):
    ckpt = run_copy / checkpoint.CHECKPOINT_NAME
    ckpt.write_bytes(damage(ckpt.read_bytes()))
    before = folder_snapshot(run_copy)
    assert main(["search", "--resume", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasdip: error: cannot resume") and err.count("\n") == 1, err
    assert "checkpoint" in err and "Traceback" not in err
    assert folder_snapshot(run_copy) == before


def test_damaged_checkpoint_through_the_real_cli(run_copy):
    ckpt = run_copy / checkpoint.CHECKPOINT_NAME
    ckpt.write_bytes(_flip(ckpt.read_bytes()))
    before = folder_snapshot(run_copy)
    done = run_cli("search", "--resume", str(run_copy), env=ENV)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "damaged" in done.stderr, done.stderr
    assert folder_snapshot(run_copy) == before


def test_a_run_without_checkpoint_resumes_from_its_settings_and_cache(run_copy, finished_run, capsys):
    """A run stopped before its first checkpoint: ``--resume RUN`` alone rebuilds it from config.json
    and scores every architecture it already fitted from cache.jsonl, counted as its own fits."""
    (run_copy / checkpoint.CHECKPOINT_NAME).unlink()
    (run_copy / "best.json").unlink()
    assert main(["search", "--resume", str(run_copy)]) == 0, capsys.readouterr().err
    assert hall_of_fame(run_copy) == hall_of_fame(finished_run)
    again = json.loads((run_copy / "logbook.json").read_text())
    first = json.loads((finished_run / "logbook.json").read_text())
    assert [(r["fits"], r["iterations"], r["cache_hits"]) for r in again] == \
        [(r["fits"], r["iterations"], r["cache_hits"]) for r in first]
    config = json.loads((run_copy / "config.json").read_text())
    assert config["image"] is None and config["resumed"][-1]["after_generation"] is None


def test_missing_folder_or_settings_is_a_one_line_error(run_copy, tmp_path, capsys):
    (run_copy / checkpoint.CHECKPOINT_NAME).unlink()
    (run_copy / "config.json").unlink()
    before = folder_snapshot(run_copy)
    assert main(["search", "--resume", str(run_copy)]) == 2
    assert "neither a checkpoint nor a config.json" in capsys.readouterr().err
    assert folder_snapshot(run_copy) == before
    assert main(["search", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


# -- resume settings -----------------------------------------------------------------------------
def test_conflicting_option_on_resume_is_an_error(run_copy, capsys):
    before = folder_snapshot(run_copy)
    assert main(["search", "--resume", str(run_copy), "--population", "6", "--seed", "4"]) == 2
    err = capsys.readouterr().err
    assert "--population 6" in err and "--seed 4" in err and "the run used 4" in err, err
    assert err.count("\n") == 1
    assert folder_snapshot(run_copy) == before


def test_resume_accepts_repeated_and_runtime_options(run_copy, capsys):
    """Options equal to the saved ones, and run-time options, are not conflicts; argparse defaults
    (population 8, crop 64, ... differ from this run's) never count. A finished run only redoes its
    final fit and report."""
    hof = hall_of_fame(run_copy)
    code = main(["search", "--resume", str(run_copy), "--population", "4", "--crop", "16", "--device", "cpu",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert hall_of_fame(run_copy) == hof


def test_resume_can_extend_the_run(run_copy):
    done = run_main("search", "--resume", str(run_copy), "--generations", "3")
    assert done.returncode == 0, done.stderr
    logbook = json.loads((run_copy / "logbook.json").read_text())
    assert [row["gen"] for row in logbook] == list(range(4))
    assert checkpoint.read_checkpoint(run_copy / checkpoint.CHECKPOINT_NAME)["settings"]["config"]["generations"] == 3
    config = json.loads((run_copy / "config.json").read_text())
    assert config["generations"] == 3 and config["resumed"][-1]["after_generation"] == 2


def test_resume_refuses_a_changed_input_image(tmp_path, tiny_image, write_png, capsys):
    image = write_png("input.png", tiny_image)
    out = tmp_path / "run"
    args = ["search", "--image", str(image), "--levels", "2", "--population", "2", "--generations", "0",
            "--iterations", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    write_png("input.png", tiny_image.flip(-1))
    before = folder_snapshot(out)
    assert main(["search", "--resume", str(out)]) == 2
    assert "was an input image changed" in capsys.readouterr().err
    assert folder_snapshot(out) == before


# -- checkpoint contents --------------------------------------------------------------------------
def test_checkpoint_holds_the_state_and_rng(finished_run):
    state = checkpoint.read_checkpoint(finished_run / checkpoint.CHECKPOINT_NAME)
    assert state["generation"] == 2
    assert len(state["population"]) == 4 and len(state["archive"]) >= 1
    assert [row["gen"] for row in state["logbook"]] == list(range(3))
    assert len(state["cache"]) == state["totals"]["fits"] > 0
    assert state["settings"]["config"]["population"] == 4 and state["settings"]["config"]["seed"] == 3
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    best = max(state["population"], key=lambda ind: ind.fitness.values[0])
    assert best.fitness.valid and len(best) == len(state["population"][0])


def test_rng_states_round_trip():
    saved = checkpoint.rng_states()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(123), np.random.seed(5), torch.manual_seed(7)
    checkpoint.set_rng_states(saved)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


# -- evaluation cache -----------------------------------------------------------------------------
def test_repeated_run_never_retrains(finished_run, tmp_path):
    """--cache FILE in a new folder, and --force into the same folder, score everything from the cache."""
    other = tmp_path / "again"
    done = run_main(*TINY, "--out", str(other), "--cache", str(finished_run / cache.CACHE_NAME))
    assert done.returncode == 0, done.stderr
    logbook = json.loads((other / "logbook.json").read_text())
    assert sum(row["fits"] for row in logbook) == 0
    assert sum(row["cache_hits"] for row in logbook) > 0
    assert hall_of_fame(other) == hall_of_fame(finished_run)
    assert len((other / cache.CACHE_NAME).read_text().splitlines()) == \
        len((finished_run / cache.CACHE_NAME).read_text().splitlines())  # imported: self-contained

    again = run_main(*TINY, "--out", str(other), "--force")
    assert again.returncode == 0, again.stderr
    assert sum(row["fits"] for row in json.loads((other / "logbook.json").read_text())) == 0


def test_cache_of_other_settings_is_not_used(finished_run, tmp_path):
    other = tmp_path / "other-seed"
    args = list(TINY)
    args[args.index("--seed") + 1] = "4"  # another context: nothing may be reused
    args[args.index("--generations") + 1] = "0"
    done = run_main(*args, "--out", str(other), "--cache", str(finished_run / cache.CACHE_NAME))
    assert done.returncode == 0, done.stderr
    assert json.loads((other / "logbook.json").read_text())[0]["fits"] == 4


def test_cache_file_with_a_half_written_line(finished_run, tmp_path):
    from types import SimpleNamespace

    lines = (finished_run / cache.CACHE_NAME).read_text().splitlines()
    path = tmp_path / cache.CACHE_NAME
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # a kill in the middle of an append
    context = json.loads(lines[0])["context"]
    evaluator = SimpleNamespace(context=context, cache_key=lambda key: f"{context}:{key}", legacy_context=lambda: None)
    assert len(cache.load_cache_file(path, evaluator)) == len({json.loads(x)["key"] for x in lines[:3]})
    cache.repair_jsonl_tail(path)
    assert path.read_text() == "\n".join(lines[:3]) + "\n"


def test_missing_cache_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        cache.load_cache_file(tmp_path / "nope.jsonl", None)


def test_multi_objective_run_resumed_and_extended_equals_a_longer_run(tmp_path, capsys):
    """nsga2 (Pareto-front archive, crowding distances): 1 generation, then --resume --generations 2,
    gives the Pareto front of a 2-generation run."""
    base = ["search", "--crop", "16", "--levels", "2", "--population", "4", "--iterations", "4",
            "--algorithm", "nsga2", "--seed", "7", "--quiet"]
    assert main([*base, "--generations", "2", "--out", str(tmp_path / "long")]) == 0
    assert main([*base, "--generations", "1", "--out", str(tmp_path / "short")]) == 0
    random.seed(999), np.random.seed(999), torch.manual_seed(999)  # as in a new process: only the checkpoint's RNG
    assert main(["search", "--resume", str(tmp_path / "short"), "--generations", "2"]) == 0, capsys.readouterr().err

    def front(run):
        entries = json.loads((run / "pareto_front.json").read_text())
        return [(e["bits"], e["fitness"][0], e["objectives"]["parameters"]) for e in entries]

    def statistics(run):  # per generation: the population's objective statistics (no timings)
        return [{k: v for k, v in row.items() if k.startswith(("quality_", "parameters_"))}
                for row in json.loads((run / "logbook.json").read_text())]

    assert front(tmp_path / "short") == front(tmp_path / "long")
    assert statistics(tmp_path / "short") == statistics(tmp_path / "long")


# -- the run definition -------------------------------------------------------------------------------
def test_the_saved_config_is_every_setting_and_rebuilds_whole():
    from nasdip_deap.compose import SearchConfig, config_from_dict, config_to_dict, config_fields

    config = SearchConfig(population=7, mutpb=0.25, algorithm="ga:cxpb=0.6", proxy="downscale:size=48")
    saved = json.loads(json.dumps(config_to_dict(config)))  # as config.json holds it
    assert set(saved) == set(config_fields()) and config_from_dict(saved) == config
    with pytest.raises(UserError, match="'future_setting', a setting this version of nasdip does not know"):
        config_from_dict({**saved, "future_setting": 1})


def test_resume_rebuilds_the_saved_definition_not_the_command_lines_defaults(run_copy, capsys):
    """The definition in config.json is the run: a setting it holds wins over whatever this version's
    parser would default to, and one it does not know is one line, exit 2, with nothing written."""
    (run_copy / checkpoint.CHECKPOINT_NAME).unlink()
    (run_copy / "best.json").unlink()
    config = json.loads((run_copy / "config.json").read_text())
    assert config["run"]["config"]["population"] == 4 and config["run"]["task"] == "denoise"
    assert main(["search", "--resume", str(run_copy), "--quiet"]) == 0, capsys.readouterr().err
    resumed = json.loads((run_copy / "config.json").read_text())
    assert resumed["run"]["config"] == config["run"]["config"] and resumed["population"] == 4
    assert (run_copy / "best.json").exists()

    resumed["run"]["config"]["future_setting"] = 1
    (run_copy / "config.json").write_text(json.dumps(resumed))
    (run_copy / checkpoint.CHECKPOINT_NAME).unlink()
    before = folder_snapshot(run_copy)
    capsys.readouterr()
    assert main(["search", "--resume", str(run_copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a setting this version of nasdip does not know" in err and err.count("\n") == 1, err
    assert folder_snapshot(run_copy) == before


def test_a_run_saved_before_definitions_resumes_from_its_command_line(run_copy, finished_run, capsys):
    """config.json of version 0.2 holds the parsed command line only: it resumes to the same result."""
    (run_copy / checkpoint.CHECKPOINT_NAME).unlink()
    (run_copy / "best.json").unlink()
    config = json.loads((run_copy / "config.json").read_text())
    del config["run"]
    (run_copy / "config.json").write_text(json.dumps(config))
    assert main(["search", "--resume", str(run_copy), "--quiet"]) == 0, capsys.readouterr().err
    assert hall_of_fame(run_copy) == hall_of_fame(finished_run)
