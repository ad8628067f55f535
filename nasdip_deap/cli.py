"""``nasdip`` command line: search, restore, baseline, list."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from . import __version__
from .errors import UserError

log = logging.getLogger("nasdip")


# -- argument types -------------------------------------------------------------------------------
def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


# -- parser ---------------------------------------------------------------------------------------
def add_problem_arguments(parser: argparse.ArgumentParser, default_crop: int | None,
                          default_iterations: int) -> None:
    from .registry import TASKS

    g = parser.add_argument_group("problem")
    g.add_argument("--task", default="denoise",
                   help=f"restoration task (default denoise; see `nasdip list`; built in: "
                        f"{', '.join(TASKS.names())})")
    g.add_argument("--image", help="clean image; the task synthesises the degraded observation from it, so the "
                                   "ground truth is known (default: scikit-image's astronaut, 128 px)")
    g.add_argument("--observed", help="an already degraded image to restore (no ground truth unless --clean)")
    g.add_argument("--clean", help="ground truth for --observed, used only for reporting PSNR/SSIM")
    g.add_argument("--crop", type=non_negative_int, default=default_crop,
                   help=f"centre-crop the image(s) to this many pixels square; 0 = no crop "
                        f"(default {default_crop or 0})")
    g.add_argument("--levels", type=positive_int, default=5, help="encoder-decoder levels, 1-6 (default 5)")
    g.add_argument("--iterations", type=positive_int, default=default_iterations,
                   help=f"Adam steps per DIP fit (default {default_iterations})")
    g.add_argument("--seed", type=int, default=0, help="random seed; the same seed on CPU gives the same result")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    g.add_argument("--out", help="output folder (default: runs/<command>-<time>)")
    g.add_argument("--force", action="store_true", help="write into an existing, non-empty output folder")
    g.add_argument("--quiet", action="store_true", help="only warnings and the final result")
    g.add_argument("--verbose", action="store_true", help="log every fit (and tracebacks of internal errors)")
    for entry in TASKS.entries():
        tg = parser.add_argument_group(f"{entry.name} task options")
        entry.obj.add_arguments(tg)


def build_parser() -> argparse.ArgumentParser:
    from .registry import ALGORITHMS

    parser = argparse.ArgumentParser(prog="nasdip", description="Neural architecture search for Deep Image Prior "
                                     "(DEAP + PyTorch).")
    parser.add_argument("--version", action="version", version=f"nasdip-deap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("search", help="evolve a DIP architecture for one image (no arguments: a small demo)")
    add_problem_arguments(s, default_crop=48, default_iterations=300)
    g = s.add_argument_group("search")
    g.add_argument("--population", type=positive_int, default=6, help="population size (default 6)")
    g.add_argument("--generations", type=non_negative_int, default=2,
                   help="generations after the initial population (default 2)")
    g.add_argument("--algorithm", default="ga", help=f"search algorithm: {', '.join(ALGORITHMS.names())} (default ga)")
    g.add_argument("--crossover", default="two-point", help="crossover operator, NAME[:key=value,...] "
                                                            "(default two-point)")
    g.add_argument("--mutation", default="flip-bit", help="mutation operator, NAME[:key=value,...] (default flip-bit)")
    g.add_argument("--selection", help="selection operator, NAME[:key=value,...] (default: the algorithm's; "
                                       "tournament for ga)")
    g.add_argument("--cxpb", type=probability, default=0.5, help="crossover probability (default 0.5)")
    g.add_argument("--mutpb", type=probability, default=0.3, help="mutation probability (default 0.3)")
    g.add_argument("--lambda", dest="lambda_", type=positive_int, help="children per generation for "
                   "mu-plus-lambda and nsga2 (default: population)")
    g.add_argument("--hof-size", type=positive_int, default=5, help="hall-of-fame size (default 5)")
    g.add_argument("--fitness", choices=("auto", "reference", "blind"), default="auto",
                   help="reference: PSNR against the clean image; blind: PSNR on held-out observed pixels, no "
                        "ground truth; auto: reference when a clean image is known (default)")
    g.add_argument("--holdout", type=float, default=0.1, help="share of observed pixels held out for blind "
                                                              "fitness (default 0.1)")
    g.add_argument("--cost", choices=("parameters", "fit_seconds"), default="parameters",
                   help="second objective of multi-objective algorithms (default parameters)")
    g.add_argument("--evolve-iterations", action="store_true",
                   help="add the iteration count T (a share of --iterations) to the genome")
    g.add_argument("--no-classical-seed", action="store_true",
                   help="do not seed the first population with classical DIP")
    g.add_argument("--init-spread", type=probability, metavar="P",
                   help="start from mutants of classical DIP, each bit flipped with probability P (e.g. 0.05), "
                        "instead of random genomes (the paper's start); pays when the search is small")
    g.add_argument("--finalists", type=non_negative_int, default=0, metavar="N",
                   help="before choosing the best, re-fit the N best hall-of-fame architectures --finalist-repeats "
                        "more times (new seed, new held-out pixels) and choose by mean fitness: one fit's score "
                        "is partly luck at small sizes (default 0: choose by one fit)")
    g.add_argument("--finalist-repeats", type=positive_int, default=2, metavar="R",
                   help="re-fits per finalist (default 2)")
    g.add_argument("--final-iterations", type=positive_int,
                   help="Adam steps of the final fit of the best architecture (default: --iterations)")
    g.add_argument("--baseline-fit", action="store_true",
                   help="also fit classical DIP with the final budget at the end, for the report's side-by-side "
                        "pictures (one extra fit of a large network; without it the report shows classical "
                        "DIP's search score only)")
    g = s.add_argument_group("checkpoints and cache")
    g.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the interrupted run in RUN_DIR from its checkpoint.pkl, with its saved settings "
                        "(only --generations, --device, --backend, --workers, --cache, --quiet, --verbose may take new values); "
                        "checkpoints are pickles: never resume a run folder from an untrusted source")
    g.add_argument("--cache", metavar="FILE", action="append",
                   help="reuse the scores in an evaluation cache file (a run's cache.jsonl) for entries with the "
                        "same task, image and fitness settings; may be repeated")
    g = s.add_argument_group("evaluation backend (see README: running across hosts)")
    g.add_argument("--backend", choices=("serial", "processes", "scoop"),
                   help="where fits run: serial (this process), processes (worker processes on this machine, one "
                        "per GPU or per core), scoop (the workers of `python -m scoop`); default: scoop when run "
                        "under SCOOP, else serial")
    g.add_argument("--workers", type=positive_int,
                   help="worker processes for --backend processes (default: one per GPU, else one per core)")
    g.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads per fit (default 1); fixed so that a seed gives the same result with "
                        "any backend and worker count")
    g.add_argument("--eval-timeout", type=positive_float, metavar="SECONDS",
                   help="a fit still running after this many seconds fails (worst fitness, recorded in "
                        "errors.jsonl)")

    g = s.add_argument_group("cost of a search (multi-fidelity, early stopping, speed)")
    g.add_argument("--fidelity", default="full",
                   help="full: every new candidate gets --iterations; halving[:eta=3,rungs=3,curve_margin=1.0]: "
                        "successive halving within each generation, the best 1/eta of each rung continue, and "
                        "full-budget fits clearly behind the best curve stop early; "
                        "adaptive[:curve_margin=0.1,curve_warmup=0.167,pilot=1]: every fit stops at its held-out "
                        "plateau (--early-stop, default 3 here) or when clearly behind the best fit so far (in the "
                        "first generation: the first `pilot` candidates, fitted first) (default full)")
    g.add_argument("--early-stop", type=positive_int, metavar="PATIENCE",
                   help="stop a fit when its score (held-out PSNR for blind fitness) has not improved for "
                        "PATIENCE log points (a log point is 1/50 of the budget) and keep its best output (the "
                        "final fit then stops where the search fit peaked); off by default")
    g.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: bfloat16 autocast on CUDA (CPU fits stay fp32; default fp32: bf16 measured no faster "
                        "and 0.1-0.2 dB worse)")
    g.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format on GPUs (measured slower for DIP nets on an H100; opt-in)")
    g.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                   help="capture each fit's training step once as a CUDA graph and replay it (CUDA only, on by "
                        "default: about 3x the fits per hour; CPU fits run as they are)")

    for name, text in (("restore", "restore an image with an architecture from a genome file"),
                       ("baseline", "restore an image with classical DIP, for comparison")):
        r = sub.add_parser(name, help=text)
        add_problem_arguments(r, default_crop=None, default_iterations=1000)
        r.add_argument("--threads", type=positive_int, default=1,
                       help="torch CPU threads for the fit (default 1, as in a search, so a genome restored with the "
                            "search's seed reproduces its score)")
        if name == "restore":
            r.add_argument("--genome", required=True, help="genome file: best.json, hall_of_fame.json or a "
                                                            "JSON list of bits")

    sub.add_parser("list", help="list registered tasks, operators and algorithms")
    r = sub.add_parser("report", help="write report.html and figures for a search run folder")
    r.add_argument("run_dir", metavar="RUN_DIR", help="the run folder of `nasdip search`")
    return parser


def explicit_options(argv: list[str] | None) -> set[str]:
    """Names (dests) of the options given on the command line: argparse defaults do not count, so
    ``--resume`` can tell a conflicting option from an option left out."""
    parser = build_parser()
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return set(vars(parser.parse_args(argv))) - {"command"}


def configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if getattr(args, "quiet", False) else (
        logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("nasdip")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(args)
    if args.command == "search":
        args.given_options = sorted(explicit_options(argv))
    from . import commands

    try:
        return commands.run(args) or 0
    except UserError as exc:
        print(f"nasdip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasdip: interrupted; files written so far are kept", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line unless --verbose
        if getattr(args, "verbose", False):
            raise
        print(f"nasdip: internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)",
              file=sys.stderr)
        return 1
