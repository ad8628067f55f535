"""``nasdip`` command line: search, restore, baseline, report, list.

The flags' defaults come from ``compose.SearchConfig`` / ``RestoreConfig`` and the tasks' declared
options, so the command line and the Python API share every default. Ranges are checked where the
values are used (the configs, the tasks), once for both.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import __version__
from .errors import UserError

log = logging.getLogger("nasdip")


class Parser(argparse.ArgumentParser):
    """argparse with one error line and a pointer to ``--help`` instead of the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, ``timeout``, a container stop), handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def add_fit_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """Where and how fits run, and the final restoration: shared by every command that fits."""
    g = parser.add_argument_group("fits")
    g.add_argument("--iterations", type=int, default=defaults["iterations"],
                   help="Adam steps per DIP fit (default %(default)s)")
    g.add_argument("--ensemble", type=int, default=defaults["ensemble"], metavar="K",
                   help="the restoration is the average of K fits with different seeds (default %(default)s)")
    g.add_argument("--seed", type=int, default=defaults["seed"],
                   help="random seed; the same seed gives the same result on the same CPU model, threads, "
                        "precision and torch version (default %(default)s)")
    g.add_argument("--device", default=defaults["device"], help="auto (CUDA when present), cpu, cuda, cuda:N "
                                                                "(default %(default)s)")
    g.add_argument("--threads", type=int, default=defaults["threads"],
                   help="torch CPU threads per fit (default %(default)s); fixed, so that a seed gives the same "
                        "result with any backend and worker count")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=defaults["precision"],
                   help="fp32, bf16 (bfloat16 autocast), or auto: bf16 with the channels-last layout on CPUs where "
                        "it was measured not to cost quality (AMX), fp32 elsewhere and on GPUs (default %(default)s)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=defaults["channels_last"],
                   help="channels-last memory format (default: with bf16 on the CPU)")
    g.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=defaults["cuda_graph"],
                   help="capture each fit's training step once as a CUDA graph and replay it (CUDA only; "
                        "default on)")


def add_problem_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    from .problem import DEMO_CROP
    from .registry import TASKS

    g = parser.add_argument_group("problem")
    g.add_argument("--task", default="denoise",
                   help=f"restoration task (default denoise; built in: {', '.join(TASKS.names())})")
    g.add_argument("--image", help="clean image; the task synthesises the degraded observation from it, so the "
                                   "ground truth is known (default: scikit-image's astronaut photo)")
    g.add_argument("--observed", help="an already degraded image to restore (no ground truth unless --clean)")
    g.add_argument("--clean", help="ground truth for --observed, used only for reporting PSNR/SSIM (it selects "
                                   "nothing unless --fitness reference)")
    g.add_argument("--crop", type=int, help=f"centre-crop the image(s) to this many pixels square; 0 = no crop "
                                            f"(default: the whole image; the demo uses a {DEMO_CROP} px crop)")
    g.add_argument("--levels", type=int, default=defaults.get("levels", 5),
                   help="encoder-decoder levels, 1-6 (default: 5; restore: the genome's)")
    g.add_argument("--out", help="output folder (default: runs/<command>-<time>)")
    g.add_argument("--force", action="store_true", help="write into an existing, non-empty output folder")
    g.add_argument("--quiet", action="store_true", help="only warnings and the final result")
    g.add_argument("--verbose", action="store_true", help="log every fit (and tracebacks of internal errors)")
    seen: dict[str, object] = {}
    for entry in TASKS.entries():
        options = [o for o in entry.obj.OPTIONS if o.name not in seen]
        for option in entry.obj.OPTIONS:
            seen.setdefault(option.name, option)
        if not options:
            continue
        tg = parser.add_argument_group(f"{entry.name} task options")
        for option in options:
            tg.add_argument(option.flag, dest=option.name, default=argparse.SUPPRESS,
                            type=option.param.type if not option.param.choices else _choice(option.param.choices),
                            metavar="FILE" if option.file else None,
                            help=f"{entry.name}: {option.help}" + (f" (default {option.default})"
                                                                  if option.default is not None else ""))


def _choice(choices: tuple):
    """An argparse type that turns text into the matching choice (so ``--scale 4`` is the int 4)."""
    def convert(text: str):
        for c in choices:
            if str(c) == text:
                return c
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(map(str, choices))})")
    return convert


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKENDS
    from .compose import RestoreConfig, SearchConfig, config_fields
    from .fitness import AUTO_HELDOUT_ABOVE, FINAL_STOPS
    from .registry import ALGORITHMS

    search_defaults, restore_defaults = config_fields(SearchConfig), config_fields(RestoreConfig)
    parser = Parser(prog="nasdip", description="Neural architecture search for Deep Image Prior (DEAP + PyTorch).")
    parser.add_argument("--version", action="version", version=f"nasdip-deap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    s = sub.add_parser("search", help="evolve a DIP architecture for one image (no arguments: a small demo)")
    add_problem_arguments(s, search_defaults)
    add_fit_arguments(s, search_defaults)
    d = search_defaults
    g = s.add_argument_group("search")
    g.add_argument("--population", type=int, default=d["population"], help="population size (default %(default)s)")
    g.add_argument("--generations", type=int, default=d["generations"],
                   help="generations after the initial population (default %(default)s)")
    g.add_argument("--algorithm", default=d["algorithm"],
                   help=f"search algorithm: {', '.join(ALGORITHMS.names())} (default %(default)s)")
    g.add_argument("--crossover", default=d["crossover"],
                   help="crossover operator, NAME[:key=value,...] (default %(default)s)")
    g.add_argument("--mutation", default=d["mutation"],
                   help="mutation operator, NAME[:key=value,...] (default %(default)s)")
    g.add_argument("--selection", default=d["selection"],
                   help="selection operator, NAME[:key=value,...] (default: the algorithm's; tournament for ga)")
    g.add_argument("--cxpb", type=float, default=d["cxpb"], help="crossover probability (default %(default)s)")
    g.add_argument("--mutpb", type=float, default=d["mutpb"], help="mutation probability (default %(default)s)")
    g.add_argument("--lambda", dest="lambda_", type=int, default=d["lambda_"],
                   help="children per generation for mu-plus-lambda and nsga2 (default: population)")
    g.add_argument("--hof-size", type=int, default=d["hof_size"], help="hall-of-fame size (default %(default)s)")
    g.add_argument("--fitness", choices=("blind", "reference"), default=d["fitness"],
                   help="blind: PSNR on held-out observed pixels, no ground truth (default); reference: an oracle "
                        "for benchmarks, PSNR against the clean image selects the architectures (needs --image "
                        "or --clean; the log, best.json and the report say the result was selected with ground "
                        "truth)")
    g.add_argument("--holdout", type=float, default=d["holdout"],
                   help="share of observed pixels held out for blind fitness (default %(default)s)")
    g.add_argument("--cost", choices=("parameters", "fit_seconds"), default=d["cost"],
                   help="second objective of multi-objective algorithms (default %(default)s)")
    g.add_argument("--evolve-iterations", action="store_true",
                   help="add the iteration count T (a share of --iterations) to the genome")
    g.add_argument("--no-classical-seed", action="store_true",
                   help="do not seed the first population with classical DIP")
    g.add_argument("--novel-retries", type=int, metavar="N", default=d["novel_retries"],
                   help="times a child whose architecture the run has already scored is varied again before "
                        "its score is reused (default %(default)s; 0: reuse at once)")
    g.add_argument("--init-spread", type=float, metavar="P", default=d["init_spread"],
                   help="start from mutants of classical DIP, each bit flipped with probability P (e.g. 0.05), "
                        "instead of random genomes (the paper's start)")
    g.add_argument("--init-prior", nargs="+", metavar="FILE", default=d["init_prior"],
                   help="start from the random genomes that a model of these records of earlier runs "
                        "(evaluations.jsonl, cache.jsonl, .jsonl.gz; recorded: the built-in prior) ranks best; "
                        "none: uniform random genomes (the paper's start); default auto: the built-in prior for "
                        "the default genome, unless --init-spread or --algorithm random is given")
    g.add_argument("--init-pool", type=int, metavar="N", default=d["init_pool"],
                   help="with --init-prior: random genomes ranked per slot of the first population "
                        "(default %(default)s)")
    g.add_argument("--finalists", type=int, default=d["finalists"], metavar="N",
                   help="before choosing the best, re-fit the N best hall-of-fame architectures --finalist-repeats "
                        "more times (new seed, new held-out pixels) and choose by mean fitness (default "
                        "%(default)s: choose by one fit)")
    g.add_argument("--finalist-repeats", type=int, default=d["finalist_repeats"], metavar="R",
                   help="re-fits per finalist (default %(default)s)")
    g.add_argument("--final-iterations", type=int, default=d["final_iterations"],
                   help="Adam steps of the final fits of the best architecture (default: --iterations, or where "
                        "an early-stopped search fit peaked)")
    g.add_argument("--final-stop", choices=FINAL_STOPS, default=d["final_stop"],
                   help="how many steps the final fits train: fixed (--final-iterations, else the search fits' "
                        "budget), heldout (one calibration fit of the whole image finds where its held-out "
                        "pixels peak, up to --final-cap steps, never fewer than --iterations; larger images "
                        "peak later), cap (--final-cap steps) or auto (above "
                        f"{AUTO_HELDOUT_ABOVE} px or on a proxy: cap for a task without noise, inpainting and "
                        "super-resolution, heldout for denoising; else fixed) (default %(default)s)")
    g.add_argument("--final-cap", type=int, default=d["final_cap"], metavar="N",
                   help="with --final-stop heldout, cap or auto: the most steps of the calibration fit, and the "
                        "steps of --final-stop cap (default: 10 x --iterations)")
    g.add_argument("--search-fits", type=int, default=d["search_fits"], metavar="N",
                   help="keep the outputs of the N best search fits of the whole image and average the best of "
                        "them (chosen by the search's fitness) into the restoration (default %(default)s; 0: "
                        "final fits only; no effect when candidates are scored on a proxy)")
    g.add_argument("--final-holdout", action="store_true",
                   help="with blind fitness, keep the held-out pixels out of the final fits too, so that the "
                        "ensemble's held-out PSNR is reported without ground truth (the restoration then uses "
                        "fewer pixels; see docs/results.md)")
    g.add_argument("--baseline-fit", action="store_true",
                   help="also fit classical DIP with the final budget at the end, for the report's side-by-side "
                        "pictures")
    g.add_argument("--proxy", default=d["proxy"],
                   help="what candidates are scored on: none (the whole image), downscale[:size=S] (the image "
                        "reduced by powers of two to no less than S px), crops[:n=N,size=S] (N crops of S px "
                        "spread over the image), or auto (downscale for images that can be halved, the whole "
                        "image otherwise; default %(default)s). The final fits always restore the whole image")
    g = s.add_argument_group("checkpoints and cache")
    g.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the interrupted run in RUN_DIR with its saved settings (only --generations, "
                        "--device, --backend, --workers, --scheduler, --cache, --quiet, --verbose may take new values); "
                        "checkpoints are pickles: never resume a run folder from an untrusted source")
    g.add_argument("--cache", metavar="FILE", action="append",
                   help="reuse the scores in an evaluation cache file (a run's cache.jsonl) for entries with the "
                        "same task, image and fitness settings; may be repeated")
    g = s.add_argument_group("evaluation backend (see docs/distributed.md)")
    g.add_argument("--backend", default=d["backend"],
                   help=f"where fits run: {', '.join(BACKENDS.names())} (`nasdip list` describes them); default: "
                        f"scoop when run under SCOOP, else serial")
    g.add_argument("--workers", type=int, default=d["workers"],
                   help="worker processes for --backend processes or a local --backend dask (default: one per "
                        "GPU, else one per core)")
    g.add_argument("--scheduler", metavar="ADDRESS", default=d["scheduler"],
                   help="--backend dask: the address (tcp://HOST:8786) or scheduler file of a running Dask "
                        "scheduler whose workers run the fits (default: a local cluster started by the run)")
    g.add_argument("--eval-timeout", type=float, metavar="SECONDS", default=d["eval_timeout"],
                   help="a fit still running after this many seconds fails (worst fitness, recorded in "
                        "errors.jsonl, not cached)")
    g = s.add_argument_group("cost of a search (multi-fidelity, early stopping)")
    g.add_argument("--fidelity", default=d["fidelity"],
                   help="full: every new candidate gets --iterations; halving[:eta=3,rungs=3,curve_margin=1.0]: "
                        "successive halving within each generation; adaptive[:curve_margin=0.1,"
                        "curve_warmup=0.167,pilot=1]: every fit stops at its held-out plateau or when clearly "
                        "behind the best fit so far (default %(default)s; see docs/results.md)")
    g.add_argument("--early-stop", type=int, metavar="PATIENCE", default=d["early_stop"],
                   help="stop a fit when its score (held-out PSNR for blind fitness) has not improved for "
                        "PATIENCE log points (a log point is 1/50 of the budget) and keep its best output; off "
                        "by default")

    for name, text in (("restore", "restore an image with an architecture from a genome file"),
                       ("baseline", "restore an image with classical DIP, for comparison")):
        r = sub.add_parser(name, help=text)
        add_problem_arguments(r, {**restore_defaults, "levels": None if name == "restore" else 5})
        add_fit_arguments(r, restore_defaults)
        if name == "restore":
            r.add_argument("--genome", required=True, help="genome file: best.json, hall_of_fame.json or a "
                                                            "JSON list of bits")

    sub.add_parser("list", help="list registered tasks (with their options), operators, algorithms, proxies and "
                                  "backends")
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
    args.given_options = sorted(explicit_options(argv))
    from . import commands

    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return commands.run(args) or 0
    except UserError as exc:
        print(f"nasdip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        hint = commands.resume_hint(args)
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"nasdip: {what}; files written so far are kept{hint}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # a bug, not bad input: one line unless --verbose
        if getattr(args, "verbose", False):
            raise
        print(f"nasdip: internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
