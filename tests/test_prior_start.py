"""--init-prior: the first population's random slots are the random genomes a model of earlier runs' records
ranks best (nasdip_deap/prior_start.py)."""
from __future__ import annotations

import gzip
import json
import math
import os
import random

import pytest

pytest.importorskip("sklearn", reason="--init-prior needs the optional extra 'predictor' (scikit-learn)")

from nasdip_deap import GenomeSpec, classical_dip  # noqa: E402
from nasdip_deap.prior_start import EXPLORE, PriorStart  # noqa: E402
from nasdip_deap.tasks import Denoise  # noqa: E402

from .helpers import tiny_search  # noqa: E402

TINY = ["--crop", "16", "--levels", "3", "--iterations", "6", "--population", "3", "--generations", "0"]


@pytest.fixture
def tiny_task(tiny_image):
    return Denoise.from_clean(tiny_image[:, 8:24, 8:24], {"sigma": 25.0}, seed=1)


def widest_first_encoder(spec: GenomeSpec, bits) -> float:
    return math.log2(spec.decode(bits).encoders[0].channels)


def write_recorded_table(path, spec: GenomeSpec, n: int, seed: int, offset: float) -> None:
    """A table in benchmarks/recorded's format whose quality is the first encoder's log2 width (plus an offset
    the file's standardisation must remove)."""
    rng = random.Random(seed)
    with gzip.open(path, "wt") as fh:
        for _ in range(n):
            bits = [rng.randint(0, 1) for _ in range(spec.length)]
            fh.write(json.dumps({"bits": bits, "fitness": [offset + widest_first_encoder(spec, bits)],
                                 "error": None}) + "\n")


def test_the_prior_keeps_the_best_ranked_random_genomes(tmp_path):
    spec = GenomeSpec(levels=3)
    files = [tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"]
    write_recorded_table(files[0], spec, 300, seed=1, offset=20.0)
    write_recorded_table(files[1], spec, 300, seed=2, offset=-7.0)  # another image: another scale
    prior = PriorStart([str(f) for f in files], spec)
    assert prior.X.shape[0] == 600 and abs(prior.y.mean()) < 1e-9  # each file standardised, then pooled

    rng = random.Random(5)
    candidates = [[rng.randint(0, 1) for _ in range(spec.length)] for _ in range(200)]
    random.seed(3)
    chosen = prior.choose(candidates, 10, spec)
    best = max(widest_first_encoder(spec, c) for c in candidates)
    ranked = chosen[:10 - round(EXPLORE * 10)]
    assert all(widest_first_encoder(spec, c) == best for c in ranked)
    assert all(any(c is cand for cand in candidates) for c in chosen) and len({id(c) for c in chosen}) == 10
    random.seed(3)
    assert prior.choose(candidates, 10, spec) == chosen  # reproducible per seed


def test_a_search_starts_from_the_prior_reproducibly(tmp_path, tiny_task):
    spec = GenomeSpec(levels=3)
    table = tmp_path / "t.jsonl.gz"
    write_recorded_table(table, spec, 200, seed=1, offset=0.0)

    def first_population(**settings):
        run = tiny_search(tiny_task, population=6, seed=4, **settings)
        random.seed(4)
        return [list(ind) for ind in run._initial_population()]

    started = first_population(init_prior=(str(table),), init_pool=30)
    assert started[0] == spec.encode(classical_dip(3)) and started == first_population(init_prior=(str(table),),
                                                                                           init_pool=30)
    plain = first_population()
    assert sum(widest_first_encoder(spec, b) for b in started[1:]) > sum(widest_first_encoder(spec, b)
                                                                         for b in plain[1:])


def test_init_prior_through_the_cli_on_an_earlier_runs_records(tmp_path, cli):
    earlier = tmp_path / "earlier"
    assert cli("search", *TINY, "--population", "9", "--out", str(earlier)).returncode == 0
    out = tmp_path / "run"
    proc = cli("search", *TINY, "--init-prior", str(earlier / "evaluations.jsonl"), "--init-pool", "4",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["init_prior"] == [os.path.abspath(earlier / "evaluations.jsonl")]
    assert config["run"]["config"]["init_pool"] == 4
    plain = cli("search", *TINY, "--init-prior", "none", "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0 and json.loads((tmp_path / "plain" / "config.json").read_text())["init_prior"] is None
    assert (out / "restored.png").exists()


@pytest.mark.parametrize("args, says", [
    (["--init-prior", "missing.jsonl"], "no such file"),
    (["--init-prior", "PRIOR", "--init-spread", "0.05"], "give one"),
    (["--init-prior", "PRIOR", "--init-pool", "0"], "--init-pool"),
    (["--init-prior", "EMPTY"], "usable records"),
])
def test_bad_init_prior_settings_get_one_line(tmp_path, cli, args, says):
    spec = GenomeSpec(levels=3)
    write_recorded_table(tmp_path / "p.jsonl.gz", spec, 50, seed=1, offset=0.0)
    (tmp_path / "empty.jsonl").write_text("not json\n")
    args = [{"PRIOR": str(tmp_path / "p.jsonl.gz"), "EMPTY": str(tmp_path / "empty.jsonl")}.get(a, a) for a in args]
    proc = cli("search", *TINY, *args, "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("nasdip: error")]
    assert len(errors) == 1 and says in errors[0] and not (tmp_path / "run" / "evaluations.jsonl").exists()


def test_the_prior_transfer_benchmark_ranks_a_recorded_problem_from_the_others(capsys):
    """benchmarks/prior_transfer.py on one recorded problem: a row of finite taus and PSNRs (no fit is run)."""
    import importlib

    transfer = importlib.import_module("prior_transfer")
    assert transfer.main(["--problems", "sr2-astronaut-32", "--draws", "1", "--pool", "30", "--slots", "5"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| sr2-astronaut-32 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "denoise-chelsea-32" in cells[1] and all(math.isfinite(float(c)) for c in cells[3:])


def test_the_default_start_is_the_built_in_prior_where_it_applies():
    from nasdip_deap.compose import SearchConfig
    from nasdip_deap.prior_start import recorded_paths

    assert SearchConfig().init_prior == "auto" and SearchConfig().start_prior_files() == recorded_paths()
    assert len(recorded_paths()) == 3
    for uniform in (dict(levels=3), dict(evolve_iterations=True), dict(algorithm="random"), dict(init_spread=0.05),
                    dict(init_prior="none"), dict(init_prior=None), dict(init_prior=["none"])):
        assert SearchConfig(**uniform).start_prior_files() is None, uniform
    assert SearchConfig(init_prior=["recorded"]).start_prior_files() == recorded_paths()


def test_the_built_in_prior_is_the_recorded_tables():
    """nasdip_deap/priors holds benchmarks/recorded's genomes and blind fitness, nothing else and nothing more."""
    import importlib

    from nasdip_deap.prior_start import read_records, recorded_paths

    recorded = importlib.import_module("recorded")
    for path in recorded_paths():
        name = path.rsplit("/", 1)[-1].removesuffix(".jsonl.gz")
        shipped = read_records(path)
        table = recorded.load(name)
        assert [r["bits"] for r in shipped] == ["".join(map(str, e["bits"])) for e in table]
        assert [r["fitness"][0] for r in shipped] == [e["fitness"][0] for e in table]


def test_a_default_search_ranks_its_first_population_by_the_built_in_prior(tiny_image):
    """Levels 5 (the default genome) on a 32 px crop: the start differs from the uniform one, classical DIP
    keeps slot 0, and the same seed gives the same start."""
    task = Denoise.from_clean(tiny_image, {"sigma": 25.0}, seed=1)

    def first_population(**settings):
        run = tiny_search(task, levels=5, population=6, seed=2, **settings)
        random.seed(2)
        return [list(ind) for ind in run._initial_population()]

    ranked, uniform = first_population(), first_population(init_prior="none")
    assert ranked == first_population() and ranked[0] == uniform[0] == GenomeSpec(5).encode(classical_dip(5))
    assert ranked[1:] != uniform[1:]


def test_recorded_problems_leave_their_own_table_out_of_the_prior():
    import importlib

    recorded = importlib.import_module("recorded")
    for problem in recorded.PROBLEMS.values():
        files = problem.config().init_prior
        assert len(files) == 2 and not any(f.endswith(problem.path().name) for f in files)
