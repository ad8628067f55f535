"""Turning a genome into fitness values: decode, fit, score. The ``Evaluator`` is the toolbox's
``evaluate``; it is a plain picklable object so any ``map`` (serial, processes, SCOOP) can ship it.

Fitness modes:
- ``reference``: PSNR of the restoration against the clean image (needs ground truth);
- ``blind``: a random ``holdout`` share of the observed pixels is kept out of the DIP loss and the
  fit is scored by its PSNR on them. No ground truth is used; when it is known, the true PSNR is
  still recorded beside the blind score so the two can be compared.

A candidate is fitted on each problem of the run's proxy (the whole image, or crops of it) and scored
by the mean over them. A fit that fails because of the architecture (a non-finite loss, a degenerate
network) is an architecture's score and is cached; one that fails because of the machine (out of
memory, a time limit, a lost worker, an unusable device) is recorded with ``failure: "machine"`` and
never cached, so a later run fits it again.
"""
from __future__ import annotations

import hashlib
import logging
import statistics
import time
import traceback
from dataclasses import asdict, dataclass

import torch

from . import metrics
from .engine import FitResult, FitTimeout, copy_task_without_clean, resolve_device
from .errors import UserError
from .genome import GenomeSpec
from .memory import OutOfMemory, check_memory, is_out_of_memory
from .proxy import WholeImage
from .runner import FitRunner, derive_seed, fit_seed
from .stopping import AnyStopper, CurveStopper, PlateauStopper
from .workers import current_worker

FITNESS_MODES = ("reference", "blind")
# how the architectures of a run were selected, in the log, best.json and the report: reference fitness is an
# oracle (the ground truth chooses), which a user comparing against DIP or CBM3D must be told
SELECTED_WITH = {"blind": "blind fitness (held-out observed pixels, no ground truth)",
                 "reference": "ground truth (oracle: --fitness reference)"}
MIN_RELIABLE_HOLDOUT = 50  # held-out pixels below which blind fitness ranks noisily (docs/results.md)
OBJECTIVES = {
    # name: (DEAP weight, worst value for failed fits)
    "quality": (1.0, 0.0),
    "parameters": (-1.0, 1e12),
    "fit_seconds": (-1.0, 1e12),
}
MACHINE, ARCHITECTURE = "machine", "architecture"
_MACHINE_WORDS = ("out of memory", "cuda", "torch not compiled", "fittimeout", "workerlost", "outofmemory",
                  "can't allocate memory", "device-side", "nccl", "driver")


@dataclass(frozen=True)
class FitnessSettings:
    """How each genome is scored; with the runner and the proxy, the evaluation-cache key."""

    mode: str = "reference"
    iterations: int = 300
    holdout: float = 0.1
    seed: int = 0
    objectives: tuple[str, ...] = ("quality",)
    timeout: float | None = None  # seconds; a fit still running then fails (worst fitness)
    early_stop: int | None = None  # patience in log points (1/50 of the budget); set, fits keep their best output
    fidelity: str = "full"  # multi-fidelity schedule (see fidelity.py); recorded for the cache key

    def __post_init__(self):
        if self.mode not in FITNESS_MODES:
            raise UserError(f"unknown fitness mode {self.mode!r}; valid: {', '.join(FITNESS_MODES)}")
        if self.iterations < 1:
            raise UserError(f"--iterations must be >= 1, got {self.iterations}")
        if not 0.0 < self.holdout < 1.0:
            raise UserError(f"--holdout must be between 0 and 1, got {self.holdout}")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise UserError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")
        if self.timeout is not None and not self.timeout > 0:
            raise UserError(f"--eval-timeout must be > 0 seconds, got {self.timeout}")
        if self.early_stop is not None and self.early_stop < 1:
            raise UserError(f"--early-stop must be >= 1 log points, got {self.early_stop}")

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(OBJECTIVES[o][0] for o in self.objectives)

    @property
    def worst(self) -> tuple[float, ...]:
        return tuple(OBJECTIVES[o][1] for o in self.objectives)


def replicate_parts(replicate: int) -> tuple:
    """Extra seed parts of a finalist's re-fit; none for the search fit, so its seed is the final fit's."""
    return ("replicate", replicate) if replicate else ()


def heldout_psnr(task, image: torch.Tensor, holdout: torch.Tensor) -> float:
    """PSNR of a (C, H, W) restoration, degraded by the task, against the observation on the held-out pixels."""
    return metrics.psnr(task.forward(image.unsqueeze(0)), task.observation.unsqueeze(0), holdout.unsqueeze(0))


def make_holdout(task, fraction: float, seed: int, replicate: int = 0, problem: int = 0) -> torch.Tensor:
    """A random (1, h, w) mask over ``fraction`` of the task's observed pixels, fixed for the whole run
    so that every architecture is scored on the same held-out pixels (``replicate`` > 0: another
    draw, for the re-fits of finalists; ``problem`` > 0: the draw of a proxy's other crops)."""
    extra = replicate_parts(replicate) + (("problem", problem) if problem else ())
    gen = torch.Generator().manual_seed(derive_seed("holdout", seed, *extra))
    draw = torch.rand(task.observed_mask.shape, generator=gen) < fraction
    return (draw.float() * (task.observed_mask > 0).float())


def fit_curve(result: FitResult) -> list:
    """The score the fit was judged by, per log point: held-out PSNR when pixels were held out, else
    the true PSNR (rounded; used by multi-fidelity curve stopping and the report)."""
    curve = result.heldout_history or result.psnr_history
    return [(int(step), round(float(score), 4)) for step, score in curve]


def mean_curve(curves: list[list]) -> list:
    """The point-wise mean of score curves logged at the same steps (the proxy's crops)."""
    if len(curves) == 1:
        return curves[0]
    return [(points[0][0], round(statistics.fmean(p[1] for p in points), 4)) for points in zip(*curves)]


def final_budget(record: dict | None, iterations: int, final_iterations: int | None = None) -> tuple[int, bool]:
    """(steps, exact) of a final fit of a searched architecture: ``final_iterations`` when given; else,
    when its search fit stopped early and kept its best output, the step where that fit peaked (judged
    on held-out pixels for blind fitness), exactly; else ``iterations`` as a budget (an architecture
    that evolved its share of the budget trains for that share)."""
    if final_iterations:
        return final_iterations, False
    if record and record.get("best_step"):
        return int(record["best_step"]), True
    return iterations, False


FINAL_STOPS = ("auto", "fixed", "heldout", "cap")
# "auto" sets the final fits' length itself for images larger than this (px, either side) or scored on a
# proxy: the default step count was chosen at 64 px and falls far short of the peak at 128 px (docs/results.md)
AUTO_HELDOUT_ABOVE = 96
PEAK_LOG_POINTS = 300  # log points of a calibration fit over its cap: the peak's step is known to cap/300
PEAK_PATIENCE = 20  # log points without a new held-out best before the calibration fit stops


def heldout_peak(arch, task, runner: FitRunner, cap: int, holdout: float, seed: int) -> dict:
    """The final fits' step count, blind: one calibration fit of ``arch`` on the whole ``task`` with a share
    ``holdout`` of its observed pixels kept out (the clean image unseen), stopped once its held-out PSNR
    has not risen for ``PEAK_PATIENCE`` log points (or at ``cap`` steps); ``steps`` is the step of its
    held-out peak. Larger images peak later (docs/results.md), which a fixed count cannot follow."""
    mask = make_holdout(task, holdout, seed)
    result = runner.fit(arch, copy_task_without_clean(task), cap, seed=fit_seed(seed, arch, "calibration"),
                        holdout=mask, stopper=PlateauStopper(patience=PEAK_PATIENCE, min_delta=0.0),
                        keep_best=True, log_every=max(1, cap // PEAK_LOG_POINTS))
    return {"rule": "heldout", "steps": int(result.best_step or result.iterations), "cap": cap,
            "calibration_iterations": result.iterations, "heldout_psnr": result.metrics.get("heldout_psnr"),
            "seconds": round(result.seconds, 3)}


def calibrated_steps(peak_steps: int, iterations: int) -> int:
    """The final fits' steps from a calibration fit's held-out peak: never fewer than the search fits'
    ``iterations``, since a held-out curve that plateaus early (inpainting's) must not cut the final fits
    short of what the search scored."""
    return max(int(peak_steps), int(iterations))


def stop_steps(rule: str, iterations: int, cap: int, peak_steps: int | None = None) -> int:
    """The final fits' steps under a resolved ``final_stop`` rule other than ``fixed``: ``cap`` trains them
    ``cap`` steps (a noiseless task, whose held-out pixels plateau long before a hole or the fine detail
    is learnt); ``heldout`` the calibration fit's ``peak_steps``, never fewer than ``iterations``."""
    if rule == "cap":
        return int(cap)
    if rule == "heldout":
        if peak_steps is None:
            raise ValueError("the heldout rule needs the calibration fit's peak")
        return calibrated_steps(peak_steps, iterations)
    raise ValueError(f"no step count for final_stop rule {rule!r}")


def failure_kind(exc: BaseException) -> str:
    """``machine`` for a failure that says nothing about the architecture, else ``architecture``."""
    if isinstance(exc, (FitTimeout, OutOfMemory)) or is_out_of_memory(exc):
        return MACHINE
    text = f"{type(exc).__name__}: {exc}".lower()
    return MACHINE if any(word in text for word in _MACHINE_WORDS) else ARCHITECTURE


def record_failure(record: dict) -> str | None:
    """The failure kind of a record, also for cache entries of older versions that lack the field."""
    if record.get("error") is None:
        return None
    kind = record.get("failure")
    if kind in (MACHINE, ARCHITECTURE):
        return kind
    text = str(record["error"]).lower()
    return MACHINE if any(word in text for word in _MACHINE_WORDS) else ARCHITECTURE


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class Evaluator:
    """``evaluator.record(bits)`` fits one genome and returns a JSON-able record; ``evaluator(ind)``
    returns only the fitness tuple (DEAP's ``evaluate`` contract). With ``keep_outputs``, the record
    of a fit of the whole image also holds its output image under ``"output"``, which the search loop
    takes out before the record is stored (see ``restoration.SearchFits``)."""

    def __init__(self, spec: GenomeSpec, task, settings: FitnessSettings, runner: FitRunner | None = None,
                 proxy=None, keep_outputs: bool = False):
        if settings.mode == "reference" and task.clean is None:
            raise UserError("reference fitness needs a clean image; give --image (clean) or use --fitness blind")
        self.spec = spec
        self.task = task
        self.settings = settings
        self.runner = runner or FitRunner()
        self.proxy = proxy or WholeImage()
        self.keep_outputs = keep_outputs  # records of whole-image fits carry the output (for SearchFits)
        self.problems = list(self.proxy.problems(task, settings.seed))
        blind = settings.mode == "blind"
        self.holdouts = [make_holdout(p, settings.holdout, settings.seed, problem=i) if blind else None
                         for i, p in enumerate(self.problems)]
        held = sum(float(h.sum()) for h in self.holdouts) if blind else None
        if held is not None and held < 1:
            raise UserError("the blind fitness hold-out is empty: the image has too few observed pixels "
                            "for --holdout; raise --holdout or use a larger image")
        if held is not None and held < MIN_RELIABLE_HOLDOUT:
            logging.getLogger("nasdip.fitness").warning(
                "blind fitness holds out only %d of %d observed pixels, so it ranks architectures noisily; "
                "use a larger image, proxy or --holdout (super-resolution holds out low-resolution pixels)",
                int(held), int(sum(float((p.observed_mask > 0).sum()) for p in self.problems)))
        self._fit_problems = [copy_task_without_clean(p) if blind else p for p in self.problems]
        self.context = self._context_key()

    def _context_key(self) -> str:
        """What changes a score: the task and image, the fitness settings, the proxy, the genome spec,
        and how fits run (device type, CPU threads, engine options)."""
        s = self.settings
        device = resolve_device(self.runner.device).type
        parts = [self.task.name, sorted(self.task.options.items()), tensor_digest(self.task.observation),
                 tensor_digest(self.task.observed_mask), s.mode, s.iterations, s.holdout, s.seed, s.objectives,
                 self.spec.to_dict(), self.runner.threads, s.early_stop, s.fidelity, self.runner.options.precision,
                 device, self.runner.options.channels_last, self.runner.options.cuda_graph and device == "cuda",
                 sorted(self.proxy.describe().items())]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    def legacy_context(self) -> str | None:
        """The context key of cache files written before the key named the device and the proxy
        (nasdip-deap 0.1 with fp32 fits and no proxy); None when this run's entries could not be among them."""
        s, options = self.settings, self.runner.options
        if options.precision != "fp32" or options.channels_last or not isinstance(self.proxy, WholeImage):
            return None
        parts = [self.task.name, sorted(self.task.options.items()), tensor_digest(self.task.observation),
                 tensor_digest(self.task.observed_mask), s.mode, s.iterations, s.holdout, s.seed, s.objectives,
                 self.spec.to_dict(), self.runner.threads, s.early_stop, s.fidelity, options.precision]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    @property
    def fits_whole_image(self) -> bool:
        """Candidates are fitted on the whole observation (no proxy), so each fit's output restores it."""
        return len(self.problems) == 1 and self.problems[0].output_size == self.task.output_size

    def score_image(self, image: torch.Tensor) -> float:
        """The fitness's quality of an image of the whole observation, as a fit's output is scored:
        PSNR on the held-out pixels (blind) or against the clean image (reference)."""
        task = self.problems[0]
        if self.settings.mode == "blind":
            return heldout_psnr(task, image, self.holdouts[0])
        return task.quality(image, task.clean)["psnr"]

    def cache_key(self, arch_key: str) -> str:
        return f"{self.context}:{arch_key}"

    def iterations_for(self, arch) -> int:
        return arch.iterations_within(self.settings.iterations)

    @property
    def keep_best(self) -> bool:
        """Early-stopped fits keep (and are scored by) their best log point, not their last one."""
        return bool(self.settings.early_stop)

    def make_stopper(self, iterations: int, reference_curve=None, curve_margin: float = 1.0,
                     curve_warmup: float = 0.25):
        """A fresh early-stopping rule for one fit: a plateau of the score (``early_stop``) and/or a
        curve clearly behind ``reference_curve`` (checked from ``curve_warmup`` of the budget on); None
        when neither applies. When fits keep their best output, the curves compared are running bests
        (what such a fit would be scored by so far)."""
        stoppers = []
        if self.settings.early_stop:
            stoppers.append(PlateauStopper(patience=self.settings.early_stop, warmup=iterations // 5))
        if reference_curve:
            stoppers.append(CurveStopper(reference=list(reference_curve), margin=curve_margin,
                                         warmup=round(iterations * curve_warmup), running_best=self.keep_best))
        if not stoppers:
            return None
        return stoppers[0] if len(stoppers) == 1 else AnyStopper(tuple(stoppers))

    def holdout_for(self, problem: int, replicate: int = 0) -> torch.Tensor | None:
        """The held-out pixels of blind fitness on a problem: the run's own, or a fresh draw for a re-fit."""
        if self.holdouts[problem] is None or not replicate:
            return self.holdouts[problem]
        return make_holdout(self.problems[problem], self.settings.holdout, self.settings.seed, replicate, problem)

    def fit_problem(self, arch, problem: int, seed: int, iterations: int, stopper=None, device: str | None = None,
                    deadline: float | None = None, replicate: int = 0) -> FitResult:
        """One fit of ``arch`` on one problem of the proxy; refused before it starts when the estimate
        of its memory exceeds what the device has free (``OutOfMemory``, a machine failure)."""
        task = self.problems[problem]
        target = resolve_device(device or self.runner.device)
        check = check_memory(arch, task.output_size, task.channels, target, self.runner.options.precision)
        if not check.fits:
            raise OutOfMemory(f"estimated: the fit {check.describe()} on {target}")
        result = self.runner.fit(arch, self._fit_problems[problem], iterations, seed=seed,
                                 holdout=self.holdout_for(problem, replicate), stopper=stopper, deadline=deadline,
                                 keep_best=self.keep_best, device=device)
        if self.settings.mode == "blind" and task.clean is not None:
            result.metrics.update(task.quality(result.restored, task.clean))  # recorded, never used
        return result

    def _start_record(self, bits, worker, replicate: int = 0) -> tuple[dict, object]:
        """The record's identity and provenance (host, pid, worker id, GPU), and the architecture."""
        arch = self.spec.decode(bits)
        seed = fit_seed(self.settings.seed, arch, *replicate_parts(replicate))
        where = worker.describe() if worker is not None else \
            {"worker": None, "host": None, "pid": None, "gpu": None, "gpu_shared": None}
        rec = {"key": arch.key(), "bits": list(map(int, bits)), "architecture": arch.to_dict(),
               "seed": seed, "replicate": replicate, **where, "started": time.time(),
               "device": self.runner.device if worker is None else worker.device_for(self.runner.device),
               "threads": self.runner.threads, "precision": self.runner.options.precision}
        return rec, arch

    def _fail(self, rec: dict, error: str, trace: str | None, kind: str) -> dict:
        rec.update(fitness=list(self.settings.worst),
                   objectives=dict(zip(self.settings.objectives, self.settings.worst)), metrics={},
                   parameters=None, iterations=0, seconds=time.time() - rec["started"], error=error,
                   failure=kind, traceback=trace)
        rec["duration"] = rec["seconds"]
        return rec

    def lost_record(self, bits, reason: str) -> dict:
        """The failed record of a genome whose worker was lost (see ``backends.ProcessBackend``)."""
        rec, _ = self._start_record(bits, None)  # where it ran is gone with the worker
        return self._fail(rec, f"WorkerLost: {reason}", None, MACHINE)

    def record(self, bits, iterations: int | None = None, reference_curve=None, curve_margin: float = 1.0,
               replicate: int = 0, curve_warmup: float = 0.25) -> dict:
        """Fit one genome on every problem of the proxy; never raises for a failing fit (the record
        carries the error, its kind and the worst fitness). Provenance: host, pid, worker id, GPU and
        device that ran it, its fit ``seconds`` and wall-clock ``duration``. ``iterations`` overrides
        the budget (multi-fidelity rungs); ``reference_curve`` stops a fit that falls clearly behind it;
        a ``replicate`` > 0 re-fits with another seed and other held-out pixels (see finalists.py)."""
        rec, arch = self._start_record(bits, current_worker(), replicate)
        timeout = self.settings.timeout
        deadline = None if timeout is None else time.perf_counter() + timeout
        try:
            budget = iterations or self.iterations_for(arch)
            results = []
            for i in range(len(self.problems)):
                stopper = self.make_stopper(budget, reference_curve, curve_margin, curve_warmup)
                seed = rec["seed"] if i == 0 else fit_seed(self.settings.seed, arch, *replicate_parts(replicate),
                                                           "problem", i)
                results.append(self.fit_problem(arch, i, seed, budget, stopper=stopper, device=rec["device"],
                                                deadline=deadline, replicate=replicate))
            self._score(rec, results)
            if self.keep_outputs and self.fits_whole_image and not replicate:
                rec["output"] = results[0].restored.detach().cpu()  # the search keeps the best (restoration.py)
        except FitTimeout as exc:
            self._fail(rec, f"FitTimeout: fit ran past --eval-timeout {timeout:g}s ({exc})", None, MACHINE)
        except Exception as exc:  # any failing fit is scored worst; the search goes on
            kind = failure_kind(exc)
            name = "OutOfMemory" if kind == MACHINE and is_out_of_memory(exc) else type(exc).__name__
            self._fail(rec, f"{name}: {exc}", traceback.format_exc(limit=4), kind)
        return rec

    def _score(self, rec: dict, results: list[FitResult]) -> None:
        """Fill a record from its fits: the mean score and metrics over the proxy's problems."""
        metrics = {name: statistics.fmean(r.metrics[name] for r in results)
                   for name in results[0].metrics if all(name in r.metrics for r in results)}
        seconds = sum(r.seconds for r in results)
        values = {"quality": metrics["heldout_psnr"] if self.settings.mode == "blind" else metrics["psnr"],
                  "parameters": float(results[0].parameters), "fit_seconds": seconds}
        steps = [r.best_step for r in results if r.best_step]
        rec.update(fitness=[values[o] for o in self.settings.objectives],
                   objectives={o: values[o] for o in self.settings.objectives},
                   metrics=metrics, parameters=results[0].parameters,
                   iterations=sum(r.iterations for r in results), seconds=seconds, device=results[0].device,
                   pixel_steps=sum(r.iterations * p.output_size[0] * p.output_size[1]
                                   for r, p in zip(results, self.problems)),
                   precision=results[0].precision, error=None, failure=None,
                   stopped_early=any(r.stopped_early for r in results),
                   best_step=round(statistics.median(steps)) if steps else None,
                   curve=[list(p) for p in mean_curve([fit_curve(r) for r in results])],
                   duration=time.time() - rec["started"])
        if len(results) > 1:
            rec["problems"] = [{"metrics": r.metrics, "iterations": r.iterations, "best_step": r.best_step}
                               for r in results]

    def __call__(self, individual) -> tuple:
        return tuple(self.record(individual)["fitness"])

    def describe(self) -> dict:
        return {"settings": asdict(self.settings), "runner": self.runner.describe(), "proxy": self.proxy.describe(),
                "context": self.context}
