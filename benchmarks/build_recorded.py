"""Build (or resume building) the recorded benchmark problems of ``recorded.py``: real fits of distinct
architectures, appended to ``benchmarks/recorded/<problem>.jsonl.gz`` batch by batch, so an interrupted build
loses at most the batch in flight and the next call goes on from where it stopped.

    python benchmarks/build_recorded.py --count 1000 --jobs 2          # every problem, round robin

Architectures are drawn where searches go: classical DIP, random genomes (a search's first population),
mutants of classical DIP at several bit-flip rates (``--init-spread`` starts), and children of the best
recorded so far (two-point crossover of two of the top 20 by blind fitness, then bit flips: what a GA's later
generations fit). Draw ``i`` of a problem uses its own seeded generator, so the same files are rebuilt by the
same command on the same CPU. Fits run through the product's evaluator and backend (``compose``).
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time

from bench_args import positive_int
from recorded import FOLDER, PROBLEMS, entry, read_entries, rewrite
from nasdip_deap import classical_dip
from nasdip_deap.compose import start_backend
from nasdip_deap.runner import derive_seed

SPREADS = (0.01, 0.02, 0.05, 0.1)
KINDS = ("random", "classical-mutant", "random", "top-child", "classical-mutant", "top-child")


def draw(i: int, spec, entries: list[dict], name: str) -> tuple[list[int], str]:
    """Genome number ``i`` of problem ``name`` and how it was drawn."""
    rng = random.Random(derive_seed(0, "recorded-draw", name, i))
    classical = spec.encode(classical_dip(spec.levels))
    if i == 0:
        return classical, "classical"
    kind = KINDS[i % len(KINDS)]
    fitted = [e for e in entries if e.get("error") is None]
    if kind == "top-child" and len(fitted) < 20:
        kind = "random"
    if kind == "random":
        return spec.random_bits(rng), kind
    if kind == "classical-mutant":
        spread = SPREADS[(i // len(KINDS)) % len(SPREADS)]
        return [bit ^ int(rng.random() < spread) for bit in classical], f"{kind}:{spread}"
    top = sorted(fitted, key=lambda e: -e["fitness"][0])[:20]
    a, b = (list(e["bits"]) for e in rng.sample(top, 2))
    lo, hi = sorted(rng.sample(range(len(a) + 1), 2))
    child = a[:lo] + b[lo:hi] + a[hi:]
    return [bit ^ int(rng.random() < 1.0 / len(child)) for bit in child], kind


def next_batch(problem, spec, entries: list[dict], size: int) -> list[tuple[list[int], str]]:
    """``size`` genomes of architectures not yet recorded (nor in the batch), continuing the draws."""
    seen = {e["key"] for e in entries}
    batch, i = [], len(entries)
    while len(batch) < size:
        for attempt in range(100):
            bits, source = draw(i + attempt * 100_003, spec, entries, problem.name)
            key = spec.decode(bits).key()
            if key not in seen:
                break
        seen.add(key)
        batch.append((bits, source))
        i += 1
    return batch


def build(args) -> None:
    problems = [PROBLEMS[name] for name in args.problems]
    state = {}
    for problem in problems:
        problem.path(args.folder).parent.mkdir(parents=True, exist_ok=True)
        evaluator = problem.evaluator()
        entries = read_entries(problem.path(args.folder))
        if entries:
            rewrite(problem.path(args.folder), entries)  # drops a torn tail left by an interrupted build
        state[problem.name] = (evaluator, entries)
        print(f"{problem.name}: {len(state[problem.name][1])} recorded, context {evaluator.context}", flush=True)
    config = problems[0].config(backend="processes" if args.jobs > 1 else "serial",
                                workers=args.jobs if args.jobs > 1 else None)
    started, fitted = time.perf_counter(), 0
    with start_backend(config) as backend:
        while True:
            pending = [p for p in problems if len(state[p.name][1]) < args.count]
            if not pending:
                break
            for problem in pending:
                evaluator, entries = state[problem.name]
                batch = next_batch(problem, evaluator.spec, entries, min(args.batch, args.count - len(entries)))
                records = list(backend.map(evaluator.record, [bits for bits, _ in batch]))
                new = [entry(r, source) for r, (_, source) in zip(records, batch)]
                with gzip.open(problem.path(args.folder), "at") as f:  # one gzip member per batch
                    f.write("".join(json.dumps(e) + "\n" for e in new))
                entries.extend(new)
                fitted += len(new)
                rate = fitted / (time.perf_counter() - started)
                left = sum(max(0, args.count - len(state[p.name][1])) for p in problems) / rate
                best = max(e["fitness"][0] for e in entries if e.get("error") is None)
                print(f"{problem.name}: {len(entries)}/{args.count} (best blind {best:.2f}), {rate * 60:.1f} fits/min, "
                      f"~{left / 3600:.1f} h left", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=sorted(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--count", type=positive_int, default=1000, help="entries per problem (default 1000)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="worker processes (default 1)")
    parser.add_argument("--batch", type=positive_int, default=8, help="fits per write (default 8)")
    parser.add_argument("--folder", default=str(FOLDER), help="where the files are (default benchmarks/recorded)")
    build(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
