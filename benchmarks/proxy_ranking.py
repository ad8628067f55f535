"""How well cheap proxies of a large image rank architectures: Spearman correlation between a proxy's
fitness and the true PSNR of a whole-image fit.

For each image, ``--archs`` architectures (classical DIP, random genomes and mutants of classical DIP)
are fitted on the whole image with every observed pixel (what the final fit of a search does) and on
each proxy: centre crops, several crops spread over the image (each with its own held-out pixels),
and a copy downscaled by 2 (block means of the observed pixels, ``Task.downscale``). Proxy fits use
blind fitness (10 % of the observed pixels held out; no ground truth), and their true PSNR on the crop
is recorded too, so both a blind and a reference proxy are ranked. ``none`` is a search without a
proxy: a blind fit of the whole image. Every fit is written to ``--out`` as it finishes, and a rerun
skips the fits already there, so the script can be stopped and continued (or split over two
processes with ``--reverse``).

    python benchmarks/proxy_ranking.py --image hill --size 192 --iterations 300 --out runs/proxy-hill.json
    python benchmarks/proxy_ranking.py --report runs/proxy-hill.json runs/proxy-kodim03.json
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nasdip_deap.engine import fit  # noqa: E402
from nasdip_deap.fitness import derive_seed, make_holdout  # noqa: E402
from nasdip_deap.genome import GenomeSpec, classical_dip  # noqa: E402
from nasdip_deap.image_io import center_crop, load_image  # noqa: E402
from nasdip_deap.registry import TASKS  # noqa: E402

HOLDOUT = 0.1


def data_folder() -> Path:
    return Path(os.environ.get("NASDIP_DATA", ROOT.parent / "shared" / "data"))


def load_problem(name: str, size: int):
    """The whole-image task: a standard noisy input (``dip-color-denoise-25``) or kate with its mask."""
    data = data_folder()
    if name == "kate":
        clean = center_crop(load_image(data / "kate.png"), size)
        mask = center_crop((load_image(data / "kate_mask.png").amax(0, keepdim=True) > 0).float(), size)
        return TASKS.get("inpaint")(clean * mask, clean=clean, observed_mask=mask, options={"mask": "kate_mask.png"})
    folder = data / "dip-color-denoise-25"
    clean = center_crop(load_image(folder / f"{name}_GT.png"), size)
    noisy = center_crop(load_image(folder / f"{name}_noisy.png"), size)
    return TASKS.get("denoise")(noisy, clean=clean, options={"sigma": 25.0})


def architectures(spec: GenomeSpec, count: int, seed: int) -> list[list[int]]:
    """Classical DIP, then alternately random genomes and distinct mutants of classical DIP (bit flips,
    p 0.05)."""
    rng = random.Random(seed)
    classical = spec.encode(classical_dip(spec.levels))
    out, keys = [classical], {spec.decode(classical).key()}
    while len(out) < count:
        bits = spec.random_bits(rng) if len(out) % 2 else [b ^ int(rng.random() < 0.05) for b in classical]
        if spec.decode(bits).key() not in keys:  # distinct architectures only
            keys.add(spec.decode(bits).key())
            out.append(bits)
    return out


def sub_task(task, top: int, left: int, size: int):
    """The task restricted to a ``size`` square at (top, left): observation, mask and ground truth."""
    window = (slice(None), slice(top, top + size), slice(left, left + size))
    return type(task)(task.observation[window], clean=task.clean[window], observed_mask=task.observed_mask[window],
                      options=task.options)


def spread_positions(height: int, width: int, size: int, n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` crop corners, one drawn at random inside each cell of a grid over the image."""
    rng = random.Random(seed)
    rows = max(1, int(math.sqrt(n)))
    cols = math.ceil(n / rows)
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        top_lo, top_hi = r * (height - size) // rows, (r + 1) * (height - size) // rows
        left_lo, left_hi = c * (width - size) // cols, (c + 1) * (width - size) // cols
        out.append((rng.randint(top_lo, max(top_lo, top_hi)), rng.randint(left_lo, max(left_lo, left_hi))))
    return out


def fits_needed(task, name: str) -> dict[str, object]:
    """Every fit the proxies need: name -> sub-task (or the whole task, for ``whole`` and ``none``)."""
    h, w = task.output_size
    jobs = {"whole": task, "none": task}
    for size in (64, 96, 128):
        jobs[f"centre{size}"] = sub_task(task, (h - size) // 2, (w - size) // 2, size)
    for i, (top, left) in enumerate(spread_positions(h, w, 64, 4, seed=7)):
        jobs[f"spread64_{i}"] = sub_task(task, top, left, 64)
    jobs["down2"] = task.downscale(2)
    return jobs


PROXIES = {  # proxy -> the fits whose scores it averages
    "none": ["none"],
    "crop 64": ["centre64"],
    "crop 96": ["centre96"],
    "crop 128": ["centre128"],
    "2 crops of 64": ["spread64_0", "spread64_1"],
    "4 crops of 64": ["spread64_0", "spread64_1", "spread64_2", "spread64_3"],
    "downscale x2": ["down2"],
}


def one_fit(bits, spec, job: str, task, iterations: int, seed: int) -> dict:
    arch = spec.decode(bits)
    fit_seed = derive_seed(seed, arch.key())
    blind = job != "whole"
    holdout = make_holdout(task, HOLDOUT, seed) if blind else None
    fit_task = task
    if blind:  # the fit itself never sees the clean image; its true PSNR is computed after
        fit_task = type(task)(task.observation, clean=None, observed_mask=task.observed_mask, options=task.options)
    started = time.perf_counter()
    result = fit(arch, fit_task, iterations, device="cpu", seed=fit_seed, holdout=holdout)
    return {"job": job, "key": arch.key(), "pixels": task.output_size[0] * task.output_size[1],
            "heldout_psnr": result.metrics.get("heldout_psnr"),
            "true_psnr": task.quality(result.restored, task.clean)["psnr"],
            "seconds": time.perf_counter() - started}


def run(args) -> None:
    torch.set_num_threads(1)
    spec = GenomeSpec()
    task = load_problem(args.image, args.size)
    out = Path(args.out)
    jobs = {k: v for k, v in fits_needed(task, args.image).items() if k not in (args.skip or ())}
    archs = architectures(spec, args.archs, args.seed)
    for bits in reversed(archs) if args.reverse else archs:
        key = spec.decode(bits).key()
        for job, sub in jobs.items():
            if (key, job) in fits_in(out, args):
                continue
            record = one_fit(bits, spec, job, sub, args.iterations, args.seed)
            with locked(out):
                done = read_fits(out, args)
                if (key, job) not in {(f["key"], f["job"]) for f in done["fits"]}:
                    done["fits"].append(record)
                    out.write_text(json.dumps(done, indent=1))
            print(f"{args.image} {key[:8]} {job:<12} true {record['true_psnr']:6.2f} held-out "
                  f"{record['heldout_psnr'] or float('nan'):6.2f}  {record['seconds']:.0f}s", flush=True)


def read_fits(out: Path, args) -> dict:
    if out.exists():
        return json.loads(out.read_text())
    return {"image": args.image, "size": args.size, "iterations": args.iterations, "fits": []}


def fits_in(out: Path, args) -> set:
    """The (architecture, fit) pairs already in ``out``, read afresh: a second process (``--reverse``)
    may be writing the same file."""
    with locked(out):
        return {(f["key"], f["job"]) for f in read_fits(out, args)["fits"]}


@contextlib.contextmanager
def locked(out: Path):
    with open(str(out) + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def report(paths: list[str]) -> str:
    from scipy.stats import spearmanr

    lines = ["| proxy | image | Spearman, blind proxy | Spearman, reference proxy | compute (share of a whole fit) |",
             "|---|---|---|---|---|"]
    summary: dict[str, list] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        by_key: dict[str, dict] = {}
        for f in data["fits"]:
            by_key.setdefault(f["key"], {})[f["job"]] = f
        complete = [fits for fits in by_key.values() if "whole" in fits]
        truth = [fits["whole"]["true_psnr"] for fits in complete]
        whole_pixels = complete[0]["whole"]["pixels"]
        for proxy, parts in PROXIES.items():
            rows = [fits for fits in complete if all(p in fits for p in parts)]
            if len(rows) < 4:
                continue
            blind = [sum(fits[p]["heldout_psnr"] for p in parts) / len(parts) for fits in rows]
            ref = [sum(fits[p]["true_psnr"] for p in parts) / len(parts) for fits in rows]
            true = [fits["whole"]["true_psnr"] for fits in rows]
            rho_b = spearmanr(blind, true).statistic
            rho_r = spearmanr(ref, true).statistic if proxy != "none" else float("nan")
            cost = sum(rows[0][p]["pixels"] for p in parts) / whole_pixels
            summary.setdefault(proxy, []).append((rho_b, rho_r, cost))
            lines.append(f"| {proxy} | {data['image']} {data['size']} px ({len(rows)} archs) | {rho_b:.2f} | "
                         f"{rho_r:.2f} | {cost:.2f} |")
        del truth
    lines += ["", "| proxy | mean Spearman, blind | mean Spearman, reference | compute |", "|---|---|---|---|"]
    for proxy, values in summary.items():
        b = sum(v[0] for v in values) / len(values)
        r = sum(v[1] for v in values) / len(values)
        lines.append(f"| {proxy} | {b:.2f} | {r:.2f} | {values[0][2]:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="hill", help="a name of dip-color-denoise-25 (denoise) or kate (inpaint)")
    parser.add_argument("--size", type=int, default=192, help="centre crop of the image, px (default 192)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--archs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reverse", action="store_true", help="architectures in reverse order: a second "
                        "process on the same --out meets the first halfway")
    parser.add_argument("--out", help="JSON file of fits (continued when it exists)")
    parser.add_argument("--skip", nargs="+", metavar="FIT", help="fits not to make, e.g. none (the blind whole-image "
                                                                 "fit, the expensive no-proxy row)")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="print the correlation table of these files")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    if not args.out:
        parser.error("--out is required to run fits")
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
