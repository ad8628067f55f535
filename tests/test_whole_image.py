"""Whole photos: the whole image by default (the demo keeps its small crop), any size for every task,
candidates scored on a proxy while the final fits restore the whole image, ensembles of final fits,
and every evaluation slot spent on a new architecture."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import nasdip_deap
from nasdip_deap import classical_dip
from nasdip_deap.proxy import Downscale, WholeImage, make_proxy
from nasdip_deap.registry import TASKS
from nasdip_deap.restoration import member_seeds, restore
from nasdip_deap.runner import FitRunner

from .conftest import run_main
from .helpers import tiny_search
from .test_tasks import make_task


def picture(width: int, height: int, seed: int = 0) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    noise = torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed)) * 0.2
    return (torch.stack([x, y, x * y]) * 0.8 + noise).clamp(0, 1)


def test_an_image_is_restored_whole_by_default(tmp_path, write_png):
    image = write_png("photo.png", picture(45, 38))  # odd, non-square, not a multiple of 2**levels
    out = tmp_path / "run"
    done = run_main("search", "--image", str(image), "--levels", "3", "--population", "2", "--generations", "0",
                    "--iterations", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert Image.open(out / "restored.png").size == (45, 38) and Image.open(out / "degraded.png").size == (45, 38)
    assert json.loads((out / "config.json").read_text())["size"] == [38, 45]
    assert "demo" not in done.stderr


def test_the_demo_keeps_its_small_crop_and_says_so(tmp_path):
    out = tmp_path / "demo"
    done = run_main("search", "--levels", "3", "--population", "2", "--generations", "0", "--iterations", "2",
                    "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "demo: a 48 px centre crop" in done.stderr
    assert Image.open(out / "restored.png").size == (48, 48)


@pytest.mark.parametrize("name", TASKS.names())
@pytest.mark.parametrize("size", [(57, 86), (41, 60)])  # 344x228 and an odd size, scaled down for the CPU
def test_every_task_restores_any_image_size_at_full_size(name, size, tmp_path):
    clean = picture(size[1], size[0])
    task = make_task(name, clean)
    result = restore(classical_dip(), task, FitRunner("cpu"), 2, run_seed=0)
    assert result.image.shape == (3, *task.output_size) and torch.isfinite(result.image).all()
    if name == "super-resolution":  # trimmed to multiples of the factor, never refused
        assert task.output_size == (size[0] // 4 * 4, size[1] // 4 * 4)
    else:
        assert task.output_size == size


def test_candidates_are_scored_on_crops_and_the_final_fit_is_whole(tiny_image):
    clean = torch.nn.functional.interpolate(tiny_image[None], size=(64, 80), mode="bilinear")[0]
    task = TASKS.get("denoise").from_clean(clean, {"sigma": 25.0}, 0)
    result = nasdip_deap.search(task, proxy="crops:n=2,size=32", levels=3, population=2, generations=0,
                                iterations=4, fitness="blind", final_cap=12, device="cpu")
    evaluator = result.search.evaluator
    assert [p.output_size for p in evaluator.problems] == [(32, 32), (32, 32)]
    assert [float(h.sum()) > 0 for h in evaluator.holdouts] == [True, True]
    assert not torch.equal(evaluator.holdouts[0], evaluator.holdouts[1])  # each crop its own held-out pixels
    record = result.best_record
    assert len(record["problems"]) == 2 and record["iterations"] == 8 and record["pixel_steps"] == 8 * 32 * 32
    assert record["fitness"][0] == pytest.approx(sum(p["metrics"]["heldout_psnr"] for p in record["problems"]) / 2)
    restored = result.restore(ensemble=1)  # scored on crops: the final fits' steps come from a calibration fit
    assert result.final_stop["rule"] == "heldout" and result.final_stop["calibration_iterations"] <= 12
    assert restored.image.shape == (3, 64, 80) and restored.iterations == max(result.final_stop["steps"], 4)
    assert result.restore(iterations=4, ensemble=1).iterations == 4  # a count given by hand is kept


def test_auto_proxy_downscales_only_large_images():
    small = TASKS.get("denoise").from_clean(torch.rand(3, 150, 180), {"sigma": 25.0}, 0)
    large = TASKS.get("denoise").from_clean(torch.rand(3, 512, 768), {"sigma": 25.0}, 0)
    assert isinstance(make_proxy("auto", small, 5), WholeImage)  # halving would go below 96 px
    proxy = make_proxy("auto", large, 5)
    assert isinstance(proxy, Downscale) and proxy.factor(large) == 4
    assert [p.output_size for p in proxy.problems(large, 0)] == [(128, 192)]


@pytest.mark.parametrize("name", TASKS.names())
def test_a_downscaled_task_is_the_same_problem_smaller(name, tiny_image):
    clean = torch.nn.functional.interpolate(tiny_image[None], size=(64, 64), mode="bilinear")[0]
    task = make_task(name, clean)
    small = task.downscale(2)
    assert type(small) is type(task) and small.output_size == (task.output_size[0] // 2, task.output_size[1] // 2)
    assert small.options == task.options and small.clean.shape[-2:] == torch.Size(small.output_size)
    assert torch.allclose(small.clean, torch.nn.functional.avg_pool2d(task.clean[None], 2)[0])


def test_downscaling_keeps_blocks_mostly_known_and_averages_their_known_pixels():
    from nasdip_deap.tasks import Inpaint

    mask = torch.ones(1, 4, 4)
    mask[0, 0, :2] = 0  # the top-left block: 2 of 4 known
    mask[0, 2:, 2:] = 0  # the bottom-right block: none known
    mask[0, 2, 0] = 0  # the bottom-left block: 3 of 4 known
    observation = torch.arange(48, dtype=torch.float32).reshape(3, 4, 4) / 48
    task = Inpaint(observation * mask, observed_mask=mask, options={"mask_ratio": 0.5})
    small = task.downscale(2)
    assert small.observed_mask[0].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    known = observation[0, 1, :2].mean()  # the top-left block's two known pixels
    assert float(small.observation[0, 0, 0]) == pytest.approx(float(known))


def test_an_ensemble_is_the_mean_of_its_single_fits(tiny_image):
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25.0}, 0)
    arch, runner = classical_dip(3), FitRunner("cpu")
    ensemble = restore(arch, task, runner, 5, run_seed=7, ensemble=3)
    singles = [runner.fit(arch, task, 5, seed=s).restored for s in member_seeds(7, arch, 3)]
    assert torch.allclose(ensemble.image, torch.stack(singles).mean(0), atol=1e-6)
    assert [m["seed"] for m in ensemble.members] == member_seeds(7, arch, 3)
    assert len({m["seed"] for m in ensemble.members}) == 3
    assert ensemble.members[0]["psnr"] == pytest.approx(task.quality(singles[0], task.clean)["psnr"])
    assert ensemble.metrics["psnr"] == pytest.approx(task.quality(ensemble.image, task.clean)["psnr"])
    assert member_seeds(7, arch, 1)[0] == member_seeds(7, arch, 3)[0]  # the first fit is the search fit's seed


def test_ensembles_through_the_cli_record_every_fit(tmp_path, write_png, tiny_image):
    image = write_png("img.png", tiny_image)
    out = tmp_path / "b"
    done = run_main("baseline", "--image", str(image), "--levels", "3", "--iterations", "3", "--ensemble", "2",
                    "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "average of 2 fits" in done.stdout
    result = json.loads((out / "summary.json").read_text())["result"]
    assert result["ensemble"] == 2 and len(result["members"]) == 2
    assert all({"psnr", "ssim", "seed"} <= set(m) for m in result["members"]) and "psnr" in result


def test_every_slot_buys_a_new_architecture(tiny_image):
    """A first population of identical genomes (spread 0), and generations of children that repeat their
    parents: with re-variation every evaluation fits a new architecture; without it, slots are wasted."""
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25.0}, 0)
    settings = dict(levels=3, population=4, generations=2, iterations=2, init_spread=0.0, cxpb=0.0, mutpb=0.2,
                    mutation="flip-bit:indpb=0.05")
    novel = tiny_search(task, **settings).run()
    stale = tiny_search(task, novel_retries=0, **settings).run()
    assert [row["duplicates"] for row in stale.logbook][0] == 3 and stale.logbook[0]["fits"] == 1
    assert all(row["duplicates"] == 0 and row["cache_hits"] == 0 for row in novel.logbook)
    assert all(row["fits"] == row["nevals"] for row in novel.logbook)
    assert sum(row["revaried"] for row in novel.logbook) >= 3
    keys = [r["key"] for r in novel.cache.values()]
    assert len(keys) == len(set(keys)) == novel.totals.fits


def test_blind_final_fits_can_be_scored_on_held_out_pixels(tiny_image):
    """--final-holdout: every final fit keeps the same held-out pixels out of its loss, and the ensemble
    gets a held-out PSNR; by default the final fits use every pixel and report none."""
    task = TASKS.get("denoise").from_clean(tiny_image, {"sigma": 25.0}, 0)
    settings = dict(levels=3, population=2, generations=0, iterations=4, fitness="blind", device="cpu")
    plain = nasdip_deap.search(task, **settings).restore(ensemble=2)
    held = nasdip_deap.search(task, final_holdout=True, **settings).restore(ensemble=2)
    assert "heldout_psnr" not in plain.metrics and "heldout_psnr" in held.metrics
    assert all("heldout_psnr" in m for m in held.members)
    assert held.metrics["heldout_psnr"] != held.members[0]["heldout_psnr"]
    assert not torch.equal(plain.image, held.image)


# -- the search's own fits, averaged into the restoration ------------------------------------------
def test_search_fits_keep_the_best_and_the_chosen_prefix_scores_best():
    from nasdip_deap.restoration import SearchFits, choose_search_fits

    pool = SearchFits(2)
    low, mid, high = (torch.full((1, 2, 2), v) for v in (0.1, 0.5, 0.9))
    pool.offer("low", 10.0, low)
    pool.offer("mid", 12.0, mid)
    pool.offer("high", 11.0, high)
    pool.offer("failed", float("nan"), low)
    assert [key for key, _, _ in pool.ranked()] == ["mid", "high"]  # the worst and the unscored are dropped

    def closeness(target):
        return lambda image: -float((image - target).abs().mean())

    assert [k for k, _, _ in choose_search_fits(pool.ranked(), closeness(0.7))] == ["mid", "high"]  # mean 0.7
    assert [k for k, _, _ in choose_search_fits(pool.ranked(), closeness(0.5))] == ["mid"]
    assert choose_search_fits([], closeness(0.5)) == []
    off = SearchFits(0)
    off.offer("mid", 12.0, mid)
    assert off.ranked() == []


def test_a_whole_image_search_averages_its_best_fits_into_the_restoration(tiny_image):
    task = make_task("denoise", tiny_image)
    search = tiny_search(task, levels=3, generations=1, fitness="blind")
    search.run()
    result = nasdip_deap.SearchResult(search, nasdip_deap.SearchConfig(fitness="blind"), task)
    kept = search.fit_outputs.ranked()
    scored = {k: r["fitness"][0] for k, r in search.cache.items() if r["error"] is None}
    assert len(kept) == min(16, len(scored)) >= 4
    assert all(scored[key] == quality and out.shape == task.clean.shape for key, quality, out in kept)
    chosen = result.chosen_search_fits()
    assert 1 <= len(chosen) and [k for k, _, _ in chosen] == [k for k, _, _ in kept[:len(chosen)]]
    prefix_scores = [search.evaluator.score_image(torch.stack([o for _, _, o in kept[:m]]).mean(0))
                     for m in range(1, len(kept) + 1)]
    assert prefix_scores[len(chosen) - 1] >= max(prefix_scores) - 1e-6  # mean vs running sum: rounding

    pooled = result.restore(iterations=5, ensemble=2)
    alone = result.restore(iterations=5, ensemble=2, search_fits=False)
    expected = (alone.image * 2 + sum(o for _, _, o in chosen)) / (2 + len(chosen))
    assert torch.allclose(pooled.image, expected, atol=1e-6)
    assert [f["key"] for f in pooled.summary()["search_fits"]] == [k for k, _, _ in chosen]
    assert pooled.final_fits["psnr"] == pytest.approx(alone.metrics["psnr"])
    assert alone.search_fits == [] and pooled.metrics["psnr"] != alone.metrics["psnr"]
    other = result.restore(iterations=5, architecture=classical_dip(3))  # another architecture: its fits only
    assert other.search_fits == []

    from types import SimpleNamespace

    from nasdip_deap.commands import classical_baseline

    classical = search.spec.decode(search.spec.encode(classical_dip(3)))
    final = {"label": "best found", "picture": "restored.png", **pooled.summary()}
    baseline = classical_baseline(result, SimpleNamespace(), None, classical, final, map)
    assert baseline["psnr"] == pytest.approx(alone.metrics["psnr"]) and baseline["picture"] is None
    assert "search_fits" not in baseline  # the best's own final fits, without the search fits averaged in


def test_candidates_scored_on_a_proxy_add_no_search_fits():
    task = make_task("denoise", picture(64, 64))
    search = tiny_search(task, levels=3, population=2, generations=0, proxy="downscale:size=32")
    search.run()
    assert search.fit_outputs.ranked() == [] and search.cache
    off = tiny_search(make_task("denoise", picture(32, 32)), levels=3, population=2, generations=0, search_fits=0)
    off.run()
    assert off.fit_outputs.ranked() == [] and off.cache


def test_search_fits_survive_a_checkpoint(tiny_image):
    from nasdip_deap import checkpoint

    task = make_task("denoise", tiny_image)
    search = tiny_search(task, levels=3, population=3, generations=0)
    search.run()
    fresh = tiny_search(task, levels=3, population=3, generations=0)
    checkpoint.restore(fresh, checkpoint.capture(search, {}), rng=False)
    before, after = search.fit_outputs.ranked(), fresh.fit_outputs.ranked()
    assert [(k, q) for k, q, _ in after] == [(k, q) for k, q, _ in before] and len(after) == 3
    assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(before, after))
