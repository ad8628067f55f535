"""Speed report: step time against the reference code (eager, CUDA graph, bf16 and channels-last on the
GPU or the CPU, optionally torch.compile), bf16 and CUDA-graph fits against fp32 eager PSNR, fits per
hour with 1, 2 and 4 concurrent fits at 256x256, seconds per 3000-iteration fit and fits per hour at
512x512 and 512x768, and a whole-process timing of ``nasdip baseline`` against the reference loop.

    python benchmarks/gpu_report.py                       # needs CUDA; reference rows need NASDIP_REFERENCE_DIP
    python benchmarks/gpu_report.py --device cpu --parts steps process --step-sizes 64 128
    python benchmarks/gpu_report.py --device cpu --size 32 --step-sizes 32 --iterations 20 --concurrency 1 2

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

from bench_args import positive_int
from nasdip_deap.network import min_image_size

REPO = Path(__file__).resolve().parents[1]


def load_clean(size) -> torch.Tensor:
    """F16 (or the embedded astronaut) at ``size`` px square, or (height, width)."""
    from nasdip_deap.image_io import default_image, load_image

    data = Path(os.environ.get("NASDIP_DATA", REPO.parent / "shared" / "data"))
    path = data / "F16_GT.png"
    img = load_image(path) if path.exists() else default_image()
    h, w = (size, size) if isinstance(size, int) else size
    if img.shape[-2] < h or img.shape[-1] < w:
        img = torch.nn.functional.interpolate(img[None], size=(max(h, img.shape[-2]), max(w, img.shape[-1])),
                                              mode="bicubic", antialias=True)[0]
    top, left = (img.shape[-2] - h) // 2, (img.shape[-1] - w) // 2
    return img[:, top:top + h, left:left + w].clamp(0, 1).contiguous()


def make_task(size):
    from nasdip_deap.registry import TASKS

    return TASKS.get("denoise").from_clean(load_clean(size), {"sigma": 25.0}, seed=0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device, n: int, warmup: int = 5) -> float:
    for _ in range(warmup):  # 5 includes a CUDA graph's capture at step 4
        step()
    sync(device)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compiled_row(task, device, steps: int) -> list[tuple[str, float]]:
    """torch.compile of the network (default mode): step time, and the compile time a new
    architecture pays before its first step (every search candidate is a new graph)."""
    from nasdip_deap import classical_dip
    from nasdip_deap.engine import EngineOptions, Trainer

    trainer = Trainer(classical_dip(), task, device, seed=0, options=EngineOptions(cuda_graph=False))
    trainer.net = torch.compile(trainer.net)
    started = time.perf_counter()
    trainer.step()
    sync(device)
    first = time.perf_counter() - started
    return [(f"nasdip torch.compile (1st step {first:.1f} s)", time_steps(trainer.step, device, steps))]


def step_times(args, device, size: int) -> None:
    from nasdip_deap import classical_dip
    from nasdip_deap.engine import EngineOptions, Trainer

    task = make_task(size)
    rows = []
    variants = [("nasdip fp32", EngineOptions(cuda_graph=False)),
                ("nasdip fp32 channels-last", EngineOptions(channels_last=True, cuda_graph=False)),
                ("nasdip bf16", EngineOptions(precision="bf16", cuda_graph=False)),
                ("nasdip bf16 channels-last", EngineOptions(precision="bf16", channels_last=True, cuda_graph=False))]
    if device.type == "cuda":  # a CPU fit has no graph: these rows would repeat the eager ones
        variants += [("nasdip fp32 cuda-graph", EngineOptions(cuda_graph=True)),
                     ("nasdip fp32 cuda-graph ch-last", EngineOptions(cuda_graph=True, channels_last=True)),
                     ("nasdip bf16 cuda-graph ch-last", EngineOptions(precision="bf16", cuda_graph=True,
                                                                      channels_last=True))]
    for label, options in variants:
        trainer = Trainer(classical_dip(), task, device, seed=0, options=options)
        rows.append((label, time_steps(trainer.step, device, args.steps, args.warmup)))
    if args.compile and size == args.size:
        try:
            rows += compiled_row(task, device, args.steps)
        except Exception as error:  # a missing compiler toolchain must not end the report
            print(f"torch.compile row skipped: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    ref = os.environ.get("NASDIP_REFERENCE_DIP")
    if ref and (Path(ref) / "models" / "skip.py").exists():
        sys.path.insert(0, ref)
        from models.skip import skip

        torch.manual_seed(0)
        net = skip(32, 3, [128] * 5, [128] * 5, [4] * 5, upsample_mode="bilinear", need_sigmoid=True,
                   need_bias=True, pad="reflection", act_fun="LeakyReLU").to(device)
        z = (torch.rand(1, 32, size, size) * 0.1).to(device)
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
            rows.append(("reference (core loop)", time_steps(ref_step, device, args.steps, args.warmup)))
        except RuntimeError as error:  # the reference cannot build every size (e.g. 32 px at 5 levels)
            print(f"reference row skipped at {size} px: {str(error).splitlines()[0]}")
    base = rows[0][1]
    print(f"\n## DIP step, classical DIP, {size}x{size}, {device} (median of {args.steps})")
    for label, t in rows:
        print(f"{label:<36} {t * 1000:8.2f} ms   x{t / base:5.2f} of nasdip fp32")


def precision_psnr(args, device) -> None:
    from nasdip_deap import classical_dip
    from nasdip_deap.engine import EngineOptions, fit

    task = make_task(args.size)
    variants = {"fp32": EngineOptions(channels_last=True, cuda_graph=False),
                "fp32 graph": EngineOptions(channels_last=True, cuda_graph=True),
                "bf16 graph": EngineOptions(precision="bf16", channels_last=True, cuda_graph=True)}
    print(f"\n## PSNR against fp32 eager, {args.size} px, denoise sigma 25, {args.iterations} iterations, "
          f"seeds {args.seeds}")
    diffs = {name: [] for name in variants if name != "fp32"}
    for seed in range(args.seeds):
        psnr = {}
        for name, options in variants.items():
            r = fit(classical_dip(), task, args.iterations, device=str(device), seed=seed, options=options)
            psnr[name] = (r.metrics["psnr"], r.seconds)
        for name in diffs:
            diffs[name].append(psnr[name][0] - psnr["fp32"][0])
        print(f"seed {seed}: " + "  ".join(f"{name} {p:.2f} dB ({t:.1f}s)" for name, (p, t) in psnr.items()))
    for name, values in diffs.items():
        print(f"mean {name} - fp32: {statistics.mean(values):+.3f} dB")


def _worker(args_tuple) -> float:
    size, iterations, fits, device, precision, graph, seed = args_tuple
    if device == "cpu":
        torch.set_num_threads(1)
    from nasdip_deap import classical_dip
    from nasdip_deap.engine import EngineOptions, fit

    task = make_task(size)
    started = time.perf_counter()
    for k in range(fits):
        fit(classical_dip(), task, iterations, device=device, seed=seed * 100 + k,
            options=EngineOptions(precision=precision, channels_last=True, cuda_graph=graph))
    return time.perf_counter() - started


def concurrency(args, device) -> None:
    iterations = args.concurrency_iterations or args.iterations
    print(f"\n## fits per hour, classical DIP {args.size}x{args.size}, {iterations} iterations per fit, "
          f"{args.fits} fits per process, {args.precision}; wall time includes each process's start")
    ctx = mp.get_context("spawn")
    base = None
    for graph in args.graph_modes:
        for n in args.concurrency:
            started = time.perf_counter()
            with ctx.Pool(n) as pool:
                pool.map(_worker, [(args.size, iterations, args.fits, str(device), args.precision, graph, i)
                                   for i in range(n)])
            wall = time.perf_counter() - started
            per_hour = n * args.fits / wall * 3600
            base = base or per_hour
            print(f"{'cuda-graph' if graph else 'eager':<10} {n} concurrent: {n * args.fits} fits in {wall:.1f}s "
                  f"-> {per_hour:.0f} fits/hour (x{per_hour / base:.2f} of eager, 1 at a time)")


def large_images(args, device) -> None:
    """Seconds per fit and fits per hour with 1/2/4 concurrent fits at the sizes of whole photos."""
    print(f"\n## whole photos: classical DIP, {args.large_iterations} iterations per fit, one fit per process, "
          f"{'CUDA graphs' if device.type == 'cuda' else 'CPU, one thread per fit'}; wall time includes each "
          f"process's start")
    ctx = mp.get_context("spawn")
    for size in args.large_sizes:
        h, w = size
        for n in args.concurrency:
            started = time.perf_counter()
            with ctx.Pool(n) as pool:
                seconds = pool.map(_worker, [((h, w), args.large_iterations, 1, str(device), args.precision, True, i)
                                             for i in range(n)])
            wall = time.perf_counter() - started
            print(f"{w}x{h}: {n} concurrent: {statistics.mean(seconds):.1f} s per fit, "
                  f"{n / wall * 3600:.0f} fits/hour")


REFERENCE_LOOP = """
import sys, time, torch
sys.path.insert(0, {ref!r})
from models.skip import skip
torch.set_num_threads(1)
torch.manual_seed(0)
size, iterations = {size}, {iterations}
net = skip(32, 3, [128] * 5, [128] * 5, [4] * 5, upsample_mode="bilinear", need_sigmoid=True, need_bias=True,
           pad="reflection", act_fun="LeakyReLU")
z = torch.rand(1, 32, size, size) * 0.1
noise = z.clone()
target = torch.rand(1, 3, size, size)
opt = torch.optim.Adam(net.parameters(), lr=0.01)
avg = None
for _ in range(iterations):
    opt.zero_grad()
    out = net(z + noise.normal_() * (1 / 30))
    avg = out.detach() if avg is None else avg * 0.99 + out.detach() * 0.01
    torch.nn.functional.mse_loss(out, target).backward()
    opt.step()
"""


def whole_process(args) -> None:
    """``nasdip baseline --crop 64 --iterations 150`` against the reference loop, each a new process with
    one thread, interleaved over --rounds; medians and their ratio."""
    import subprocess
    import tempfile

    ref = os.environ.get("NASDIP_REFERENCE_DIP")
    if not ref or not (Path(ref) / "models" / "skip.py").exists():
        print("\n## whole process: skipped (set NASDIP_REFERENCE_DIP to a deep-image-prior checkout)")
        return
    size, iterations = args.process_size, args.process_iterations
    times: dict[str, list[float]] = {"nasdip": [], "reference": []}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for name in times:
                cmd = ([sys.executable, "-m", "nasdip_deap", "baseline", "--crop", str(size), "--iterations",
                        str(iterations), "--threads", "1", "--precision", args.process_precision, "--quiet",
                        "--out", str(Path(folder) / f"run{round_}")] if name == "nasdip" else
                       [sys.executable, "-c", REFERENCE_LOOP.format(ref=ref, size=size, iterations=iterations)])
                started = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                times[name].append(time.perf_counter() - started)
    ours, theirs = statistics.median(times["nasdip"]), statistics.median(times["reference"])
    print(f"\n## whole process, {size} px, {iterations} iterations, one thread, median of {args.rounds} "
          f"interleaved rounds")
    print(f"nasdip baseline ({args.process_precision}) {ours:.1f} s, reference loop {theirs:.1f} s: "
          f"ratio {ours / theirs:.2f}")


def size_pair(text: str) -> tuple[int, int]:
    """``512`` or ``512x768`` (height x width) -> (h, w)."""
    h, _, w = text.partition("x")
    try:
        pair = (int(h), int(w or h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if min(pair) < min_image_size(5):
        raise argparse.ArgumentTypeError(f"sides must be >= {min_image_size(5)} px, got {text!r}")
    return pair


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=positive_int, default=256, help="image side for the PSNR and concurrency parts")
    parser.add_argument("--step-sizes", type=positive_int, nargs="+", default=[64, 128, 256], help="sides for step times")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row at --size")
    parser.add_argument("--steps", type=positive_int, default=30, help="timed steps per row")
    parser.add_argument("--warmup", type=positive_int, default=5,
                        help="untimed steps before them (on CUDA at least 5: a CUDA graph is captured at step 4)")
    parser.add_argument("--iterations", type=positive_int, default=1000, help="iterations per fit")
    parser.add_argument("--seeds", type=positive_int, default=2)
    parser.add_argument("--fits", type=positive_int, default=2, help="fits per process in the concurrency test")
    parser.add_argument("--concurrency", type=positive_int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency-iterations", type=positive_int, help="iterations per fit there (default --iterations)")
    parser.add_argument("--graph-modes", type=int, nargs="+", default=[0, 1], choices=(0, 1),
                        help="concurrency with CUDA graphs off (0) and/or on (1)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--large-sizes", type=size_pair, nargs="+", default=[(512, 512), (512, 768)],
                        help="HxW of the whole-photo rows (default 512 512x768)")
    parser.add_argument("--large-iterations", type=positive_int, default=3000)
    parser.add_argument("--process-size", type=positive_int, default=64)
    parser.add_argument("--process-iterations", type=positive_int, default=150)
    parser.add_argument("--process-precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds of the process timing")
    parser.add_argument("--parts", nargs="+", default=["steps", "psnr", "concurrency", "large"],
                        choices=("steps", "psnr", "concurrency", "large", "process"))
    args = parser.parse_args(argv)
    smallest = min_image_size(5)  # the classical network's five levels
    if min([args.size, *args.step_sizes]) < smallest:
        parser.error(f"--size and --step-sizes must be >= {smallest} px for the classical network")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {str(error).splitlines()[0]}")
    if device.type == "cuda" and args.warmup < 5:
        parser.error("--warmup must be >= 5 on CUDA, or the CUDA graph's capture would be timed")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU machine, or pass --device cpu for a smoke test")
    if device.type == "cpu":
        torch.set_num_threads(1)  # as in a search: one thread, so a CPU fit repeats for its seed
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    if "steps" in args.parts:
        for size in args.step_sizes:
            step_times(args, device, size)
    if "psnr" in args.parts:
        precision_psnr(args, device)
    if "concurrency" in args.parts:
        concurrency(args, device)
    if "large" in args.parts:
        large_images(args, device)
    if "process" in args.parts:
        whole_process(args)


if __name__ == "__main__":
    main()
