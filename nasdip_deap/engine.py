"""The DIP fitting engine: train one network from fixed noise to explain one observation."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import torch

from . import metrics
from .architecture import Architecture
from .errors import FitError, UserError
from .network import build_network, count_parameters


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_device(device: str) -> None:
    """A ``UserError`` (one line) for a device this machine cannot use, before any fit starts."""
    try:
        dev = resolve_device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch was built without CUDA" if not torch.backends.cuda.is_built() else "no GPU is visible"
            raise UserError(f"--device {device}: CUDA is not available ({why}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")


class FitTimeout(FitError):
    """A fit that ran past its time limit (``--eval-timeout``); the search scores it worst."""


@dataclass
class FitResult:
    """What one fit produced; ``restored`` is the exponential moving average of the outputs."""

    restored: torch.Tensor
    loss_history: list[float]
    psnr_history: list[tuple[int, float]] = field(default_factory=list)  # true PSNR, when clean is known
    heldout_history: list[tuple[int, float]] = field(default_factory=list)  # PSNR on held-out pixels
    iterations: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    parameters: int = 0  # of the network that was trained (with its size-dependent repairs)
    metrics: dict = field(default_factory=dict)
    stopped_early: bool = False
    best_step: int | None = None  # with ``keep_best``: the log point whose output was kept


def make_input(arch: Architecture, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """DIP's fixed input: uniform noise x 0.1 with ``input_depth`` channels at the output size."""
    return torch.rand((1, arch.input_depth, *size), generator=generator) * 0.1


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class EngineOptions:
    """Speed settings of the fit engine, as resolved for one device (see ``engine_options``).

    ``precision="bf16"`` runs forward and backward under bfloat16 autocast (the loss, the output and its
    moving average stay fp32); ``channels_last`` changes the memory format of the network and its
    input; ``cuda_graph`` (CUDA only) captures the whole training step (forward, backward, Adam) after a
    short warm-up and replays it, so a step is one launch instead of hundreds."""

    precision: str = "fp32"
    channels_last: bool = False
    cuda_graph: bool = True

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")

    def describe(self) -> dict:
        return {"precision": self.precision, "channels_last": self.channels_last, "cuda_graph": self.cuda_graph}


def cpu_bf16_accelerated() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AMX or AVX-512 BF16), by torch's own
    capability checks. Elsewhere oneDNN emulates bf16, which is many times slower than fp32."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:  # torch before 2.8: no per-feature query
        return False
    caps = capabilities()
    native = bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    try:
        return native and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_capability(name: str) -> bool:
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    return bool(capabilities and capabilities().get(name))


def cpu_bf16_default() -> bool:
    """Whether ``--precision auto`` runs bf16 on this CPU: where bf16 is native *and* was measured not to
    cost restoration quality (precision_quality.py's rule: the mean drops by no more than 0.1 dB, no task
    loses more than 0.2 dB). It held on an Intel Xeon with AMX; it failed on an AMD EPYC with AVX-512 BF16
    and no AMX (docs/results.md), so there auto stays fp32 and bf16 is opt-in."""
    return cpu_bf16_accelerated() and _cpu_capability("amx_bf16")


def engine_options(device: str | torch.device, precision: str = "auto", channels_last: bool | None = None,
                   cuda_graph: bool = True) -> EngineOptions:
    """The options a fit on ``device`` runs with. ``precision="auto"`` is bf16 autocast with the
    channels-last layout on a CPU where ``cpu_bf16_default()`` holds, and fp32 everywhere else (on GPUs
    bf16 is no faster at DIP sizes); ``channels_last=None`` follows the precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cpu = resolve_device(device).type == "cpu"
    if precision == "auto":
        precision = "bf16" if cpu and cpu_bf16_default() else "fp32"
    if channels_last is None:
        channels_last = cpu and precision == "bf16"
    return EngineOptions(precision=precision, channels_last=channels_last, cuda_graph=cuda_graph)


def make_adam(params, lr: float, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam with torch's fused kernel where this torch and device have one (one pass over the
    parameters instead of about ten): on GPUs it cuts kernel launches, which bound DIP-sized fits there.
    ``capturable`` keeps Adam's step count on the device, so a CUDA graph can capture ``step()``."""
    params = list(params)
    extra = {"capturable": True} if capturable else {}
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, **extra)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without the fused kernel
        return torch.optim.Adam(params, lr=lr, **extra)


GRAPH_WARMUP_STEPS = 3  # eager steps before capture: cuDNN autotuning and lazy initialisation happen there


class Trainer:
    """One DIP fit as an object: ``step()`` is one Adam iteration, ``finish()`` gives the FitResult.
    ``fit()`` drives it; benchmarks time ``step()`` alone."""

    def __init__(self, arch: Architecture, task, device: torch.device, seed: int,
                 holdout: torch.Tensor | None = None, ema: float = 0.99, options: EngineOptions | None = None):
        self.start = time.perf_counter()
        self.arch, self.task, self.ema = arch, task, ema
        self.options = options or EngineOptions()
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        size = task.output_size
        fmt = torch.channels_last if self.options.channels_last else torch.contiguous_format
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes for the whole fit: autotune once
        self.net = build_network(arch, out_channels=task.channels, image_size=size).to(device, memory_format=fmt)
        self.z = make_input(arch, size, gen).to(device).contiguous(memory_format=fmt)
        self.noise = torch.empty_like(self.z)
        self.obs = task.observation.unsqueeze(0).to(device)
        observed = task.observed_mask.unsqueeze(0).to(device)
        self.train_mask = observed if holdout is None else observed * (1 - holdout.unsqueeze(0).to(device))
        self.held = None if holdout is None else observed * holdout.unsqueeze(0).to(device)
        self.full_mask = bool(self.train_mask.min() > 0)
        self.clean = None if task.clean is None else task.clean.unsqueeze(0).to(device)
        self.use_graph = self.options.cuda_graph and device.type == "cuda"
        self.optimizer = make_adam(self.net.parameters(), arch.learning_rate, capturable=self.use_graph)
        self.autocast = self.options.precision == "bf16"
        self.device = device
        self.average: torch.Tensor | None = None
        self.steps = 0
        self.losses: list[torch.Tensor] = []
        self.graph = None  # the captured training step, with its output and loss tensors (``graphed``)
        self.graphed: tuple[torch.Tensor, torch.Tensor] | None = None

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss, backward and Adam on a freshly perturbed input; returns (output, loss)."""
        net_input = self.z
        if self.arch.reg_noise_std > 0:
            net_input = self.z + self.noise.normal_() * self.arch.reg_noise_std
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast,
                            cache_enabled=not self.use_graph):
            out = self.net(net_input)
        out = out.float()
        loss = metrics.mse(self.task.forward(out), self.obs, None if self.full_mask else self.train_mask)
        loss.backward()
        self.optimizer.step()
        return out.detach(), loss.detach()

    def _capture(self) -> None:
        """Capture ``_train_step`` as a CUDA graph (gradients then live in the graph's memory pool and
        each replay overwrites them, so no zero_grad is needed between replays)."""
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads may use the GPU
                self.graphed = self._train_step()
        except RuntimeError as error:  # an op that cannot be captured: this fit goes on eagerly
            logging.getLogger("nasdip.fit").warning("CUDA graph capture failed, fit runs eagerly: %s",
                                                    str(error).splitlines()[0] if str(error) else error)
            self.use_graph, self.graphed = False, None
            return
        self.graph = graph

    def step(self) -> None:
        """One Adam iteration on the perturbed input, and the moving average of the output."""
        self.steps += 1
        if self.use_graph and self.graph is None and self.steps > GRAPH_WARMUP_STEPS:
            self._capture()  # capturing records the step without running it: the replay below runs it
        if self.graph is not None:
            self.graph.replay()
            out, loss = self.graphed[0], self.graphed[1].clone()
        elif self.use_graph:  # warm-up steps on a side stream, as CUDA graph capture asks
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.optimizer.zero_grad(set_to_none=True)
                out, loss = self._train_step()
            torch.cuda.current_stream(self.device).wait_stream(side)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            out, loss = self._train_step()
        self.losses.append(loss)
        with torch.no_grad():
            decay = min(self.ema, (1 + self.steps) / (10 + self.steps))  # warm-up: first outputs must not linger
            if self.average is None:
                self.average = out.clone()
            else:
                self.average.mul_(decay).add_(out, alpha=1 - decay)

    def scores(self) -> tuple[float | None, float | None]:
        """(true PSNR of the average when the clean image is known, PSNR on held-out pixels when any)."""
        with torch.no_grad():
            true = self.task.true_psnr(self.average[0], self.clean[0]) if self.clean is not None else None
            held = (metrics.psnr(self.task.forward(self.average), self.obs, self.held)
                    if self.held is not None else None)
        return true, held

    def loss_values(self) -> list[float]:
        """Loss per step so far (one device sync for the whole batch of steps)."""
        values = torch.stack(self.losses).float().cpu().tolist() if self.losses else []
        if any(v != v or v == float("inf") for v in values):
            raise FitError(f"non-finite loss by step {self.steps}")
        return values


def fit(arch: Architecture, task, iterations: int, device: str = "auto", seed: int = 0,
        holdout: torch.Tensor | None = None, log_every: int | None = None, ema: float = 0.99,
        stopper=None, deadline: float | None = None, options: EngineOptions | None = None,
        keep_best: bool = False) -> FitResult:
    """Train ``arch`` on ``task`` for ``iterations`` Adam steps and return the restoration.

    ``holdout`` is a (1, h, w) mask of observed pixels kept out of the loss; the fit then reports
    ``heldout_psnr``, the blind fitness. At each log point ``stopper(step, score)`` (optional) may end
    the fit early; ``score`` is the held-out PSNR when pixels are held out, else the true PSNR.
    ``deadline`` (a ``time.perf_counter()`` value) makes a fit still running then raise ``FitTimeout``.
    ``keep_best`` returns the output of the log point with the best score (held-out PSNR when pixels
    are held out, so no ground truth), not the last one: a DIP fit that runs past its peak overfits the
    noise, and early stopping then keeps the peak (Keras' ``restore_best_weights``).
    Deterministic on the CPU for a given seed; the caller's RNG state is left untouched.
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    dev = resolve_device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _fit(Trainer(arch, task, dev, seed, holdout, ema, options), iterations, log_every, stopper, deadline,
                    keep_best)


def _fit(trainer: Trainer, iterations, log_every, stopper, deadline, keep_best=False) -> FitResult:
    result = FitResult(restored=torch.empty(0), loss_history=[], device=str(trainer.device),
                       precision=trainer.options.precision, parameters=count_parameters(trainer.net))
    log_every = log_every or max(1, iterations // 50)
    best_score, best_output, best_held = float("-inf"), None, None
    for step in range(1, iterations + 1):
        trainer.step()
        if deadline is not None and time.perf_counter() > deadline:
            raise FitTimeout(f"still running after step {step} of {iterations} at the time limit")
        if step % log_every == 0 or step == iterations:
            trainer.loss_values()  # fails fast on a non-finite loss
            true, held = trainer.scores()
            if true is not None:
                result.psnr_history.append((step, true))
            if held is not None:
                result.heldout_history.append((step, held))
            score = held if held is not None else true
            if keep_best and score is not None and score > best_score:
                best_score, best_output, best_held = score, trainer.average.detach().clone(), held
                result.best_step = step
            if stopper is not None and score is not None and step < iterations and stopper(step, score):
                result.stopped_early = True
                break
    result.loss_history = trainer.loss_values()
    kept = best_output if best_output is not None else trainer.average
    restored = kept[0].detach().float().cpu()
    result.restored = restored
    result.iterations = trainer.steps
    result.seconds = time.perf_counter() - trainer.start
    if result.heldout_history:
        result.metrics["heldout_psnr"] = best_held if best_output is not None else result.heldout_history[-1][1]
    if trainer.task.clean is not None:
        result.metrics.update(trainer.task.quality(restored, trainer.task.clean))
    return result


def copy_task_without_clean(task):
    """A shallow copy of ``task`` with the ground truth removed (what blind fitness may see)."""
    blind = copy.copy(task)
    blind.clean = None
    return blind
