"""GPU report (a few minutes on one GPU): step time against the reference code, bf16 against fp32
PSNR, and fits per hour with 1, 2 and 4 concurrent fits on one GPU, all at 256x256.

    python benchmarks/gpu_report.py                       # needs CUDA; reference rows need NASDIP_REFERENCE_DIP
    python benchmarks/gpu_report.py --device cpu --size 32 --iterations 20 --concurrency 1 2   # smoke test

Concurrent fits run in separate spawned processes sharing the GPU (each its own CUDA context), which
is how the ``processes`` backend would run several workers per GPU.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def load_clean(size: int) -> torch.Tensor:
    from nasdip_deap.image_io import center_crop, default_image, load_image

    data = Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))
    path = data / "F16_GT.png"
    img = load_image(path) if path.exists() else default_image()
    if min(img.shape[-2:]) < size:
        img = torch.nn.functional.interpolate(img[None], size=(size, size), mode="bicubic", antialias=True)[0]
    return center_crop(img, size).clamp(0, 1)


def make_task(size: int):
    from nasdip_deap.registry import TASKS

    return TASKS.get("denoise").from_clean(load_clean(size), {"sigma": 25.0}, seed=0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device, n: int) -> float:
    for _ in range(3):
        step()
    sync(device)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_times(args, device) -> None:
    from nasdip_deap import classical_dip
    from nasdip_deap.fit import EngineOptions, Trainer

    task = make_task(args.size)
    rows = []
    for label, options in (("nasdip fp32", EngineOptions()),
                           ("nasdip fp32 channels-last", EngineOptions(channels_last=True)),
                           ("nasdip bf16", EngineOptions(precision="bf16")),
                           ("nasdip bf16 channels-last", EngineOptions(precision="bf16", channels_last=True))):
        trainer = Trainer(classical_dip(), task, device, seed=0, options=options)
        rows.append((label, time_steps(trainer.step, device, args.steps)))
    ref = os.environ.get("NASDIP_REFERENCE_DIP")
    if ref and (Path(ref) / "models" / "skip.py").exists():
        sys.path.insert(0, ref)
        from models.skip import skip

        torch.manual_seed(0)
        net = skip(32, 3, [128] * 5, [128] * 5, [4] * 5, upsample_mode="bilinear", need_sigmoid=True,
                   need_bias=True, pad="reflection", act_fun="LeakyReLU").to(device)
        z = (torch.rand(1, 32, args.size, args.size) * 0.1).to(device)
        noise = z.clone()
        target = task.observation[None].to(device)
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        avg = {"v": None}

        def ref_step():
            opt.zero_grad()
            out = net(z + noise.normal_() * (1 / 30))
            avg["v"] = out.detach() if avg["v"] is None else avg["v"] * 0.99 + out.detach() * 0.01
            torch.nn.functional.mse_loss(out, target).backward()
            opt.step()

        try:
            rows.append(("reference (core loop)", time_steps(ref_step, device, args.steps)))
        except RuntimeError as error:  # the reference cannot build every size (e.g. 32 px at 5 levels)
            print(f"reference row skipped at {args.size} px: {str(error).splitlines()[0]}")
    base = rows[0][1]
    print(f"\n## DIP step, classical DIP, {args.size}x{args.size}, {device} (median of {args.steps})")
    for label, t in rows:
        print(f"{label:<28} {t * 1000:8.2f} ms   x{t / base:5.2f} of nasdip fp32")


def precision_psnr(args, device) -> None:
    from nasdip_deap import classical_dip
    from nasdip_deap.fit import EngineOptions, fit

    task = make_task(args.size)
    print(f"\n## bf16 against fp32, denoise sigma 25, {args.iterations} iterations, seeds {args.seeds}")
    diffs = []
    for seed in range(args.seeds):
        psnr = {}
        for precision in ("fp32", "bf16"):
            r = fit(classical_dip(), task, args.iterations, device=str(device), seed=seed,
                    options=EngineOptions(precision=precision, channels_last=True))
            psnr[precision] = (r.metrics["psnr"], r.seconds)
        diffs.append(psnr["bf16"][0] - psnr["fp32"][0])
        print(f"seed {seed}: fp32 {psnr['fp32'][0]:.2f} dB ({psnr['fp32'][1]:.1f}s)  "
              f"bf16 {psnr['bf16'][0]:.2f} dB ({psnr['bf16'][1]:.1f}s)  diff {diffs[-1]:+.2f} dB")
    print(f"mean bf16 - fp32: {statistics.mean(diffs):+.3f} dB")


def _worker(args_tuple) -> float:
    size, iterations, fits, device, precision, seed = args_tuple
    from nasdip_deap import classical_dip
    from nasdip_deap.fit import EngineOptions, fit

    task = make_task(size)
    started = time.perf_counter()
    for k in range(fits):
        fit(classical_dip(), task, iterations, device=device, seed=seed * 100 + k,
            options=EngineOptions(precision=precision, channels_last=True))
    return time.perf_counter() - started


def concurrency(args, device) -> None:
    print(f"\n## fits per hour, classical DIP {args.size}x{args.size}, {args.iterations} iterations per fit, "
          f"{args.fits} fits per process")
    ctx = mp.get_context("spawn")
    base = None
    for n in args.concurrency:
        started = time.perf_counter()
        with ctx.Pool(n) as pool:
            pool.map(_worker, [(args.size, args.iterations, args.fits, str(device), args.precision, i)
                               for i in range(n)])
        wall = time.perf_counter() - started
        per_hour = n * args.fits / wall * 3600
        base = base or per_hour
        print(f"{n} concurrent: {n * args.fits} fits in {wall:.1f}s -> {per_hour:.0f} fits/hour (x{per_hour / base:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument("--iterations", type=int, default=1000, help="iterations per fit")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--fits", type=int, default=2, help="fits per process in the concurrency test")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --device cpu for a smoke test")
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    step_times(args, device)
    precision_psnr(args, device)
    concurrency(args, device)


if __name__ == "__main__":
    main()
