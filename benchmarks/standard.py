"""DIP's own denoising benchmark: the nine colour images of the DIP paper with the published noisy inputs
(sigma 25), restored by classical DIP (one fit, over seeds), by classical DIP at equal compute (the
average of K fits, K chosen so its DIP work equals the search's) and at equal wall time, by random search
(the same fits and final fits) and by the blind-fitness search with the defaults a user gets (proxy search
and final-fit ensemble included), both over ``--search-seeds`` whole searches, beside the published DIP and
CBM3D results; a paired test over images closes the table.

    python benchmarks/standard.py                                  # full size, the nine images (GPU)
    python benchmarks/standard.py --size 64 --iterations 500 --jobs 2 --images F16 kodim03 peppers hill baboon

Every image's ``NAME_noisy.png`` is restored as it is (the clean image is never re-noised); PSNR is
on the RGB image, whole, 8-bit as saved, peak 255 (scikit-image), as the published figures; SSIM is
scikit-image's. DIP work is counted in whole-image iterations: a proxy fit on a crop counts its pixels'
share, so the equal-compute K matches what the search really computed (search fits, finalists'
re-fits and final fits). ``--size N`` centre-crops every image and its noisy input, for the CPU; the
published columns are whole-image figures and are shown only at full size.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import nasdip_deap
from bench_args import positive_int, setting_value
from columns import classical_outputs, equal_columns, paired, random_search, work_of
from nasdip_deap import classical_dip
from nasdip_deap.errors import UserError
from nasdip_deap.image_io import center_crop, load_image, to_uint8
from nasdip_deap.registry import TASKS

REPO = Path(__file__).resolve().parents[1]
NINE = ("F16", "baboon", "hill", "kodim01", "kodim02", "kodim03", "kodim12", "lena", "peppers")
FIRST = ("F16", "kodim03", "peppers")  # the GPU run's order: these first


def data_folder() -> Path:
    return Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))


def published(readme: Path) -> dict[str, dict]:
    """{image: {"dip": dB, "cbm3d": dB}} from the data folder's README table (published outputs' PSNR)."""
    rows = {}
    if not readme.exists():
        return rows
    for line in readme.read_text().splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in NINE:
            try:
                rows[cells[0]] = {"dip": float(cells[3]), "cbm3d": float(cells[4])}
            except ValueError:
                continue
    return rows


def image_paths(name: str, folder: Path) -> tuple[Path, Path]:
    """(clean, noisy) files of an image given by name (in ``folder``) or by the path of its NAME_GT.png."""
    path = Path(name)
    if path.name.endswith("_GT.png") and path.exists():
        return path, path.with_name(path.name.replace("_GT.png", "_noisy.png"))
    return folder / f"{name}_GT.png", folder / f"{name}_noisy.png"


def image_name(name: str) -> str:
    return Path(name).name.replace("_GT.png", "")


def scores(image: torch.Tensor, clean: torch.Tensor) -> dict:
    """PSNR (peak 255) and SSIM of the 8-bit images, as the published outputs are scored."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = to_uint8(image), to_uint8(clean)
    channel = {"channel_axis": 2} if a.ndim == 3 else {}
    return {"psnr": float(peak_signal_noise_ratio(b, a, data_range=255)),
            "ssim": float(structural_similarity(b, a, data_range=255, **channel))}


def search_settings(args) -> dict:
    settings = {"fitness": "blind", "iterations": args.iterations, "seed": args.seed, "device": args.device,
                "threads": 1}  # every other setting: the user's default (compose.SearchConfig)
    for text in args.search or ():
        key, _, value = text.partition("=")
        settings[key] = setting_value(value)
    return settings


def classical_fit(arch, task, runner, args, name: str, seed: int) -> tuple[torch.Tensor, float]:
    """(output, seconds) of one classical fit; with ``--classical-cache`` kept on disk, so that trying
    search settings does not refit the classical columns (the same seed gives the same CPU fit)."""
    path = None
    if args.classical_cache:
        key = f"{image_name(name)}-{args.size or 'full'}-{args.iterations}-{seed}-{runner.options.precision}.pt"
        path = Path(args.classical_cache) / key
        if path.exists():
            saved = torch.load(path)
            return saved["restored"], saved["seconds"]
    fit = runner.fit(arch, task, args.iterations, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"restored": fit.restored, "seconds": fit.seconds}, path)
    return fit.restored, fit.seconds


def restored_by(task, settings: dict) -> tuple[object, object, float]:
    """(search result, restoration, wall seconds) of one whole search with ``settings`` and its final fits."""
    started = time.perf_counter()
    result = nasdip_deap.search(task, **settings)
    return result, result.restore(), time.perf_counter() - started


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


def searched_column(runs: list[tuple], clean, h: int, w: int, architectures: bool = True) -> dict:
    """Mean +- std over search seeds of one search column, with what each seed's search spent."""
    psnrs = [scores(restoration.image, clean) for _, restoration, _ in runs]
    column = {"psnr": spread([p["psnr"] for p in psnrs])[0], "psnr_std": spread([p["psnr"] for p in psnrs])[1],
              "ssim": statistics.fmean(p["ssim"] for p in psnrs), "psnr_seeds": [p["psnr"] for p in psnrs],
              "iterations": round(statistics.fmean(work_of(r, rest, h, w) for r, rest, _ in runs)),
              "seconds": statistics.fmean(sec for _, _, sec in runs),
              "fits": round(statistics.fmean(r.totals.fits for r, _, _ in runs)),
              "fits_seeds": [r.totals.fits for r, _, _ in runs],
              "ensemble": runs[0][1].ensemble, "final_iterations": runs[0][1].iterations,
              "search_fits": round(statistics.fmean(len(rest.search_fits) for _, rest, _ in runs)),
              "final_fits_psnr": statistics.fmean(scores(rest.image, clean)["psnr"] if not rest.final_fits
                                                  else rest.final_fits["psnr"] for _, rest, _ in runs),
              "heldout_psnr": runs[0][1].metrics.get("heldout_psnr"),
              "proxy": runs[0][0].search.evaluator.proxy.describe(), "seeds": len(runs)}
    if architectures:
        column["architecture"] = runs[0][0].best.summary()
    return column


def run_image(name: str, args, deadline: float | None = None) -> dict | None:
    """Every column of one image's row; None when the run's time (``deadline``, epoch seconds) is up.

    ``searched``: the default search, over ``--search-seeds`` seeds (mean +- std). ``random``: random search
    with as many fits as the same seed's search (and the same iterations a fit) and the same final fits and
    restoration rule, over the same seeds. ``equal_compute``: the average of K classical fits,
    K = the searches' mean DIP work over the per-fit budget. ``equal_time``: the average of the classical
    fits that the searches' mean wall time pays for, at the measured seconds of a classical fit."""
    if deadline is not None and time.time() > deadline:
        return None
    torch.set_num_threads(1)
    clean_path, noisy_path = image_paths(name, Path(args.data))
    clean = center_crop(load_image(clean_path), args.size)
    noisy = center_crop(load_image(noisy_path), args.size)
    task = TASKS.get("denoise").from_observation(noisy, {"sigma": 25.0}, clean=clean)
    h, w = task.output_size
    settings = search_settings(args)
    seeds = [args.seed + i for i in range(args.search_seeds)]
    searches = [restored_by(task, {**settings, "seed": seed}) for seed in seeds]
    randoms = [restored_by(task, {**settings, "seed": seed, **random_search(result.totals.fits)})
               for seed, (result, _, _) in zip(seeds, searches)] if args.random else []
    searched = searched_column(searches, clean, h, w)
    k = max(1, round(searched["iterations"] / args.iterations))
    runner = searches[0][0].search.evaluator.runner
    arch = classical_dip()

    def fit(seed: int):
        return classical_fit(arch, task, runner, args, name, seed)
    outputs, seconds = classical_outputs(arch, task, runner, args.iterations, args.seed, max(k, args.seeds, 1), fit)
    fit_seconds = statistics.fmean(seconds[:args.seeds])
    k_time = max(1, round(searched["seconds"] / fit_seconds))
    more, spent = classical_outputs(arch, task, runner, args.iterations, args.seed, k_time, fit, start=len(outputs))
    outputs, seconds = outputs + more, seconds + spent
    singles = [scores(image, clean) for image in outputs[:args.seeds]]
    row = {"image": image_name(name), "size": [h, w], "device": searches[0][1].device,
           "classical": {"psnr": statistics.fmean(s["psnr"] for s in singles),
                         "psnr_std": statistics.pstdev(s["psnr"] for s in singles),
                         "ssim": statistics.fmean(s["ssim"] for s in singles), "seeds": args.seeds,
                         "iterations": args.iterations, "seconds": fit_seconds},
           **equal_columns(outputs, seconds, k, k_time, args.iterations, lambda image: scores(image, clean)),
           "searched": searched}
    if randoms:
        row["random"] = searched_column(randoms, clean, h, w)
    return row


def markdown(rows: list[dict], args, reference: dict) -> str:
    full = args.size is None
    random_col = any("random" in r for r in rows)
    lines = ["| image | size | published DIP | published CBM3D | classical, 1 fit | classical, equal compute (K) "
             "| classical, equal time (K) | random search | searched | searched - equal | searched - random "
             "| DIP iterations (1 fit / equal / searched) | wall s (1 fit / equal / random / searched) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = reference.get(r["image"], {}) if full else {}
        c, e, t, s = r["classical"], r["equal_compute"], r["equal_time"], r["searched"]
        rnd = r.get("random")
        lines.append(
            f"| {r['image']} | {r['size'][1]}x{r['size'][0]} | {pub.get('dip', '—')} | {pub.get('cbm3d', '—')} | "
            f"{c['psnr']:.2f}±{c['psnr_std']:.2f} | {e['psnr']:.2f} ({e['k']}) | {t['psnr']:.2f} ({t['k']}) | "
            + (f"{rnd['psnr']:.2f}±{rnd['psnr_std']:.2f} | " if rnd else "— | ")
            + f"**{s['psnr']:.2f}±{s['psnr_std']:.2f}** | {s['psnr'] - e['psnr']:+.2f} | "
            + (f"{s['psnr'] - rnd['psnr']:+.2f} | " if rnd else "— | ")
            + f"{c['iterations']:,} / {e['iterations']:,} / {s['iterations']:,} | "
            f"{c['seconds']:.0f} / {e['seconds']:.0f} / {rnd['seconds'] if rnd else float('nan'):.0f} / "
            f"{s['seconds']:.0f} |")
    if rows:
        cols = ["classical", "equal_compute", "equal_time"] + (["random"] if random_col else []) + ["searched"]
        mean = {col: statistics.fmean(r[col]["psnr"] for r in rows if col in r) for col in cols}
        pubs = [reference[r["image"]] for r in rows if r["image"] in reference] if full else []
        dip = f"{statistics.fmean(p['dip'] for p in pubs):.2f}" if len(pubs) == len(rows) and pubs else "—"
        cbm = f"{statistics.fmean(p['cbm3d'] for p in pubs):.2f}" if len(pubs) == len(rows) and pubs else "—"
        lines.append(f"| **mean** | | {dip} | {cbm} | {mean['classical']:.2f} | {mean['equal_compute']:.2f} | "
                     f"{mean['equal_time']:.2f} | {mean['random']:.2f} | " if random_col else
                     f"| **mean** | | {dip} | {cbm} | {mean['classical']:.2f} | {mean['equal_compute']:.2f} | "
                     f"{mean['equal_time']:.2f} | — | ")
        lines[-1] += (f"**{mean['searched']:.2f}** | {mean['searched'] - mean['equal_compute']:+.2f} | "
                      + (f"{mean['searched'] - mean['random']:+.2f}" if random_col else "—") + " | | |")
        lines.append("")
        lines.append(f"Paired over images: searched - equal compute {paired(rows, 'searched', 'equal_compute')}; "
                     f"searched - equal time {paired(rows, 'searched', 'equal_time')}"
                     + (f"; searched - random {paired(rows, 'searched', 'random')}" if random_col else "") + ".")
    device = rows[0]["device"] if rows else args.device
    lines.append("")
    lines.append(f"Device {device} ({machine(device)}), torch {torch.__version__}, one thread per fit, "
                 f"{args.iterations} iterations per fit, search seeds {args.seed}..{args.seed + args.search_seeds - 1} "
                 f"(searched and random: mean ± std over them), classical single fits over {args.seeds} seeds"
                 + (f", centre crops of {args.size} px" if args.size else ", whole images")
                 + (f"; search settings {' '.join(args.search)}" if args.search else "; search: the defaults") + ".")
    return "\n".join(lines)


def machine(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=list(FIRST) + [n for n in NINE if n not in FIRST],
                        help="image names in --data (or paths of NAME_GT.png files with NAME_noisy.png beside "
                             "them); default: the nine, F16, kodim03 and peppers first")
    parser.add_argument("--data", default=str(data_folder() / "dip-color-denoise-25"),
                        help="folder of NAME_GT.png / NAME_noisy.png pairs (default: ../shared/data's set)")
    parser.add_argument("--size", type=positive_int, help="centre-crop every image and its noisy input (px)")
    parser.add_argument("--iterations", type=positive_int, default=3000,
                        help="DIP iterations per fit, every column (default 3000, the reference at full size)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="classical single fits (default 3)")
    parser.add_argument("--search-seeds", type=positive_int, default=3,
                        help="whole searches per image, seeds --seed, --seed+1, ... (default 3)")
    parser.add_argument("--random", action=argparse.BooleanOptionalAction, default=True,
                        help="the random-search column: the same fits and final fits (default on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=positive_int, default=1, help="images restored at once (processes)")
    parser.add_argument("--deadline", type=positive_int, metavar="SECONDS",
                        help="start no image after this many seconds (the table holds the images done)")
    parser.add_argument("--search", action="append", metavar="KEY=VALUE",
                        help="a search setting other than the user's default (SearchConfig field), repeatable")
    parser.add_argument("--classical-cache", metavar="DIR",
                        help="keep classical fits' outputs here and reuse them in later runs (same image, size, "
                             "iterations, seed)")
    parser.add_argument("--out", default="runs/standard", help="folder for table.md and table.json")
    args = parser.parse_args(argv)
    for name in args.images:
        for path in image_paths(name, Path(args.data)):
            if not path.exists():
                parser.error(f"{path} not found (set --data, or NASDIP_DATA to the test image folder)")
    try:
        nasdip_deap.SearchConfig(**search_settings(args))
    except (TypeError, UserError) as exc:
        parser.error(f"bad --search setting: {exc}")
    return args


def save(rows: list[dict], args, out: Path, reference: dict) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, args, reference)
    (out / "table.md").write_text(table + "\n")
    (out / "table.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))
    return table


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    reference = published(Path(args.data).parent / "README.md")
    out = Path(args.out)
    rows: dict[int, dict] = {}
    deadline = time.time() + args.deadline if args.deadline else None

    def finished(index: int, row: dict | None) -> None:
        if row is None:
            print(f"{args.images[index]}: not started, the --deadline had passed", flush=True)
            return
        rows[index] = row
        random_text = f", random {row['random']['psnr']:.2f}" if "random" in row else ""
        print(f"{row['image']}: classical {row['classical']['psnr']:.2f}, equal compute (K={row['equal_compute']['k']}) "
              f"{row['equal_compute']['psnr']:.2f}, equal time (K={row['equal_time']['k']}) "
              f"{row['equal_time']['psnr']:.2f}{random_text}, searched {row['searched']['psnr']:.2f} ± "
              f"{row['searched']['psnr_std']:.2f} over {row['searched']['seeds']} seeds", flush=True)
        save([rows[i] for i in sorted(rows)], args, out, reference)

    if args.jobs <= 1:
        for i, name in enumerate(args.images):
            finished(i, run_image(name, args, deadline))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {pool.submit(run_image, name, args, deadline): i for i, name in enumerate(args.images)}
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result())
    done = [rows[i] for i in sorted(rows)]
    print(save(done, args, out, reference))
    return done


if __name__ == "__main__":
    main()
