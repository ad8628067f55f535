"""The Python API: one call, a result object, parts as names or objects, and the defects it fixed (the
``fit`` name, the engine options of final fits, the parameter count of the trained network)."""
from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil

import pytest
import torch
from deap import tools

import nasdip_deap
from nasdip_deap import classical_dip
from nasdip_deap.algorithms import Algorithm
from nasdip_deap.cli import build_parser
from nasdip_deap.compose import RestoreConfig, SearchConfig
from nasdip_deap.errors import UserError
from nasdip_deap.network import build_network, count_parameters

TINY = dict(levels=3, population=3, generations=1, iterations=4, device="cpu")


@pytest.fixture
def task(tiny_image):
    return nasdip_deap.make_task("denoise", clean=tiny_image, sigma=25, seed=0)


def test_fit_and_search_stay_functions_whatever_is_imported():
    for module in pkgutil.iter_modules(nasdip_deap.__path__):
        importlib.import_module(f"nasdip_deap.{module.name}")
    from nasdip_deap import fit, search  # after every submodule is loaded

    assert fit is nasdip_deap.engine.fit and callable(fit) and not isinstance(fit, type(nasdip_deap))
    assert search is nasdip_deap.api.search and callable(search)
    assert all(getattr(nasdip_deap, name) is not None for name in nasdip_deap.__all__)
    assert set(nasdip_deap.__all__) <= set(dir(nasdip_deap))


def test_workers_and_the_parser_start_without_torch():
    """A spawned worker imports the package and the backends before its first task; torch comes with
    the first fit, not with the package."""
    import subprocess
    import sys

    code = ("import sys, nasdip_deap, nasdip_deap.backends, nasdip_deap.cli; "
            "print('torch' in sys.modules, nasdip_deap.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", nasdip_deap.__version__]


def test_the_parameter_objective_counts_the_network_that_was_trained(tiny_image):
    """On a 32 px image a 5-level network's deepest maps are 1x1, where batch norm is dropped: the
    objective must count that network, not the one built without the image size."""
    task = nasdip_deap.make_task("denoise", clean=tiny_image, sigma=25)
    result = nasdip_deap.search(task, algorithm="nsga2", population=2, generations=0, iterations=2, device="cpu")
    for entry in result.front:
        arch = entry.architecture
        trained = count_parameters(build_network(arch, 3, image_size=(32, 32)))
        assert entry.objectives["parameters"] == trained
    classical = classical_dip()
    assert count_parameters(build_network(classical, 3, image_size=(32, 32))) < \
        count_parameters(build_network(classical, 3))  # the two counts really differ here


def test_final_fits_run_with_the_engine_options_of_the_search(task, monkeypatch):
    seen = []
    real = nasdip_deap.engine.fit

    def spy(*args, options=None, **kwargs):
        seen.append(options)
        return real(*args, options=options, **kwargs)

    monkeypatch.setattr(nasdip_deap.runner, "fit", spy)
    result = nasdip_deap.search(task, channels_last=True, cuda_graph=False, **TINY)
    searched = len(seen)
    result.restore(ensemble=2)
    assert searched >= 3 and len(seen) == searched + 2
    assert all(o.channels_last and not o.cuda_graph for o in seen)  # search fits and final fits alike


def test_search_returns_a_result_with_best_front_records_and_restore(task):
    result = nasdip_deap.search(task, **TINY)
    assert isinstance(result.best, nasdip_deap.Architecture)
    assert result.best == nasdip_deap.decode(result.best_bits, nasdip_deap.GenomeSpec(levels=3))
    assert len(result.front) == 1 and result.front[0].architecture == result.best
    assert len(result.records) == result.totals.fits and all("fitness" in r for r in result.records)
    restored = result.restore(ensemble=2, iterations=3)
    assert restored.image.shape == (3, 32, 32) and restored.ensemble == 2 and restored.iterations == 3
    assert restored.metrics["psnr"] == pytest.approx(task.quality(restored.image, task.clean)["psnr"])


def test_the_api_and_the_cli_share_every_default():
    parsed = vars(build_parser().parse_args(["search"]))
    for field in dataclasses.fields(SearchConfig):
        if field.name in parsed:
            assert parsed[field.name] == field.default, field.name
    assert parsed["no_classical_seed"] is (not SearchConfig().seed_classical)
    restore_args = vars(build_parser().parse_args(["baseline"]))
    assert restore_args["iterations"] == RestoreConfig().iterations and restore_args["ensemble"] == 1


class KeepTheBest(Algorithm):
    """A user's algorithm class: mutants of the best replace the population."""

    name = "keep-the-best"

    def step(self, population, toolbox, evaluate):
        children = [toolbox.mutate(toolbox.clone(tools.selBest(population, 1)[0]))[0] for _ in population]
        for child in children:
            del child.fitness.values
        evaluate(children)
        return children, children


def flip_everything(individual, spec):
    """A user's mutation, passed as a function."""
    for i in range(len(individual)):
        individual[i] = 1 - individual[i]
    return individual,


def test_parts_can_be_objects(task):
    result = nasdip_deap.search(task, algorithm=KeepTheBest, mutation=functools.partial(flip_everything,
                                                                                        spec=nasdip_deap.GenomeSpec(3)),
                                **TINY)
    assert result.search.algorithm.name == "keep-the-best" and result.search.operators["mutation"]["name"] == \
        "flip_everything"
    again = nasdip_deap.search(task, algorithm=KeepTheBest(cxpb=0.0, mutpb=1.0), **TINY)
    assert again.search.algorithm.mutpb == 1.0


def test_tasks_take_their_declared_options_as_keywords(tiny_image):
    task = nasdip_deap.make_task("inpaint", clean=tiny_image, mask_ratio=0.3, seed=1)
    assert 0.2 < 1 - float(task.observed_mask.mean()) < 0.4
    assert nasdip_deap.make_task("super-resolution", clean=tiny_image, scale=2).output_size == (32, 32)
    with pytest.raises(UserError, match="takes no option 'sigma'"):
        nasdip_deap.make_task("inpaint", clean=tiny_image, sigma=3)
    with pytest.raises(UserError, match="--scale must be one of 2, 4, 8"):
        nasdip_deap.make_task("super-resolution", clean=tiny_image, scale=3)
    with pytest.raises(UserError, match="needs a clean image or an observed one"):
        nasdip_deap.make_task("denoise")


def test_bad_settings_are_user_errors(task):
    with pytest.raises(UserError, match="--population must be a whole number between 1 and"):
        nasdip_deap.search(task, population=0)
    with pytest.raises(TypeError):
        nasdip_deap.search(task, populaton=4)  # a misspelt setting is not silently ignored
    restored = nasdip_deap.baseline(task, iterations=2, device="cpu", ensemble=2)
    assert restored.ensemble == 2 and restored.image.shape == (3, 32, 32)
    assert torch.isfinite(restored.image).all()


def test_the_api_takes_earlier_runs_cache_files_as_the_cli_does(task, tmp_path):
    """The API and the CLI make a search ready with one function (``compose.start_run``): cached scores of
    an earlier run (``--cache`` on the CLI, ``cache=`` here) are reused, not fitted again."""
    from nasdip_deap.cache import CACHE_NAME, CacheFile

    from .helpers import evaluator_for

    context = evaluator_for(task, **TINY).context
    first = nasdip_deap.search(task, hooks=[CacheFile(tmp_path, context)], **TINY)
    again = nasdip_deap.search(task, cache=[tmp_path / CACHE_NAME], **TINY)
    assert first.totals.fits >= 3 and again.totals.fits == 0 and again.totals.cache_hits == first.totals.fits
    assert again.best_bits == first.best_bits
