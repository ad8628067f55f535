"""Turning a genome into fitness values: decode, fit, score. The ``Evaluator`` is the toolbox's
``evaluate``; it is a plain picklable object so any ``map`` (serial, processes, SCOOP) can ship it.

Fitness modes:
- ``reference``: PSNR of the restoration against the clean image (needs ground truth);
- ``blind``: a random ``holdout`` share of the observed pixels is kept out of the DIP loss and the
  fit is scored by its PSNR on them. No ground truth is used; when it is known, the true PSNR is
  still recorded beside the blind score so the two can be compared.
"""
from __future__ import annotations

import hashlib
import logging
import time
import traceback
from dataclasses import asdict, dataclass

import torch

from .backends import current_worker, torch_threads
from .errors import UserError
from .fit import EngineOptions, FitResult, FitTimeout, copy_task_without_clean, fit
from .genome import GenomeSpec
from .network import build_network, count_parameters
from .stopping import AnyStopper, CurveStopper, PlateauStopper

FITNESS_MODES = ("reference", "blind")
MIN_RELIABLE_HOLDOUT = 50  # held-out pixels; SR x4 on 64 px holds out ~26 and ranks with rho ~0.6-0.7
OBJECTIVES = {
    # name: (DEAP weight, worst value for failed fits)
    "quality": (1.0, 0.0),
    "parameters": (-1.0, 1e12),
    "fit_seconds": (-1.0, 1e12),
}


@dataclass(frozen=True)
class FitnessSettings:
    """How each genome is scored; part of the evaluation-cache key."""

    mode: str = "reference"
    iterations: int = 400
    holdout: float = 0.1
    seed: int = 0
    device: str = "auto"
    objectives: tuple[str, ...] = ("quality",)
    threads: int | None = 1  # torch CPU threads per fit: fixed, since it changes CPU results slightly
    timeout: float | None = None  # seconds; a fit still running then fails (worst fitness)
    early_stop: int | None = None  # patience in log points (1/50 of the budget); set, fits keep their best output
    fidelity: str = "full"  # multi-fidelity schedule (see fidelity.py); recorded for the cache key
    precision: str = "fp32"  # "bf16": bfloat16 autocast on CUDA (CPU fits stay fp32)
    channels_last: bool = False
    cuda_graph: bool = True  # capture each fit's training step as a CUDA graph (CUDA only)

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
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be >= 1, got {self.threads}")
        if self.timeout is not None and not self.timeout > 0:
            raise UserError(f"--eval-timeout must be > 0 seconds, got {self.timeout}")
        if self.early_stop is not None and self.early_stop < 1:
            raise UserError(f"--early-stop must be >= 1 log points, got {self.early_stop}")
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"--precision must be fp32 or bf16, got {self.precision!r}")

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(OBJECTIVES[o][0] for o in self.objectives)

    @property
    def worst(self) -> tuple[float, ...]:
        return tuple(OBJECTIVES[o][1] for o in self.objectives)


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes and machines (unlike ``hash``)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def replicate_parts(replicate: int) -> tuple:
    """Extra seed parts of a finalist's re-fit; none for the search fit, so its seeds stay as they were."""
    return ("replicate", replicate) if replicate else ()


def make_holdout(task, fraction: float, seed: int, replicate: int = 0) -> torch.Tensor:
    """A random (1, h, w) mask over ``fraction`` of the task's observed pixels, fixed for the whole run
    so that every architecture is scored on the same held-out pixels (``replicate`` > 0: another
    draw, for the re-fits of finalists)."""
    gen = torch.Generator().manual_seed(derive_seed("holdout", seed, *replicate_parts(replicate)))
    draw = torch.rand(task.observed_mask.shape, generator=gen) < fraction
    return (draw.float() * (task.observed_mask > 0).float())


def fit_curve(result: FitResult) -> list:
    """The score the fit was judged by, per log point: held-out PSNR when pixels were held out, else
    the true PSNR (rounded; used by multi-fidelity curve stopping and the report)."""
    curve = result.heldout_history or result.psnr_history
    return [(int(step), round(float(score), 4)) for step, score in curve]


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


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class Evaluator:
    """``evaluator.record(bits)`` fits one genome and returns a JSON-able record; ``evaluator(ind)``
    returns only the fitness tuple (DEAP's ``evaluate`` contract)."""

    def __init__(self, spec: GenomeSpec, task, settings: FitnessSettings):
        if settings.mode == "reference" and task.clean is None:
            raise UserError("reference fitness needs a clean image; give --image (clean) or use --fitness blind")
        self.spec = spec
        self.task = task
        self.settings = settings
        self.holdout = make_holdout(task, settings.holdout, settings.seed) if settings.mode == "blind" else None
        if self.holdout is not None and float(self.holdout.sum()) < 1:
            raise UserError("the blind fitness hold-out is empty: the image has too few observed pixels "
                            "for --holdout; raise --holdout or use a larger image")
        if self.holdout is not None and float(self.holdout.sum()) < MIN_RELIABLE_HOLDOUT:
            logging.getLogger("nasdip.fitness").warning(
                "blind fitness holds out only %d of %d observed pixels, so it ranks architectures noisily; "
                "use a larger --crop or --holdout (super-resolution holds out low-resolution pixels)",
                int(self.holdout.sum()), int((task.observed_mask > 0).sum()))
        self._fit_task = copy_task_without_clean(task) if settings.mode == "blind" else task
        self.context = self._context_key()

    def _context_key(self) -> str:
        s = self.settings
        parts = [self.task.name, sorted(self.task.options.items()), tensor_digest(self.task.observation),
                 tensor_digest(self.task.observed_mask), s.mode, s.iterations, s.holdout, s.seed, s.objectives,
                 self.spec.to_dict(), s.threads, s.early_stop, s.fidelity, s.precision]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

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

    def holdout_for(self, replicate: int = 0) -> torch.Tensor | None:
        """The held-out pixels of blind fitness: the run's own, or a fresh draw for a re-fit."""
        if self.holdout is None or not replicate:
            return self.holdout
        return make_holdout(self.task, self.settings.holdout, self.settings.seed, replicate)

    def run_fit(self, arch, seed: int, iterations: int | None = None, stopper=None, device: str | None = None,
                deadline: float | None = None, replicate: int = 0) -> FitResult:
        options = EngineOptions(precision=self.settings.precision, channels_last=self.settings.channels_last,
                                cuda_graph=self.settings.cuda_graph)
        with torch_threads(self.settings.threads):
            result = fit(arch, self._fit_task, iterations or self.iterations_for(arch),
                         device=device or self.settings.device, seed=seed, holdout=self.holdout_for(replicate),
                         stopper=stopper, deadline=deadline, options=options, keep_best=self.keep_best)
        if self.settings.mode == "blind" and self.task.clean is not None:
            result.metrics.update(self.task.quality(result.restored, self.task.clean))  # recorded, never used
        return result

    def _start_record(self, bits, worker, replicate: int = 0) -> tuple[dict, object]:
        """The record's identity and provenance (host, pid, worker id, GPU), and the architecture."""
        arch = self.spec.decode(bits)
        key = arch.key()
        seed = derive_seed(self.settings.seed, key, *replicate_parts(replicate))
        where = worker.describe() if worker is not None else \
            {"worker": None, "host": None, "pid": None, "gpu": None, "gpu_shared": None}
        rec = {"key": key, "bits": list(map(int, bits)), "architecture": arch.to_dict(),
               "seed": seed, "replicate": replicate, **where, "started": time.time(),
               "device": self.settings.device if worker is None else worker.device_for(self.settings.device),
               "threads": self.settings.threads}
        return rec, arch

    def _fail(self, rec: dict, error: str, trace: str | None) -> dict:
        rec.update(fitness=list(self.settings.worst),
                   objectives=dict(zip(self.settings.objectives, self.settings.worst)), metrics={},
                   parameters=None, iterations=0, seconds=time.time() - rec["started"], error=error,
                   traceback=trace)
        rec["duration"] = rec["seconds"]
        return rec

    def lost_record(self, bits, reason: str) -> dict:
        """The failed record of a genome whose worker was lost (see ``backends.ProcessBackend``)."""
        rec, _ = self._start_record(bits, None)  # where it ran is gone with the worker
        return self._fail(rec, f"WorkerLost: {reason}", None)

    def record(self, bits, iterations: int | None = None, reference_curve=None, curve_margin: float = 1.0,
               replicate: int = 0, curve_warmup: float = 0.25) -> dict:
        """Fit one genome; never raises for a failing fit (the record carries the error and worst fitness).
        Provenance: host, pid, worker id, GPU and device that ran it, its fit ``seconds`` and its
        wall-clock ``duration`` (decoding, building and fitting). ``iterations`` overrides the budget
        (multi-fidelity rungs); ``reference_curve`` stops a fit that falls clearly behind it; a
        ``replicate`` > 0 re-fits with another seed and other held-out pixels (see finalists.py)."""
        rec, arch = self._start_record(bits, current_worker(), replicate)
        seed = rec["seed"]
        timeout = self.settings.timeout
        deadline = None if timeout is None else time.perf_counter() + timeout
        try:
            params = count_parameters(build_network(arch, self.task.channels))
            budget = iterations or self.iterations_for(arch)
            stopper = self.make_stopper(budget, reference_curve, curve_margin, curve_warmup)
            result = self.run_fit(arch, seed, budget, stopper=stopper, device=rec["device"], deadline=deadline,
                                  replicate=replicate)
            values = {"quality": result.metrics["heldout_psnr"] if self.settings.mode == "blind"
                      else result.metrics["psnr"],
                      "parameters": float(params), "fit_seconds": result.seconds}
            rec.update(fitness=[values[o] for o in self.settings.objectives],
                       objectives={o: values[o] for o in self.settings.objectives},
                       metrics=result.metrics, parameters=params, iterations=result.iterations,
                       seconds=result.seconds, device=result.device, error=None,
                       stopped_early=result.stopped_early, best_step=result.best_step,
                       curve=[list(p) for p in fit_curve(result)],
                       duration=time.time() - rec["started"])
        except FitTimeout as exc:
            self._fail(rec, f"FitTimeout: fit ran past --eval-timeout {timeout:g}s ({exc})", None)
        except Exception as exc:  # any failing fit is scored worst; the search goes on
            self._fail(rec, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=4))
        return rec

    def __call__(self, individual) -> tuple:
        return tuple(self.record(individual)["fitness"])

    def describe(self) -> dict:
        return {"settings": asdict(self.settings), "context": self.context}
