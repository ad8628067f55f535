"""Quality benchmark: do searched architectures beat classical DIP, without ground truth?

For each task (denoise sigma 25, inpaint with the image's mask or a text mask, super-resolution x4)
and each image: classical DIP with the reference settings for the task (one fit, over ``--seeds``
seeds), classical DIP at equal compute (the average of K fits, K = the search's DIP work over the
per-fit budget) and at equal wall time, random search (as many fits as the same seed's search, the same
final restoration), and the
search with **blind** fitness (no ground truth used), each search column over ``--search-seeds`` whole
searches restored as the product restores (mean +- std); optionally the same search with reference
fitness shows what the blind fitness leaves on the table. A paired test over cells closes the table.
Prints and saves a table (JSON + Markdown):

    python benchmarks/quality.py --size 64                      # images in ../shared/data + astronaut
    python benchmarks/quality.py --images my.png --tasks denoise --size 128 --also-reference
    python benchmarks/quality.py --size 0 --device cuda         # full size, on a GPU
    python benchmarks/quality.py --size 64 --device cuda --jobs 12 --also-reference   # cells side by side

Classical DIP and the searched architecture get the same iteration budget (``--iterations``); the
search evolves, among the meta-parameters, the share of that budget an architecture trains for, as
the paper does. Cells (task, image) run one after another, or ``--jobs`` at a time in separate
processes; the table is rewritten after every finished cell, so an interrupted run keeps its rows.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import json
import os
import statistics
import time
from pathlib import Path

import torch

import nasdip_deap
from bench_args import non_negative_int, positive_int
from bench_problems import TASK_NAMES, classical_for, default_images, make_task, parse_cell
from columns import classical_outputs, equal_columns, paired, random_search, work_of
from nasdip_deap.compose import RestoreConfig
from nasdip_deap.restoration import restore


def classical_single(arch, task, budget: int, seeds: int, device: str) -> dict:
    """One classical fit, repeated with ``seeds`` run seeds (mean +- std)."""
    runner = RestoreConfig(device=device).runner()
    rows = [restore(arch, task, runner, budget, run_seed=1000 + s).metrics for s in range(seeds)]
    psnr = [r["psnr"] for r in rows]
    ssim = [r["ssim"] for r in rows]
    return {"psnr": statistics.mean(psnr), "psnr_std": statistics.pstdev(psnr), "ssim": statistics.mean(ssim),
            "ssim_std": statistics.pstdev(ssim), "fit_iterations": budget, "ensemble": 1, "runs": rows}


def modes(args) -> list[str]:
    """The search columns: blind (the default), random search, and the oracle when asked for."""
    return ["blind"] + (["random"] if args.random else []) + (["reference"] if args.also_reference else [])


def parts(args) -> list[str]:
    """The units a cell runs as: random search runs inside the blind part, which knows its fits."""
    return ["classical"] + [m for m in modes(args) if m != "random"]


def search_settings(args, part: str, seed: int, fits: int | None = None) -> dict:
    settings = dict(population=args.population, generations=args.generations, iterations=args.iterations,
                    fitness="reference" if part == "reference" else "blind", seed=seed, device=args.device,
                    levels=args.levels, fidelity=args.fidelity, early_stop=args.early_stop,
                    evolve_iterations=args.evolve_iterations, init_spread=args.init_spread, finalists=args.finalists,
                    finalist_repeats=args.finalist_repeats, proxy="none", final_iterations=args.final_iterations)
    if part == "random":  # the same final restoration
        settings["algorithm"] = "random"
        if fits is not None:  # as many fits as the search made
            settings.update(random_search(fits))
    return settings


def searched_column(task, part: str, args, fits: list[int] | None = None) -> dict:
    """``--search-seeds`` whole searches, each followed by the restoration the product makes (its final fits
    and the search fits averaged in): PSNR mean +- std over the search seeds, and what they spent. ``fits``:
    random search's fits for each seed (one generation of that many genomes)."""
    h, w = task.output_size
    runs = []
    for i in range(args.search_seeds):
        started = time.perf_counter()
        found = nasdip_deap.search(task, **search_settings(args, part, args.seed + i, fits[i] if fits else None))
        restoration = found.restore()
        runs.append((found, restoration, time.perf_counter() - started))
    first, first_restoration, _ = runs[0]
    psnr = [rest.metrics["psnr"] for _, rest, _ in runs]
    work = [work_of(r, rest, h, w) for r, rest, _ in runs]
    return {"psnr": statistics.mean(psnr), "psnr_std": statistics.pstdev(psnr),
            "ssim": statistics.mean(rest.metrics["ssim"] for _, rest, _ in runs),
            "runs": [rest.metrics for _, rest, _ in runs], "seeds": len(runs),
            "architecture": first.best.summary(), "fits": round(statistics.mean(r.totals.fits for r, _, _ in runs)),
            "fits_seeds": [r.totals.fits for r, _, _ in runs],
            "iterations": round(statistics.mean(r.totals.iterations for r, _, _ in runs)),
            "pixel_steps": round(statistics.mean(r.totals.pixel_steps for r, _, _ in runs)),
            "work": statistics.mean(work), "search_seconds": statistics.mean(sec for _, _, sec in runs),
            "fit_iterations": first_restoration.iterations, "ensemble": first_restoration.ensemble,
            "candidates": candidate_summary(first.search)}


def run_part(task_name: str, image: str, part: str, args) -> dict:
    """One column of one row: ``classical`` single fits, or a ``blind`` / ``random`` / ``reference`` search
    column over the search seeds; the blind and reference columns carry classical DIP at equal compute and
    at equal wall time, and the blind part runs the random column after it, with its seeds' fits."""
    torch.set_num_threads(args.threads)
    task = make_task(task_name, image, args.size, args.seed)
    started = time.perf_counter()
    budget = args.final_iterations or args.iterations
    if part == "classical":
        result = classical_single(classical_for(task_name, args.levels), task, budget, args.seeds, args.device)
    else:
        result = searched_column(task, part, args)
        if part != "random":
            arch = classical_for(task_name, args.levels)
            runner = RestoreConfig(device=args.device).runner()
            k = max(1, round(result["work"] / budget))
            outputs, seconds = classical_outputs(arch, task, runner, budget, args.seed, k)
            k_time = max(1, round(result["search_seconds"] / statistics.mean(seconds)))
            more, spent = classical_outputs(arch, task, runner, budget, args.seed, k_time, start=len(outputs))
            result.update(equal_columns(outputs + more, seconds + spent, k, k_time, budget,
                                        lambda image: task.quality(image, task.clean)))
    result["seconds"] = time.perf_counter() - started
    row = {"image": Path(image).name, "task": task_name, "size": list(task.output_size), part: result}
    if part == "blind" and args.random:
        started = time.perf_counter()
        row["random"] = searched_column(task, "random", args, fits=result["fits_seeds"])
        row["random"]["seconds"] = time.perf_counter() - started
    return row


def candidate_summary(run) -> dict:
    """Why a search won or lost, from its own fits (no extra compute): how well its fitness ranked the
    candidates by true PSNR, the true PSNR of the one it chose, of the best candidate it saw, and of
    classical DIP's search fit. A better candidate that was not chosen means fitness mis-ranking; no
    better candidate at all means too small a budget or search space."""
    from scipy.stats import spearmanr

    from nasdip_deap.genome import classical_dip as classical

    records = [r for r in run.cache.values()  # fits of the full budget (not cut at a cheap rung)
               if not r.get("error") and "psnr" in r.get("metrics", {}) and "rung_fitness" not in r]
    fitness = [r["fitness"][0] for r in records]
    psnr = [r["metrics"]["psnr"] for r in records]
    chosen = run.record_for(run.best())
    classical_key = run.spec.decode(run.spec.encode(classical(run.spec.levels))).key()
    classical_psnr = next((r["metrics"]["psnr"] for r in records if r["key"] == classical_key), None)
    rho = float(spearmanr(fitness, psnr).statistic) if len(records) >= 3 else None
    return {"count": len(records), "spearman": rho, "chosen_psnr": chosen["metrics"].get("psnr"),
            "best_psnr": max(psnr) if psnr else None, "classical_psnr": classical_psnr}


def run_cell(task_name: str, image: str, args) -> dict:
    """A whole row, in this process."""
    row: dict = {}
    for part in parts(args):
        row.update(run_part(task_name, image, part, args))
    return row


def fmt(cell: dict | None) -> str:
    return "-" if cell is None else f"{cell['psnr']:.2f}±{cell['psnr_std']:.2f} / {cell['ssim']:.3f}"


def markdown(rows: list[dict], args) -> str:
    """The table; a row whose columns are not all finished shows '-' there and stays out of the means."""
    searches = [m for m in modes(args) if m != "random"]
    head = ("| image | task | size | classical, 1 fit | classical, equal compute (K) | classical, equal time (K) | "
            + ("random search | " if args.random else "")
            + " | ".join(f"searched ({m}) | {m} - equal compute | {m} - random | compute ({m})" for m in searches)
            + " |")
    lines = [head, "|" + "---|" * (6 + int(args.random) + 4 * len(searches))]
    for r in rows:
        blind = r.get("blind") or {}
        equal, timed, rnd = blind.get("equal_compute"), blind.get("equal_time"), r.get("random")
        cells = [r["image"], r["task"], "x".join(map(str, r["size"])), fmt(r.get("classical")),
                 f"{equal['psnr']:.2f} ({equal['k']})" if equal else "-",
                 f"{timed['psnr']:.2f} ({timed['k']})" if timed else "-"]
        if args.random:
            cells.append(fmt(rnd))
        for m in searches:
            s = r.get(m)
            e = s.get("equal_compute") if s else None
            cells += [fmt(s), f"{s['psnr'] - e['psnr']:+.2f}" if s and e else "-",
                      f"{s['psnr'] - rnd['psnr']:+.2f}" if s and rnd else "-",
                      (f"{s['fits']} fits, {s['iterations']} it, {s['search_seconds']:.0f}s; final "
                       f"{s['ensemble']} x {s['fit_iterations']} it" if s else "-")]
        lines.append("| " + " | ".join(cells) + " |")
    analysis = [(r, m) for r in rows for m in modes(args) if (r.get(m) or {}).get("candidates")]
    if analysis:
        lines += ["", "Search fits of each column's first seed (true PSNR of the search's own fits, so a hold-out "
                  "fit for blind fitness):", "",
                  "| image | task | fitness | candidates | Spearman(fitness, true PSNR) | chosen | best seen | "
                  "classical |", "|---|---|---|---|---|---|---|---|"]
        for r, m in analysis:
            c = r[m]["candidates"]
            num = (lambda v, f="{:.2f}": "-" if v is None else f.format(v))
            lines.append(f"| {r['image']} | {r['task']} | {m} | {c['count']} | {num(c['spearman'], '{:.3f}')} | "
                         f"{num(c['chosen_psnr'])} | {num(c['best_psnr'])} | {num(c['classical_psnr'])} |")
    for m in searches:
        by_task: dict[str, list[float]] = {}
        for r in rows:
            if r.get(m) and r.get("classical"):
                by_task.setdefault(r["task"], []).append(r[m]["psnr"] - r["classical"]["psnr"])
        if not by_task:
            continue
        summary = ", ".join(f"{t} {statistics.mean(v):+.2f} dB ({len(v)} images)" for t, v in by_task.items())
        overall = statistics.mean(statistics.mean(v) for v in by_task.values())
        lines.append(f"\nMean gain of the {m}-fitness search over classical DIP: {summary}; across tasks "
                     f"{overall:+.2f} dB.")
        flat = [{**{k: r.get(k) for k in ("random",)}, "searched": r[m], "equal_compute": r[m].get("equal_compute"),
                 "equal_time": r[m].get("equal_time")} for r in rows if r.get(m)]
        lines.append(f"Paired over cells, {m}: searched - equal compute {paired(flat, 'searched', 'equal_compute', 'cells')}"
                     f"; searched - equal time {paired(flat, 'searched', 'equal_time', 'cells')}"
                     + (f"; searched - random {paired(flat, 'searched', 'random', 'cells')}" if args.random else "")
                     + ".")
    lines.append(f"\nSearch columns: mean ± std over {args.search_seeds} whole searches (seeds {args.seed}.."
                 f"{args.seed + args.search_seeds - 1}), each restored as the product restores (its final fits and "
                 f"search fits averaged in); classical single fits over {args.seeds} seeds; the equal-compute and "
                 f"equal-time K follow the blind searches' mean DIP work and wall seconds.")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", help="clean image paths, or 'astronaut' (default: ../shared/data + astronaut)")
    p.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES))
    p.add_argument("--cells", nargs="+", metavar="TASK:IMAGE", type=parse_cell,
                   help="explicit (task, image) cells instead of every task on every image, e.g. inpaint:kate.png; "
                        "an image name without a folder is looked up in the data folder")
    p.add_argument("--size", type=int, default=64, help="centre crop in pixels (0 = full size)")
    p.add_argument("--levels", type=positive_int, default=5, help="encoder-decoder levels (default 5, DIP's)")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--iterations", type=int, default=1000,
                   help="DIP iteration budget of every fit, in the search and in the final fits")
    p.add_argument("--final-iterations", type=int, help="a different budget for the final fits")
    p.add_argument("--no-evolve-iterations", dest="evolve_iterations", action="store_false",
                   help="train every searched architecture for the whole budget")
    p.add_argument("--seeds", type=positive_int, default=3, help="classical single fits (default 3)")
    p.add_argument("--search-seeds", type=positive_int, default=3,
                   help="whole searches per column, seeds --seed, --seed+1, ... (default 3)")
    p.add_argument("--random", action=argparse.BooleanOptionalAction, default=True,
                   help="the random-search column: the same fits and final restoration (default on)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", default="full")
    p.add_argument("--early-stop", type=int)
    p.add_argument("--init-spread", type=float, help="start the search from mutants of classical DIP")
    p.add_argument("--finalists", type=non_negative_int, default=0,
                   help="re-fit the best N architectures of each search before choosing (0: choose by one fit)")
    p.add_argument("--finalist-repeats", type=positive_int, default=2,
                   help="re-fits per finalist (new seed and hold-out)")
    p.add_argument("--also-reference", action="store_true", help="also search with reference fitness")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per cell (CPU results depend on it)")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, in separate processes")
    p.add_argument("--out", default="quality-results", help="folder for quality.json and quality.md")
    return p.parse_args(argv)


def machine(device: str) -> str:
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def save(rows: list[dict], args, out: Path) -> str:
    table = markdown(rows, args) if rows else "(no finished cells)"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"arguments": vars(args), "machine": machine(args.device), "torch": torch.__version__}
    for name, text in (("quality.json", json.dumps({**meta, "rows": rows}, indent=2, default=str)),
                       ("quality.md", f"Machine: {meta['machine']}, torch {meta['torch']}\n\n{table}\n")):
        partial = out / (name + ".partial")
        partial.write_text(text)
        partial.replace(out / name)  # a run killed mid-write keeps the previous table
    return table


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    cells = args.cells if args.cells else \
        [(task_name, image) for image in args.images or default_images() for task_name in args.tasks]
    units = [(i, part) for part in parts(args) for i in range(len(cells))]
    out = Path(args.out)
    rows: dict[int, dict] = {}

    def finished(index: int, part: str, result: dict) -> list[dict]:
        rows.setdefault(index, {}).update(result)
        print(f"{result['image']:<14} {result['task']:<17} {part:<10} {fmt(result[part])}  "
              f"({result[part]['seconds']:.0f}s)", flush=True)
        done = [rows[i] for i in sorted(rows)]
        save(done, args, out)
        return done

    done: list[dict] = []
    if args.jobs <= 1:
        for i, part in units:
            done = finished(i, part, run_part(*cells[i], part, args))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {pool.submit(run_part, *cells[i], part, args): (i, part) for i, part in units}
            for future in concurrent.futures.as_completed(futures):
                done = finished(*futures[future], future.result())
    print(markdown(done, args))
    return done


if __name__ == "__main__":
    main()
