"""How well the blind rules for final fits' length (``--final-stop``) find where a whole-image fit peaks:
for each photo, task and architecture, the product's calibration fit (``fitness.heldout_peak``) gives the
held-out peak; one reference fit on every observed pixel, as a final fit trains, runs to the cap with the
clean image logged (for this table only), so the PSNR at the held-out peak, at the step the product's
default (``auto``: ``cap`` for a noiseless task, ``heldout`` otherwise) trains, at the oracle peak and at
today's fixed count (``--iterations``, 300) all come from the same fit, whose curve is kept in the cell.

    python benchmarks/final_stopping.py --size 128 --out runs/final-stop-128.json
    python benchmarks/final_stopping.py --size 256 --cap 5000 --out runs/final-stop-256.json   # a GPU: --device cuda

Photos are scikit-image's (none of them chose a default): denoising (sigma 25), inpainting (a text mask),
4x super-resolution, each centre-cropped to ``--size``. Architectures: classical DIP, and the best (by
blind fitness) of the recorded problem of the same task (``recorded.py``: an architecture a search picks).
Each finished cell is written to ``--out`` at once; a rerun skips the cells already there.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench_args import positive_int
from nasdip_deap.compose import RestoreConfig, SearchConfig
from nasdip_deap.engine import PRECISIONS
from nasdip_deap.fitness import PEAK_LOG_POINTS, fit_curve, heldout_peak, stop_steps
from nasdip_deap.genome import GenomeSpec, classical_dip
from nasdip_deap.image_io import center_crop, pil_to_tensor
from nasdip_deap.registry import TASKS
from nasdip_deap.runner import derive_seed, fit_seed

TASKS_OPTIONS = {"denoise": {"sigma": 25.0}, "inpaint": {"mask_pattern": "text"}, "super-resolution": {"scale": 4}}
RECORDED = {"denoise": "denoise-chelsea-32", "inpaint": "inpaint-coffee-32", "super-resolution": "sr2-astronaut-32"}
PHOTOS = ("coffee", "rocket")


def photo_task(photo: str, task: str, size: int, seed: int):
    """A centre crop of a scikit-image photo at full resolution, degraded by the product's task."""
    from PIL import Image
    from skimage import data

    clean = center_crop(pil_to_tensor(Image.fromarray(getattr(data, photo)())), size)
    return TASKS.get(task).from_clean(clean, dict(TASKS_OPTIONS[task]), derive_seed(seed, "final-stop", photo, task))


def architectures(task: str, folder: str | None) -> dict:
    """classical DIP, and the recorded problem's best architecture when its table is there."""
    spec = GenomeSpec(levels=5)
    out = {"classical": classical_dip(5)}
    try:
        from recorded import load

        entries = [e for e in load(RECORDED[task], *([folder] if folder else [])) if e.get("error") is None]
    except (ImportError, OSError):
        entries = []
    if entries:
        best = max(entries, key=lambda e: e["fitness"][0])
        out["searched"] = spec.decode(best["bits"])
    return out


def product_rule(task: str, size: int, fixed: int, cap: int) -> str:
    """The rule the product's default (``--final-stop auto``) applies to a whole image of ``size`` px."""
    return SearchConfig(iterations=fixed, final_cap=cap).final_stop_rule((size, size), True, TASKS.get(task).noiseless)


def cell(arch, task, runner, args) -> dict:
    started = time.perf_counter()
    if args.calibrate == "needed" and product_rule(task.name, args.size, args.fixed, args.cap) != "heldout":
        rule = {"steps": None, "calibration_iterations": 0, "seconds": 0.0}  # the product's rule fits none
    else:
        rule = heldout_peak(arch, task, runner, args.cap, SearchConfig().holdout, args.seed)
    reference = runner.fit(arch, task, args.cap, seed=fit_seed(args.seed, arch),
                           log_every=max(1, args.cap // PEAK_LOG_POINTS))
    curve = dict(reference.psnr_history)
    oracle_step = max(curve, key=curve.get)

    def at(step: int) -> float:  # the log point at or before ``step``
        return curve[max(s for s in curve if s <= max(step, min(curve)))]

    return {"rule_steps": rule["steps"], "rule_psnr": None if rule["steps"] is None else at(rule["steps"]),
            "oracle_steps": oracle_step,
            "oracle_psnr": curve[oracle_step], "fixed_steps": args.fixed, "fixed_psnr": at(args.fixed),
            "cap_psnr": at(args.cap), "calibration_iterations": rule["calibration_iterations"],
            "calibration_seconds": rule["seconds"], "reference_seconds": reference.seconds,
            "curve": fit_curve(reference),  # no held-out pixels in the reference fit: its true PSNR
            "seconds": time.perf_counter() - started}


def run(args) -> list[dict]:
    out = Path(args.out)
    done = json.loads(out.read_text())["cells"] if out.exists() else []
    runner = RestoreConfig(device=args.device, precision=args.precision).runner()
    for photo in args.photos:
        for task_name in args.tasks:
            task = photo_task(photo, task_name, args.size, args.seed)
            for label, arch in architectures(task_name, args.folder).items():
                key = {"photo": photo, "task": task_name, "architecture": label, "size": args.size, "cap": args.cap,
                       "precision": runner.options.precision}
                if any(all(c.get(k) == v for k, v in key.items()) for c in done):
                    continue
                done.append({**key, **cell(arch, task, runner, args)})
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({"cells": done}, indent=1))
                c = done[-1]
                rule, step, psnr = product_steps(c)
                print(f"{photo} {task_name} {label}: held-out peak {c['rule_steps']}, product {rule} {step} steps "
                      f"{psnr:.2f} dB, oracle {c['oracle_steps']} {c['oracle_psnr']:.2f}, fixed {c['fixed_steps']} "
                      f"{c['fixed_psnr']:.2f} ({c['seconds']:.0f} s)", flush=True)
    return done


def product_steps(c: dict) -> tuple[str, int, float | None]:
    """(rule, step, dB) of what the product's final fits train on this cell (``SearchConfig.final_stop_rule``
    for its size and task, then ``fitness.stop_steps``), read from the same reference fit; dB is None for a
    cell of an older version of this script that did not record the PSNR at the cap."""
    rule = product_rule(c["task"], c["size"], c["fixed_steps"], c["cap"])
    if rule == "fixed":
        return rule, c["fixed_steps"], c["fixed_psnr"]
    step = stop_steps(rule, c["fixed_steps"], c["cap"], c["rule_steps"])
    psnr = c.get("cap_psnr") if rule == "cap" else c["rule_psnr"] if step == c["rule_steps"] else c["fixed_psnr"]
    return rule, step, psnr


def table(cells: list[dict]) -> str:
    lines = ["| photo | task | architecture | size | precision | oracle peak (step, dB) | held-out peak (step, dB) | "
             "peak - oracle | product: rule, step, dB | product - oracle | fixed (step, dB) | fixed - oracle | "
             "seconds (calibration + reference) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        rule, step, psnr = product_steps(c)
        product = f"{rule}, {step}, {psnr:.2f} | {psnr - c['oracle_psnr']:+.2f}" if psnr is not None else f"{rule}, {step}, — | —"
        heldout = ("not fitted | —" if c["rule_steps"] is None else
                   f"{c['rule_steps']}, {c['rule_psnr']:.2f} | {c['rule_psnr'] - c['oracle_psnr']:+.2f}")
        seconds = (f"{c['calibration_seconds']:.0f} + {c['reference_seconds']:.0f}" if "reference_seconds" in c
                   else f"{c['seconds']:.0f}")
        lines.append(f"| {c['photo']} | {c['task']} | {c['architecture']} | {c['size']} | {c.get('precision', 'fp32')} | "
                     f"{c['oracle_steps']}, {c['oracle_psnr']:.2f} | {heldout} | {product} | "
                     f"{c['fixed_steps']}, {c['fixed_psnr']:.2f} | {c['fixed_psnr'] - c['oracle_psnr']:+.2f} | {seconds} |")
    if cells:
        products = [(c, product_steps(c)[2]) for c in cells]
        gaps = {"held-out peak": [c["rule_psnr"] - c["oracle_psnr"] for c in cells if c["rule_psnr"] is not None],
                "product": [psnr - c["oracle_psnr"] for c, psnr in products if psnr is not None],
                "fixed": [c["fixed_psnr"] - c["oracle_psnr"] for c in cells]}
        lines += ["", "; ".join(f"{name} - oracle: mean {statistics.fmean(g):+.2f} dB, worst {min(g):+.2f}, "
                                f"{sum(x < -1 for x in g)} more than 1 dB below ({len(g)} cells)"
                                for name, g in gaps.items() if g)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="scikit-image photos (default coffee rocket)")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS_OPTIONS), default=list(TASKS_OPTIONS))
    parser.add_argument("--size", type=positive_int, default=128)
    parser.add_argument("--cap", type=positive_int, default=3000, help="steps of the reference fit and the rule's cap")
    parser.add_argument("--fixed", type=positive_int, default=SearchConfig().iterations,
                        help="today's fixed count, for the comparison (default: the default --iterations)")
    parser.add_argument("--calibrate", choices=("all", "needed"), default="all",
                        help="all: a calibration fit in every cell (the held-out column); needed: only where the "
                             "product's rule uses one (denoising), to save a long fit per noiseless cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default=RestoreConfig().precision,
                        help="as the product's --precision (default auto: bf16 on AMX CPUs, fp32 elsewhere)")
    parser.add_argument("--folder", help="the recorded problems' folder (default benchmarks/recorded)")
    parser.add_argument("--out", help="JSON file of cells (continued when it exists)")
    parser.add_argument("--table", nargs="+", metavar="JSON",
                        help="print the table of these result files (merged) and fit nothing")
    args = parser.parse_args(argv)
    if args.table:
        cells = []
        for name in args.table:
            try:
                cells += json.loads(Path(name).read_text())["cells"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                parser.error(f"{name}: not a result file of this script ({error})")
        print(table(cells))
        return 0
    if not args.out:
        parser.error("--out is required (or --table to print finished result files)")
    from skimage import data

    for photo in args.photos:
        if not callable(getattr(data, photo, None)):
            parser.error(f"{photo!r} is not a scikit-image photo (skimage.data)")
    print(table(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
