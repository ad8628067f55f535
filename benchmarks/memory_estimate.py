"""How close the memory estimate of a fit (nasdip_deap/memory.py) is to a real fit's peak memory.

Each fit runs in a fresh process (3 iterations on the CPU); its peak resident memory (VmHWM) minus the
memory it held before the fit started is compared with the estimate without its fixed part
(``BASE_BYTES``), and the whole estimate with it. The estimate should err high.

    python benchmarks/memory_estimate.py                 # classical DIP at 64-256 px and random genomes
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys

CHILD = """
import json, sys, torch
from nasdip_deap import GenomeSpec, classical_dip
from nasdip_deap.engine import fit
from nasdip_deap.registry import TASKS

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

torch.set_num_threads(1)
bits, size = json.loads(sys.argv[1]), int(sys.argv[2])
arch = GenomeSpec().decode(bits) if bits else classical_dip()
task = TASKS.get("denoise").from_clean(torch.rand(3, size, size), {"sigma": 25.0}, 0)
before = rss("VmRSS:")
fit(arch, task, 3, device="cpu", seed=0)
print(json.dumps({"peak": rss("VmHWM:") - before}))
"""


def measure(bits: list[int] | None, size: int) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(bits or []), str(size)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def main(argv=None) -> None:
    from nasdip_deap import GenomeSpec, classical_dip
    from nasdip_deap.memory import BASE_BYTES, estimate_fit_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--random", type=int, default=4, help="random genomes, at the middle size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec, rng = GenomeSpec(), random.Random(args.seed)
    cases = [(None, size) for size in args.sizes]
    cases += [(spec.random_bits(rng), args.sizes[len(args.sizes) // 2]) for _ in range(args.random)]
    print("| architecture | size | measured peak | estimate | its fixed part | measured / estimate |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for bits, size in cases:
        arch = spec.decode(bits) if bits else classical_dip()
        estimate = estimate_fit_bytes(arch, (size, size), 3)
        peak = measure(bits, size)
        ratios.append(peak / estimate)
        name = "classical DIP" if bits is None else arch.summary()[:40] + "..."
        print(f"| {name} | {size} px | {peak / 2**20:.0f} MiB | {estimate / 2**20:.0f} MiB | "
              f"{BASE_BYTES / 2**20:.0f} MiB | {peak / estimate:.2f} |", flush=True)
    print(f"\nmeasured / estimate: max {max(ratios):.2f}, median {sorted(ratios)[len(ratios) // 2]:.2f}")


if __name__ == "__main__":
    main()
