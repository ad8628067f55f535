"""Bring your own operator and algorithm: registered with the decorator in the user's code, or declared
as entry points in the user's own installed package; either way usable from the CLI by name."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from deap import tools

from nasdip_deap.algorithms import Algorithm
from nasdip_deap.cli import main
from nasdip_deap.registry import ALGORITHMS, OPERATORS

from .conftest import run_main


@pytest.fixture
def cli():
    """Entry-point plugins are found by a new interpreter: these tests run the real console command."""
    from .conftest import run_cli

    return run_cli

PLUGIN = Path(__file__).parent / "plugins" / "nasdip_demo_ops"
TINY = ["--crop", "16", "--levels", "3", "--iterations", "10", "--population", "4", "--generations", "1",
        "--no-classical-seed"]


def records_of_generation(run_dir: Path, generation: int) -> list[dict]:
    lines = (run_dir / "evaluations.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("generation") == generation]


# -- decorator, in the user's own code -------------------------------------------------------------
@pytest.fixture
def user_parts():
    """A user's operator and algorithm, registered with the decorator (and removed after the test)."""

    @OPERATORS.register("user-elu", kind="mutation", defaults={"indpb": 0.1})
    def mutate_to_elu(individual, spec, indpb):
        """Set the activation to ELU, then flip bits elsewhere with probability indpb."""
        tools.mutFlipBit(individual, indpb)
        spec.set_field_index(individual, [f.name for f in spec.fields].index("meta.activation"), 2)
        return individual,

    @ALGORITHMS.register("user-half-mutants")
    class HalfMutants(Algorithm):
        """Each generation, mutated clones of the best half replace the worst half."""

        name = "user-half-mutants"

        def step(self, population, toolbox, evaluate):
            half = len(population) // 2
            children = [toolbox.mutate(toolbox.clone(ind))[0] for ind in tools.selBest(population, half)]
            for child in children:
                del child.fitness.values
            evaluate(children)
            return tools.selBest(population, len(population) - half) + children, children

    yield
    OPERATORS.unregister("user-elu")
    ALGORITHMS.unregister("user-half-mutants")


def test_decorator_registered_parts_work_from_the_cli(user_parts, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--algorithm", "user-half-mutants", "--mutation", "user-elu:indpb=0.05", *TINY,
                 "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"]["name"] == "user-half-mutants"
    assert config["operators"]["mutation"] == {"name": "user-elu", "params": {"indpb": 0.05}}
    logbook = json.loads((out / "logbook.json").read_text())
    assert logbook[1]["nevals"] == 2  # the user's algorithm ran: two children from a population of four
    children = records_of_generation(out, 1)
    assert children and all(r["architecture"]["activation"] == "elu" for r in children)  # the user's mutation ran

    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "user-elu" in listing and "Set the activation to ELU" in listing
    assert "user-half-mutants" in listing and "mutated clones of the best half" in listing


def test_decorator_names_collide_and_show_up_in_errors(user_parts, tmp_path, capsys):
    with pytest.raises(ValueError, match="already registered"):
        OPERATORS.register("user-elu", kind="mutation")(lambda individual: (individual,))
    assert main(["search", "--mutation", "user-nope", *TINY, "--out", str(tmp_path / "x")]) == 2
    valid = OPERATORS.names("mutation")
    assert "user-elu" in valid
    assert f"valid mutation operators: {', '.join(valid)}" in capsys.readouterr().err


def test_registering_again_from_a_rerun_notebook_cell_is_harmless():
    """The same object twice, or a new definition of it (same module and qualified name, as when a
    notebook cell runs again), replaces quietly; another object under a taken name still raises."""
    namespace: dict = {"__name__": "__main__"}
    cell = ("from nasdip_deap.registry import OPERATORS\n"
            "@OPERATORS.register('cell-mutation', kind='mutation')\n"
            "def cell_mutation(individual):\n"
            "    return individual,\n")
    try:
        exec(cell, namespace)
        first = OPERATORS.get("cell-mutation")
        OPERATORS.add("cell-mutation", first, kind="mutation")  # the same object again
        exec(cell, namespace)  # the cell run again: a new function, same origin
        assert OPERATORS.get("cell-mutation") is namespace["cell_mutation"] is not first
        with pytest.raises(ValueError, match="already registered by __main__.cell_mutation"):
            OPERATORS.add("cell-mutation", lambda individual: (individual,), kind="mutation")
    finally:
        OPERATORS.unregister("cell-mutation")


# -- entry points, from an installed package ------------------------------------------------------
@pytest.fixture(scope="module")
def plugin_site(install_plugin, tmp_path_factory):
    """The demo plugin really pip-installed into a private folder (from a copy, so the build leaves
    nothing in the source tree)."""
    source = tmp_path_factory.mktemp("plugin-src") / PLUGIN.name
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return install_plugin(source)


@pytest.mark.slow
def test_entry_point_plugin_is_listed(plugin_site, cli):
    listing = cli("list", env={"PYTHONPATH": str(plugin_site)})
    assert listing.returncode == 0, listing.stderr
    assert "demo-level-swap" in listing.stdout and "[crossover] Swap one random level whole" in listing.stdout
    assert "demo-set-field" in listing.stdout and "[mutation] Set one named field" in listing.stdout
    assert "demo-steady-state" in listing.stdout and "Steady-state GA" in listing.stdout
    assert "demo-threads" in listing.stdout and "Fits on a pool of threads" in listing.stdout
    plain = run_main("list")  # this interpreter has no plugin on its path
    assert plain.returncode == 0 and "demo-" not in plain.stdout  # they come from the plugin alone


@pytest.mark.slow
def test_entry_point_plugin_runs_a_search_by_name(plugin_site, cli, tmp_path):
    out = tmp_path / "run"
    proc = cli("search", "--algorithm", "demo-steady-state", "--crossover", "demo-level-swap",
               "--mutation", "demo-set-field:field=meta.activation,index=3", *TINY, "--out", str(out),
               "--backend", "demo-threads", "--workers", "2",
               env={"PYTHONPATH": str(plugin_site)})
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"]["name"] == "demo-steady-state"
    assert config["arguments"]["backend"] == "demo-threads"  # the plugin's backend ran the fits
    assert config["operators"]["crossover"]["name"] == "demo-level-swap"
    assert config["operators"]["mutation"] == {"name": "demo-set-field",
                                               "params": {"field": "meta.activation", "index": 3}}
    logbook = json.loads((out / "logbook.json").read_text())
    assert logbook[1]["nevals"] == 2  # steady state: two children per generation
    children = records_of_generation(out, 1)
    assert children and all(r["architecture"]["activation"] == "silu" for r in children)
    hof = json.loads((out / "hall_of_fame.json").read_text())
    assert hof and all({"bits", "architecture", "objectives", "generation_born"} <= set(e) for e in hof)


@pytest.mark.slow
def test_entry_point_plugin_operators_are_checked(plugin_site, cli, tmp_path):
    proc = cli("search", "--crossover", "demo-set-field", *TINY, "--out", str(tmp_path / "x"),
               env={"PYTHONPATH": str(plugin_site)})
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "'demo-set-field' is a mutation operator, not a crossover one" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_plugin_operator_parameters_are_checked(tmp_path):
    """The plugin's mutation registered as its entry point registers it (the object alone: kind and
    defaults come from its attributes), in this process: its parameters are checked by name."""
    OPERATORS.add("demo-set-field", demo_module().mut_set_field)
    try:
        for args, message in ((["--mutation", "demo-set-field"], "needs parameter 'field'"),
                              (["--mutation", "demo-set-field:field=meta.colour,index=1"], "no field 'meta.colour'")):
            proc = run_main("search", *args, *TINY, "--out", str(tmp_path / "x"))
            assert proc.returncode == 2, proc.stderr
            assert message in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    finally:
        OPERATORS.unregister("demo-set-field")
    assert not (tmp_path / "x").exists()


def demo_module():
    """The demo plugin's module, imported from its file (no install)."""
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("nasdip_demo_ops_direct", PLUGIN / "nasdip_demo_ops.py")
    demo = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(demo)
    return demo


def test_plugin_module_operators_keep_the_deap_contract():
    """The demo operators, imported directly (no install), behave as their docstrings say."""
    from nasdip_deap import DEFAULT_SPEC

    demo = demo_module()
    random.seed(0)
    a, b = [0] * DEFAULT_SPEC.length, [1] * DEFAULT_SPEC.length
    assert demo.cx_level_swap(a, b, DEFAULT_SPEC) == (a, b)
    swapped = {f.name.split(".")[0] for f, (start, stop) in zip(DEFAULT_SPEC.fields, DEFAULT_SPEC.slices)
               if a[start:stop] == [1] * (stop - start)}
    assert len(swapped) == 1 and swapped.pop().startswith("level")
    ind = [0] * DEFAULT_SPEC.length
    assert demo.mut_set_field(ind, DEFAULT_SPEC, "meta.activation", 3) == (ind,)
    assert DEFAULT_SPEC.decode(ind).activation == "silu"
