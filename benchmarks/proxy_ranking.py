"""How well cheap proxies of a large image rank architectures: Spearman correlation between a proxy's
fitness and the true PSNR of a whole-image fit.

For each image, ``--archs`` architectures (classical DIP, random genomes and mutants of classical DIP)
are fitted on the whole image with every observed pixel, as the final fit of a search is
(``restoration.restore``), and scored on each proxy as a search scores its candidates: the product's own
evaluator (``compose.build_search`` with ``proxy=...``, blind fitness, 10 % of each proxy problem's
observed pixels held out), so the crops, the downscaled copy and the held-out draws are the ones that
ship. The evaluator also records the true PSNR of the proxy fits, so both a blind and a reference proxy
are ranked. ``none`` is a search without a proxy: a blind fit of the whole image. Every fit is written to
``--out`` as it finishes, and a rerun skips the fits already there, so the script can be stopped and
continued (or split over two processes with ``--reverse``).

    python benchmarks/proxy_ranking.py --image hill --size 192 --iterations 300 --out runs/proxy-hill.json
    python benchmarks/proxy_ranking.py --report runs/proxy-hill.json runs/proxy-kodim03.json
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import fcntl
import json
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nasdip_deap.errors import UserError  # noqa: E402
from nasdip_deap.compose import RestoreConfig, SearchConfig, build_search  # noqa: E402
from nasdip_deap.genome import GenomeSpec, classical_dip  # noqa: E402
from nasdip_deap.problem import Inputs, build_task  # noqa: E402
from nasdip_deap.registry import TASKS  # noqa: E402
from nasdip_deap.restoration import restore  # noqa: E402

HOLDOUT = 0.1
LEVELS = 5


def data_folder() -> Path:
    return Path(os.environ.get("NASDIP_DATA", ROOT.parent / "shared" / "data"))


def load_problem(name: str, size: int, seed: int = 0):
    """The whole-image task, read as the CLI reads it (``problem.build_task``, a centre crop of ``size``):
    a standard noisy input of ``dip-color-denoise-25``, or kate inpainted with its text mask."""
    data = data_folder()
    if name == "kate":
        return build_task(TASKS.get("inpaint"), {"mask": str(data / "kate_mask.png")},
                          Inputs(image=str(data / "kate.png"), crop=size), LEVELS, seed)
    folder = data / "dip-color-denoise-25"
    return build_task(TASKS.get("denoise"), {"sigma": 25.0}, Inputs(observed=str(folder / f"{name}_noisy.png"),
                      clean=str(folder / f"{name}_GT.png"), crop=size), LEVELS, seed)


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


def proxies(size: int) -> dict[str, str]:
    """Row name -> the product's proxy choice (``--proxy``), for a ``size`` px image."""
    return {"none": "none", "crop 64": "crops:n=1,size=64", "crop 96": "crops:n=1,size=96",
            "crop 128": "crops:n=1,size=128", "2 crops of 64": "crops:n=2,size=64",
            "4 crops of 64": "crops:n=4,size=64", "downscale x2": f"downscale:size={size // 2}"}


def evaluators(task, size: int, iterations: int, seed: int, skip=()) -> dict:
    """Row name -> the evaluator a search with that proxy scores candidates with (proxies the image is too
    small for are left out)."""
    out = {}
    for row, choice in proxies(size).items():
        if row in skip:
            continue
        config = SearchConfig(proxy=choice, iterations=iterations, seed=seed, fitness="blind", holdout=HOLDOUT,
                              levels=LEVELS, search_fits=0, precision="fp32")
        try:
            out[row] = build_search(config, task).evaluator
        except UserError:  # the product refuses it for this image (crops not smaller than the image)
            continue
    return out


def whole_fit(bits, spec, task, iterations: int, seed: int) -> dict:
    """The final fit of a search: the architecture on the whole image with every observed pixel."""
    config = RestoreConfig(iterations=iterations, seed=seed, precision="fp32")
    result = restore(spec.decode(bits), task, config.runner(), iterations, run_seed=seed)
    return {"job": "whole", "key": spec.decode(bits).key(), "pixels": task.output_size[0] * task.output_size[1],
            "heldout_psnr": None, "true_psnr": result.metrics["psnr"], "seconds": result.seconds}


def proxy_fit(bits, evaluator, row: str) -> dict:
    record = evaluator.record(bits)
    return {"job": row, "key": evaluator.spec.decode(bits).key(),
            "pixels": sum(p.output_size[0] * p.output_size[1] for p in evaluator.problems),
            "heldout_psnr": record["fitness"][0], "true_psnr": record["metrics"].get("psnr"),
            "seconds": record["seconds"]}


def run(args) -> None:
    spec = GenomeSpec(levels=LEVELS)
    task = load_problem(args.image, args.size, args.seed)
    out = Path(args.out)
    skip = set(args.skip or ())
    jobs = {row: functools.partial(proxy_fit, evaluator=ev, row=row)
            for row, ev in evaluators(task, args.size, args.iterations, args.seed, skip).items()}
    if "whole" not in skip:
        jobs = {"whole": functools.partial(whole_fit, spec=spec, task=task, iterations=args.iterations,
                                           seed=args.seed), **jobs}
    archs = architectures(spec, args.archs, args.seed)
    for bits in reversed(archs) if args.reverse else archs:
        key = spec.decode(bits).key()
        for job, fit_one in jobs.items():
            if (key, job) in fits_in(out, args):
                continue
            record = fit_one(bits)
            with locked(out):
                done = read_fits(out, args)
                if (key, job) not in {(f["key"], f["job"]) for f in done["fits"]}:
                    done["fits"].append(record)
                    out.write_text(json.dumps(done, indent=1))
            held = record["heldout_psnr"]
            print(f"{args.image} {key[:8]} {job:<14} true {record['true_psnr']:6.2f} held-out "
                  f"{float('nan') if held is None else held:6.2f}  {record['seconds']:.0f}s", flush=True)


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
        whole_pixels = complete[0]["whole"]["pixels"]
        for proxy in proxies(data["size"]):
            rows = [fits for fits in complete if proxy in fits]
            if len(rows) < 4:
                continue
            blind = [fits[proxy]["heldout_psnr"] for fits in rows]
            ref = [fits[proxy]["true_psnr"] for fits in rows]
            true = [fits["whole"]["true_psnr"] for fits in rows]
            rho_b = spearmanr(blind, true).statistic
            rho_r = spearmanr(ref, true).statistic if proxy != "none" else float("nan")
            cost = rows[0][proxy]["pixels"] / whole_pixels
            summary.setdefault(proxy, []).append((rho_b, rho_r, cost))
            lines.append(f"| {proxy} | {data['image']} {data['size']} px ({len(rows)} archs) | {rho_b:.2f} | "
                         f"{rho_r:.2f} | {cost:.2f} |")
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
    parser.add_argument("--skip", nargs="+", metavar="ROW", choices=["whole", *proxies(192)], help="rows not to fit, e.g. none (the blind whole-image "
                                                                 "fit, the expensive no-proxy row) or '4 crops of 64'")
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
