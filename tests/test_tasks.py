"""Restoration tasks: every registered task's degradation, forward model, quality and both fitness
modes on a tiny image; inpainting masks and super-resolution specifics; the CLI end to end for every
task; bad inputs (one-line errors, exit code 2)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from nasdip_deap import metrics
from nasdip_deap.cli import build_parser, main
from nasdip_deap.errors import UserError
from nasdip_deap.commands import task_from_args
from nasdip_deap.engine import fit
from nasdip_deap.genome import GenomeSpec, classical_dip
from nasdip_deap.image_io import load_image
from nasdip_deap.registry import TASKS
from nasdip_deap.tasks.inpaint import Inpaint, stripes_mask, text_mask
from nasdip_deap.tasks.super_resolution import SuperResolution, downsample

from .helpers import evaluator_for

TASK_NAMES = TASKS.names()
LEVELS = 3


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def default_options(name: str) -> dict:
    """A task's options with no option given (works for plugins too)."""
    return TASKS.get(name).resolve_options({})


def make_task(name: str, clean: torch.Tensor, seed: int = 1):
    return TASKS.get(name).from_clean(clean, default_options(name), seed)


def run_main(capsys, *argv: str) -> tuple[int, str]:
    """The real CLI in-process: (exit code, stderr); argparse's own errors exit through SystemExit."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_user_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert lines and lines[-1].startswith(("nasdip: error:", "nasdip search: error:", "nasdip baseline: error:"))
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_the_three_paper_tasks_are_registered():
    assert {"denoise", "inpaint", "super-resolution"} <= set(TASK_NAMES)


# -- every registered task ------------------------------------------------------------------------
@pytest.mark.parametrize("name", TASK_NAMES)
def test_degrade_forward_quality_preview(name, tiny_image):
    task = make_task(name, tiny_image)
    obs_size = tuple(task.observation.shape[-2:])
    assert task.observation.shape[0] == tiny_image.shape[0] == task.channels
    assert tuple(task.observed_mask.shape) == (1, *obs_size)
    assert task.output_size == (32, 32)
    assert task.clean is tiny_image or torch.equal(task.clean, tiny_image)
    assert obs_size != (32, 32) or not torch.allclose(task.observation, tiny_image), "the degradation changes it"
    # the forward model maps the output size to the observation size
    assert tuple(task.forward(tiny_image.unsqueeze(0)).shape) == (1, task.channels, *obs_size)
    assert tuple(task.preview().shape) == (task.channels, 32, 32)
    perfect = task.quality(tiny_image, tiny_image)
    assert perfect["psnr"] >= 99 and perfect["ssim"] == pytest.approx(1.0)
    worse = task.quality((tiny_image + 0.1).clamp(0, 1), tiny_image)
    assert worse["psnr"] < 40 and worse["ssim"] < 1
    again = make_task(name, tiny_image)
    assert torch.equal(again.observation, task.observation), "same seed, same degradation"
    json.dumps(task.describe())  # saved in config.json


@pytest.mark.parametrize("name", TASK_NAMES)
def test_grayscale_image_is_one_channel_end_to_end(name, tiny_image):
    gray = tiny_image.mean(0, keepdim=True)
    task = make_task(name, gray)
    assert task.channels == 1 and task.preview().shape[0] == 1
    result = fit(classical_dip(LEVELS), task, 3, device="cpu", seed=0)
    assert tuple(result.restored.shape) == (1, 32, 32)
    assert np.isfinite(result.metrics["psnr"]) and np.isfinite(result.metrics["ssim"])


@pytest.mark.parametrize("name", TASK_NAMES)
def test_rgba_and_grayscale_files_build_every_task(name, tmp_path, tiny_image):
    rgb = (tiny_image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, np.full((32, 32), 100, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "gray.png")
    for image, channels in (("rgba.png", 3), ("gray.png", 1)):
        task = task_from_args(parse("baseline", "--task", name, "--image", str(tmp_path / image), "--levels", "2"), 2)
        assert task.channels == channels == task.clean.shape[0] == task.preview().shape[0]


@pytest.mark.parametrize("mode", ["reference", "blind"])
@pytest.mark.parametrize("name", TASK_NAMES)
def test_fitness_modes_through_evaluator_record(name, mode, tiny_image):
    task = make_task(name, tiny_image)
    spec = GenomeSpec(levels=LEVELS)
    evaluator = evaluator_for(task, fitness=mode, iterations=6, holdout=0.25, seed=3, levels=LEVELS)
    record = evaluator.record(spec.encode(classical_dip(LEVELS)))
    assert record["error"] is None, record.get("traceback")
    assert np.isfinite(record["metrics"]["psnr"]), "the true PSNR is recorded in both modes"
    if mode == "reference":
        assert record["fitness"] == [record["metrics"]["psnr"]]
        assert evaluator.holdouts == [None]
    else:
        assert record["fitness"] == [record["metrics"]["heldout_psnr"]]
        assert record["metrics"]["heldout_psnr"] != record["metrics"]["psnr"]
        # the hold-out lives in observation space, on observed pixels only
        held = evaluator.holdouts[0]
        assert held.shape == task.observed_mask.shape
        assert 0 < float(held.sum()) < float(task.observed_mask.sum())
        assert float((held * (1 - task.observed_mask)).sum()) == 0
    assert evaluator.record(record["bits"])["fitness"] == record["fitness"], "deterministic on the CPU"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_blind_fitness_never_sees_the_clean_image(name, tiny_image):
    """Changing the ground truth changes the recorded true PSNR but not the blind fitness."""
    task = make_task(name, tiny_image)
    other = make_task(name, tiny_image)
    other.clean = (tiny_image * 0.5).contiguous()
    spec = GenomeSpec(levels=LEVELS)
    bits = spec.encode(classical_dip(LEVELS))
    settings = {"fitness": "blind", "iterations": 4, "holdout": 0.25, "seed": 0, "levels": LEVELS}
    a = evaluator_for(task, **settings).record(bits)
    b = evaluator_for(other, **settings).record(bits)
    assert a["fitness"] == b["fitness"]
    assert a["metrics"]["psnr"] != b["metrics"]["psnr"]


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_blind_fitness_warns_when_it_holds_out_few_pixels(tiny_image):
    """SR x4 on 32 px observes 8 x 8 low-resolution pixels: a 25% hold-out is ~16 pixels, too few."""
    handler = ListHandler()
    logger = logging.getLogger("nasdip.fitness")
    logger.addHandler(handler)
    try:
        settings = {"fitness": "blind", "iterations": 1, "holdout": 0.25, "seed": 0, "levels": LEVELS}
        evaluator_for(SuperResolution.from_clean(tiny_image, {"scale": 4}, 0), **settings)
        assert len(handler.messages) == 1 and "of 64 observed pixels" in handler.messages[0]
        evaluator_for(SuperResolution.from_clean(torch.rand(3, 128, 128), {"scale": 2}, 0), **settings)
        assert len(handler.messages) == 1, "1024 observed pixels hold out enough"
    finally:
        logger.removeHandler(handler)


# -- super-resolution -----------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_sr_forward_of_a_constant_image_is_that_constant(scale):
    task = SuperResolution.from_clean(torch.full((3, 32, 32), 0.37), {"scale": scale}, 0)
    out = task.forward(torch.full((1, 3, 32, 32), 0.62))
    assert tuple(out.shape) == (1, 3, 32 // scale, 32 // scale)
    assert torch.allclose(out, torch.full_like(out, 0.62), atol=1e-5)
    assert torch.allclose(task.observation, torch.full_like(task.observation, 0.37), atol=1e-5)


def test_sr_observation_is_the_forward_model_of_the_clean_image_and_differentiable(tiny_image):
    task = SuperResolution.from_clean(tiny_image, {"scale": 4}, 0)
    assert torch.allclose(task.forward(tiny_image.unsqueeze(0))[0].clamp(0, 1), task.observation)
    # antialiased: a one-pixel checkerboard averages out instead of aliasing to a pattern
    checker = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2).float().expand(1, 32, 32)
    assert float(downsample(checker, 4).std()) < 0.05
    output = tiny_image.unsqueeze(0).clone().requires_grad_(True)
    task.forward(output).sum().backward()
    assert output.grad is not None and float(output.grad.abs().sum()) > 0


def test_sr_quality_is_y_channel_with_a_border_crop_of_the_factor():
    clean = 0.3 + 0.4 * torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    task = SuperResolution.from_clean(clean, {"scale": 4}, 0)
    border = clean.clone()
    border[:, :4, :] = 1 - border[:, :4, :]  # damage only the 4-pixel border
    assert task.quality(border, clean)["psnr"] >= 99
    assert task.quality(border, clean)["psnr_rgb"] < 30
    same_luma = clean.clone()  # more red, less blue, same BT.601 luma
    same_luma[0] += 0.05
    same_luma[2] -= 0.05 * 65.481 / 24.966
    assert task.quality(same_luma, clean)["psnr"] > 60
    assert task.quality(same_luma, clean)["psnr_rgb"] < 30
    darker = clean - 0.1
    assert task.quality(darker, clean)["psnr"] == pytest.approx(metrics.psnr(metrics.rgb_to_y(darker),
                                                                              metrics.rgb_to_y(clean)), abs=0.01)


def test_sr_preview_is_nearest_upsampling_of_the_low_res_image(tiny_image):
    task = SuperResolution.from_clean(tiny_image, {"scale": 2}, 0)
    preview = task.preview()
    assert torch.equal(preview[:, ::2, ::2], task.observation)
    assert torch.equal(preview[:, 1::2, 1::2], task.observation)


def test_sr_from_observed_low_res_image_with_clean_cropped_at_the_same_place(tmp_path, write_png):
    big = torch.rand(3, 60, 60, generator=torch.Generator().manual_seed(1))
    clean = load_image(write_png("clean.png", big))
    low = write_png("low.png", downsample(clean, 2).clamp(0, 1))
    args = parse("baseline", "--task", "super-resolution", "--scale", "2", "--observed", str(low),
                 "--clean", str(tmp_path / "clean.png"), "--crop", "9", "--levels", "2")
    task = task_from_args(args, 2)
    assert tuple(task.observation.shape) == (3, 9, 9) and task.output_size == (18, 18)
    assert torch.equal(task.clean, clean[:, 20:38, 20:38])  # rows 10..18 of the 30 px observation, x2


# -- inpainting -----------------------------------------------------------------------------------
def test_inpaint_loss_ignores_missing_pixels(tiny_image):
    """Whatever the observation holds at missing pixels, the fit is the same (same loss history)."""
    mask = stripes_mask((32, 32))
    task = Inpaint.from_clean(tiny_image, {"mask_pattern": "stripes"}, 0)
    assert torch.equal(task.observed_mask, mask)
    scribbled = Inpaint(task.observation + (1 - mask) * 0.9, observed_mask=mask, options=task.options)
    arch = classical_dip(LEVELS)
    a = fit(arch, task, 5, device="cpu", seed=0)
    b = fit(arch, scribbled, 5, device="cpu", seed=0)
    assert a.loss_history == b.loss_history
    assert torch.equal(a.restored, b.restored)
    unmasked = Inpaint(task.observation + (1 - mask) * 0.9, observed_mask=torch.ones(1, 32, 32), options={})
    assert fit(arch, unmasked, 5, device="cpu", seed=0).loss_history != a.loss_history  # the check can fail


def test_inpaint_preview_shows_missing_pixels_black(tiny_image):
    task = Inpaint.from_clean(tiny_image + 0.05, {"mask_ratio": 0.3}, 0)
    missing = task.observed_mask[0] == 0
    assert 0.2 < float(missing.float().mean()) < 0.4
    assert float(task.preview()[:, missing].abs().max()) == 0
    assert torch.equal(task.preview()[:, ~missing], (tiny_image + 0.05)[:, ~missing])


@pytest.mark.parametrize("pattern", ["text", "stripes"])
def test_inpaint_patterns_have_known_and_missing_pixels(pattern, tiny_image):
    mask = (text_mask if pattern == "text" else stripes_mask)((32, 48))
    assert tuple(mask.shape) == (1, 32, 48)
    assert 0.05 < 1 - float(mask.mean()) < 0.5
    assert torch.equal(mask, (text_mask if pattern == "text" else stripes_mask)((32, 48)))


def test_inpaint_mask_file_zero_missing_nonzero_known_cropped_like_the_image(tmp_path, write_png):
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(2))
    write_png("img.png", image)
    mask = np.full((40, 40), 255, np.uint8)
    mask[10:30, 18:22] = 0          # a hole inside the 32 px centre crop
    mask[0:4, 0:4] = 0              # a hole outside it
    mask[25, 25] = 3                # any nonzero value is known
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = parse("baseline", "--task", "inpaint", "--image", str(tmp_path / "img.png"),
                 "--mask", str(tmp_path / "mask.png"), "--crop", "32", "--levels", "2")
    task = task_from_args(args, 2)
    expected = torch.from_numpy((mask[4:36, 4:36] > 0).astype(np.float32)).unsqueeze(0)
    assert torch.equal(task.observed_mask, expected)
    assert float(task.observation[:, expected[0] == 0].abs().max()) == 0


def test_inpaint_rgb_mask_and_grayscale_and_rgba_images(tmp_path, write_png, tiny_image):
    rgb_mask = torch.ones(3, 32, 32)
    rgb_mask[:, 8:12, :] = 0
    rgb_mask[2, 9, 0] = 0.5  # one nonzero channel is enough to be known
    write_png("mask.png", rgb_mask)
    write_png("gray.png", tiny_image[:1])
    rgba = (tiny_image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(np.dstack([rgba, np.full((32, 32), 128, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    for image, channels in (("gray.png", 1), ("rgba.png", 3)):
        args = parse("baseline", "--task", "inpaint", "--image", str(tmp_path / image),
                     "--mask", str(tmp_path / "mask.png"), "--levels", "2")
        task = task_from_args(args, 2)
        assert task.channels == channels
        assert float(task.observed_mask.sum()) == 32 * 32 - 4 * 32 + 1


# -- bad inputs ------------------------------------------------------------------------------------
@pytest.fixture
def mask_files(tmp_path, tiny_image, write_png):
    write_png("img.png", tiny_image)
    write_png("small_mask.png", torch.ones(1, 16, 16))
    write_png("known.png", torch.ones(1, 32, 32))
    write_png("missing.png", torch.zeros(1, 32, 32))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return tmp_path


@pytest.mark.parametrize("mask, needle", [
    ("small_mask.png", "16x16 px but the image is 32x32 px"),
    ("known.png", "every pixel as known"),
    ("missing.png", "every pixel as missing"),
    ("broken.png", "mask"),
    ("absent.png", "does not exist"),
])
def test_bad_masks_are_one_line_user_errors(capsys, mask_files, mask, needle, tmp_path):
    code, err = run_main(capsys, "baseline", "--task", "inpaint", "--image", str(mask_files / "img.png"),
                         "--mask", str(mask_files / mask), "--iterations", "1", "--levels", "2",
                         "--out", str(tmp_path / "out"))
    assert_user_error(code, err, needle)


def test_a_crop_that_leaves_no_missing_pixel_is_refused(capsys, tmp_path, write_png):
    write_png("img.png", torch.rand(3, 64, 64))
    mask = torch.ones(1, 64, 64)
    mask[:, :4, :4] = 0  # outside the centre crop
    write_png("mask.png", mask)
    code, err = run_main(capsys, "baseline", "--task", "inpaint", "--image", str(tmp_path / "img.png"),
                         "--mask", str(tmp_path / "mask.png"), "--crop", "32", "--levels", "2",
                         "--out", str(tmp_path / "out"))
    assert_user_error(code, err, "every pixel as known", "--crop")


@pytest.mark.parametrize("argv, needles", [
    (["--task", "super-resolution", "--scale", "3"], ["--scale", "2, 4, 8"]),
    (["--task", "inpaint", "--mask-ratio", "0.4", "--mask-pattern", "text"], ["one mask source"]),
    (["--task", "inpaint", "--mask-ratio", "1"], ["--mask-ratio"]),
    (["--task", "no-such-task"], ["unknown task 'no-such-task'", "denoise", "inpaint", "super-resolution"]),
])
def test_bad_task_options_are_one_line_user_errors(capsys, tmp_path, argv, needles):
    code, err = run_main(capsys, "baseline", *argv, "--iterations", "1", "--levels", "2",
                         "--out", str(tmp_path / "out"))
    assert_user_error(code, err, *needles)
    assert not (tmp_path / "out").exists(), "nothing is written for a rejected problem"


def test_super_resolution_trims_a_clean_image_to_multiples_of_the_factor(tmp_path):
    """A whole photo whose sides are not multiples of the factor is restored at the largest centred size
    that is (36 px at x8: 32 px), instead of being refused."""
    task = SuperResolution.from_clean(torch.rand(3, 36, 44), {"scale": 8}, 0)
    assert task.output_size == (32, 40) and tuple(task.observation.shape) == (3, 4, 5)


@pytest.mark.parametrize("option, value, owner", [("--mask-ratio", "0.3", "inpaint"), ("--scale", "2",
                                                                                        "super-resolution")])
def test_an_option_of_another_task_is_an_error(capsys, tmp_path, option, value, owner):
    code, err = run_main(capsys, "baseline", "--task", "denoise", option, value, "--out", str(tmp_path / "out"))
    assert_user_error(code, err, f"{option} applies to task {owner}, not denoise")
    assert not (tmp_path / "out").exists()


def test_inpainting_an_observed_image_needs_its_mask(capsys, tmp_path, write_png, tiny_image):
    write_png("obs.png", tiny_image)
    code, err = run_main(capsys, "baseline", "--task", "inpaint", "--observed", str(tmp_path / "obs.png"),
                         "--mask-ratio", "0.5", "--out", str(tmp_path / "out"))
    assert_user_error(code, err, "--mask")


def test_options_are_checked_outside_the_cli_too(tiny_image):
    with pytest.raises(UserError, match="2, 4, 8"):
        SuperResolution.from_clean(tiny_image, {"scale": 3}, 0)
    with pytest.raises(UserError, match="every pixel as missing"):
        Inpaint.from_clean(tiny_image, {}, 0, mask=torch.zeros(1, 32, 32))
    with pytest.raises(UserError, match="after cropping"):
        Inpaint.from_clean(tiny_image, {}, 0, mask=torch.ones(1, 16, 16))


# -- the CLI end to end, every task -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", TASK_NAMES)
def test_search_restore_baseline_end_to_end(name, cli, tmp_path):
    search_dir = tmp_path / "search"
    done = cli("search", "--task", name, "--crop", "16", "--population", "3", "--generations", "1",
               "--iterations", "10", "--levels", "3", "--fitness", "blind", "--holdout", "0.2", "--seed", "1",
               "--out", str(search_dir), "--quiet")
    assert done.returncode == 0, done.stderr
    best = json.loads((search_dir / "best.json").read_text())
    assert best["task"]["task"] == name and best["fitness_mode"] == "blind"
    assert np.isfinite(best["psnr"])
    lines = [json.loads(line) for line in (search_dir / "evaluations.jsonl").read_text().splitlines()]
    fits = [rec for rec in lines if rec.get("metrics")]
    assert fits and all("heldout_psnr" in rec["metrics"] and "psnr" in rec["metrics"] for rec in fits)
    assert Image.open(search_dir / "restored.png").size == (16, 16)
    assert Image.open(search_dir / "degraded.png").size == (16, 16)
    for command, extra in (("restore", ["--genome", str(search_dir / "best.json")]), ("baseline", [])):
        out = tmp_path / command
        done = cli(command, "--task", name, "--crop", "16", "--iterations", "5", "--levels", "3", *extra,
                   "--out", str(out), "--quiet")
        assert done.returncode == 0, done.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["task"]["task"] == name and np.isfinite(summary["result"]["psnr"])
        assert Image.open(out / "restored.png").size == (16, 16)


@pytest.mark.slow
def test_super_resolution_of_an_observed_low_res_image(cli, tmp_path, write_png, tiny_image):
    low = write_png("low.png", downsample(tiny_image, 2).clamp(0, 1))
    write_png("clean.png", tiny_image)
    done = cli("baseline", "--task", "super-resolution", "--scale", "2", "--observed", str(low),
               "--clean", str(tmp_path / "clean.png"), "--iterations", "3", "--levels", "3",
               "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "PSNR" in done.stdout
    assert Image.open(tmp_path / "out" / "restored.png").size == (32, 32)
    assert Image.open(tmp_path / "out" / "degraded.png").size == (32, 32)  # nearest-upsampled preview


def test_psnr_history_uses_the_tasks_own_psnr(tiny_image):
    """Super-resolution reports Y-channel PSNR with a cropped border; the curve during the fit must be
    the same measure as the final figure, or the two disagree by a dB or more."""
    from nasdip_deap import classical_dip
    from nasdip_deap.engine import fit

    clean = torch.nn.functional.interpolate(tiny_image[None], size=(64, 64), mode="bilinear")[0]
    task = TASKS.get("super-resolution").from_clean(clean, {"scale": 4}, seed=0)
    result = fit(classical_dip(3), task, 20, device="cpu", seed=0)
    assert result.psnr_history[-1][0] == 20
    assert abs(result.psnr_history[-1][1] - result.metrics["psnr"]) < 0.05
    assert abs(result.metrics["psnr"] - result.metrics["psnr_rgb"]) > 0.05  # the measures do differ
