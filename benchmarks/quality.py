"""Quality benchmark: do searched architectures beat classical DIP, without ground truth?

For each task (denoise sigma 25, inpaint with the image's mask or a text mask, super-resolution x4)
and each image, it runs classical DIP with the reference settings for the task, and a search with
**blind** fitness (no ground truth used) followed by final fits of the best architecture; every final
fit is repeated over ``--seeds`` seeds. Optionally the same search with reference fitness shows what
the blind fitness leaves on the table. Prints and saves a table (JSON + Markdown):

    python benchmarks/quality.py --size 64                      # images in ../shared/data + astronaut
    python benchmarks/quality.py --images my.png --tasks denoise --size 128 --also-reference
    python benchmarks/quality.py --size 0 --device cuda         # full size, on a GPU
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch

from nasdip_deap import classical_dip
from nasdip_deap.api import search_architecture
from nasdip_deap.fit import fit
from nasdip_deap.fitness import derive_seed
from nasdip_deap.image_io import center_crop, default_image, load_image
from nasdip_deap.registry import TASKS

REPO = Path(__file__).resolve().parents[1]
TASK_NAMES = ("denoise", "inpaint", "super-resolution")
MASKS = {"kate.png": "kate_mask.png", "vase.png": "vase_mask.png"}


def default_images() -> list[str]:
    data = Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))
    found = [str(data / n) for n in ("F16_GT.png", "kate.png", "vase.png", "snail.jpg") if (data / n).exists()]
    return found + ["astronaut"]


def load_clean(name: str, size: int) -> torch.Tensor:
    img = default_image() if name == "astronaut" else load_image(name)
    return center_crop(img, size or None)


def make_task(task_name: str, image: str, size: int, seed: int):
    """The degraded problem for one (task, image) cell of the table."""
    clean = load_clean(image, size)
    cls = TASKS.get(task_name)
    degrade_seed = derive_seed(seed, "degrade", task_name)
    if task_name == "denoise":
        return cls.from_clean(clean, {"sigma": 25.0}, degrade_seed)
    if task_name == "super-resolution":
        h, w = clean.shape[-2:]
        clean = clean[..., : h - h % 4, : w - w % 4]
        return cls.from_clean(clean, {"scale": 4}, degrade_seed)
    mask_file = MASKS.get(Path(image).name)
    if mask_file and (Path(image).parent / mask_file).exists():
        from nasdip_deap.image_io import load_image as read

        mask = center_crop((read(Path(image).parent / mask_file).amax(0, keepdim=True) > 0).float(), size or None)
        if 0 < float(mask.mean()) < 1:
            return cls.from_clean(clean, {"mask": mask_file}, degrade_seed, mask=mask)
    return cls.from_clean(clean, {"mask_pattern": "text"}, degrade_seed)


def classical_for(task_name: str):
    """Classical DIP with the reference notebooks' settings for the task (reg-noise 1/30 for
    denoising, 0.03 for super-resolution and inpainting; lr 0.01; skip 128/128/4)."""
    arch = classical_dip()
    return arch if task_name == "denoise" else dataclasses.replace(arch, reg_noise_std=0.03)


def final_fits(arch, task, iterations: int, seeds: int, device: str) -> dict:
    rows = [fit(arch, task, iterations, device=device, seed=1000 + s).metrics for s in range(seeds)]
    psnr = [r["psnr"] for r in rows]
    ssim = [r["ssim"] for r in rows]
    return {"psnr": statistics.mean(psnr), "psnr_std": statistics.pstdev(psnr), "ssim": statistics.mean(ssim),
            "ssim_std": statistics.pstdev(ssim), "runs": rows}


def run_cell(task_name: str, image: str, args) -> dict:
    task = make_task(task_name, image, args.size, args.seed)
    started = time.perf_counter()
    classical = final_fits(classical_for(task_name), task, args.final_iterations, args.seeds, args.device)
    row = {"image": Path(image).name, "task": task_name, "size": list(task.output_size), "classical": classical}
    for mode in ("blind",) + (("reference",) if args.also_reference else ()):
        t = time.perf_counter()
        run = search_architecture(task, population=args.population, generations=args.generations,
                                  iterations=args.iterations, fitness=mode, seed=args.seed, device=args.device,
                                  fidelity=args.fidelity, early_stop=args.early_stop)
        best = run.spec.decode(run.best())
        row[mode] = {**final_fits(best, task, args.final_iterations, args.seeds, args.device),
                     "architecture": best.summary(), "fits": run.totals.fits,
                     "iterations": run.totals.iterations, "search_seconds": time.perf_counter() - t}
    row["seconds"] = time.perf_counter() - started
    return row


def fmt(cell: dict) -> str:
    return f"{cell['psnr']:.2f}±{cell['psnr_std']:.2f} / {cell['ssim']:.3f}"


def markdown(rows: list[dict], args) -> str:
    modes = ["blind"] + (["reference"] if args.also_reference else [])
    head = "| image | task | classical PSNR/SSIM | " + " | ".join(
        f"searched ({m}) PSNR/SSIM | diff ({m}) | compute ({m})" for m in modes) + " |"
    lines = [head, "|" + "---|" * (3 + 3 * len(modes))]
    for r in rows:
        cells = [r["image"], r["task"], fmt(r["classical"])]
        for m in modes:
            s = r[m]
            cells += [fmt(s), f"{s['psnr'] - r['classical']['psnr']:+.2f} dB",
                      f"{s['fits']} fits, {s['iterations']} it, {s['search_seconds']:.0f}s"]
        lines.append("| " + " | ".join(cells) + " |")
    for m in modes:
        by_task = {}
        for r in rows:
            by_task.setdefault(r["task"], []).append(r[m]["psnr"] - r["classical"]["psnr"])
        summary = ", ".join(f"{t} {statistics.mean(v):+.2f} dB" for t, v in by_task.items())
        overall = statistics.mean(statistics.mean(v) for v in by_task.values())
        lines.append(f"\nMean gain of the {m}-fitness search over classical DIP: {summary}; across tasks "
                     f"{overall:+.2f} dB.")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", help="clean image paths, or 'astronaut' (default: ../shared/data + astronaut)")
    p.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES))
    p.add_argument("--size", type=int, default=64, help="centre crop in pixels (0 = full size)")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--iterations", type=int, default=400, help="DIP iterations per fit during the search")
    p.add_argument("--final-iterations", type=int, default=1000, help="iterations of every final fit")
    p.add_argument("--seeds", type=int, default=3, help="final fits per architecture")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", default="full")
    p.add_argument("--early-stop", type=int)
    p.add_argument("--also-reference", action="store_true", help="also search with reference fitness")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="quality-results", help="folder for quality.json and quality.md")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    images = args.images or default_images()
    rows = []
    for image in images:
        for task_name in args.tasks:
            row = run_cell(task_name, image, args)
            rows.append(row)
            print(f"{row['image']:<14} {task_name:<17} classical {fmt(row['classical'])}  blind-searched "
                  f"{fmt(row['blind'])}  ({row['seconds']:.0f}s)", flush=True)
    table = markdown(rows, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps({"arguments": vars(args), "rows": rows}, indent=2, default=str))
    (out / "quality.md").write_text(table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
