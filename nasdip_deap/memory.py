"""Will a fit fit? An estimate of a DIP fit's peak memory from its architecture and image size, and
the memory free on the device that would run it.

The estimate counts the parameters four times (weights, gradients, Adam's two moments) and every
feature map the network keeps for the backward pass (each convolution's output, its batch norm's
output, resampled and concatenated maps), times ``ACTIVATION_FACTOR`` for what autograd adds during
the backward pass (gradients of the maps, workspace); the factor was measured on CPU fits (see
docs/results.md). It errs on the high side by design: refusing a fit that would have fitted costs the
user a flag, running one that does not costs a crash mid-run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .architecture import Architecture
from .errors import UserError
from .network import level_sizes

ACTIVATION_FACTOR = 1.5  # peak / kept feature maps: above the 0.9-1.25 measured on CPU fits (docs/results.md)
BASE_BYTES = 300 * 2**20  # the framework itself: kernels loaded at the first step, allocator slack, input


class OutOfMemory(RuntimeError):
    """A fit that cannot fit in the free memory of its device (estimated, or a real out-of-memory error)."""


def feature_elements(arch: Architecture, size: tuple[int, int], out_channels: int) -> int:
    """Elements of the feature maps one forward pass keeps for the backward pass."""
    sizes = [h * w for h, w in level_sizes(size, arch)]
    total = arch.input_depth * sizes[0]
    for n, enc in enumerate(arch.encoders):
        conv_out = sizes[n] if enc.downsample == "avg" else sizes[n + 1]  # avg pools after a full-size conv
        total += enc.channels * (conv_out + 2 * sizes[n + 1])  # conv, pool/BN, activation
        if enc.second_conv:
            total += enc.channels * 3 * sizes[n + 1]
    for s in arch.skips:
        total += s.channels * (3 * sizes[s.source] + sizes[s.target])  # 1x1 conv, BN, act, resampled
    for m, dec in enumerate(arch.decoders):
        deeper = arch.decoders[m + 1].channels if m + 1 < arch.levels else arch.encoders[-1].channels
        cat = deeper + sum(s.channels for s in arch.skips_into(m))
        total += (deeper + 2 * cat) * sizes[m]  # the deeper path resampled, the concatenation, its BN
        total += dec.channels * 3 * sizes[m]
        if dec.conv1x1:
            total += dec.channels * 3 * sizes[m]
    return total + 2 * out_channels * sizes[0]


def conv_weight_count(arch: Architecture, out_channels: int = 3) -> int:
    """The convolution weights of the network ``network.build_network`` wires for ``arch``, counted from the
    architecture alone (microseconds, where building the network costs tens of milliseconds): a feature for
    models of fitness and the cost of an unfitted architecture."""
    inputs = [arch.input_depth] + [e.channels for e in arch.encoders]
    total = 0
    for n, enc in enumerate(arch.encoders):
        total += enc.kernel ** 2 * inputs[n] * enc.channels + (enc.kernel ** 2 * enc.channels ** 2 if enc.second_conv else 0)
    for s in arch.skips:
        total += inputs[s.source] * s.channels
    for m, dec in enumerate(arch.decoders):
        deeper = arch.decoders[m + 1].channels if m + 1 < arch.levels else arch.encoders[-1].channels
        total += dec.kernel ** 2 * (deeper + sum(s.channels for s in arch.skips_into(m))) * dec.channels
        total += dec.channels ** 2 if dec.conv1x1 else 0
    return total + arch.decoders[0].channels * out_channels


def parameter_count(arch: Architecture, out_channels: int) -> int:
    """Parameters of the network (the exact count; the builder is not run)."""
    from .network import build_network, count_parameters

    return count_parameters(build_network(arch, out_channels=out_channels))


def estimate_fit_bytes(arch: Architecture, size: tuple[int, int], out_channels: int = 3,
                       precision: str = "fp32") -> int:
    """Peak memory of one fit of ``arch`` producing a ``size`` (H, W) image, in bytes."""
    element = 2 if precision == "bf16" else 4
    maps = feature_elements(arch, size, out_channels) * element * ACTIVATION_FACTOR
    params = parameter_count(arch, out_channels) * 4 * 4
    return int(maps + params + BASE_BYTES)


def free_bytes(device: torch.device) -> int | None:
    """Memory free for a new fit on ``device``: the CUDA allocator's free memory, or the host's
    available memory for the CPU; None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class MemoryCheck:
    """The outcome of ``check_memory``: the estimate, the free memory, and whether it fits."""

    needed: int
    free: int | None

    @property
    def fits(self) -> bool:
        return self.free is None or self.needed <= self.free

    def describe(self) -> str:
        free = "unknown" if self.free is None else gib(self.free)
        return f"needs about {gib(self.needed)}, {free} free"


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(arch: Architecture, size: tuple[int, int], out_channels: int, device: torch.device,
                 precision: str = "fp32") -> MemoryCheck:
    return MemoryCheck(estimate_fit_bytes(arch, size, out_channels, precision), free_bytes(device))


def require_memory(arch: Architecture, size: tuple[int, int], out_channels: int, device: torch.device,
                   precision: str = "fp32") -> None:
    """For the user's only fit: a ``UserError`` (one line, exit 2) that says what to try when it cannot fit."""
    check = check_memory(arch, size, out_channels, device, precision)
    if not check.fits:
        h, w = size
        where = "the GPU" if device.type == "cuda" else "this machine"
        hint = "a search's --proxy, --crop, fewer --levels" + (", or --device cpu" if device.type == "cuda" else "")
        raise UserError(f"a fit of this architecture on the {w}x{h} px image {check.describe()} on {where} "
                        f"({device}); try {hint}")


def is_out_of_memory(exc: BaseException) -> bool:
    """A real out-of-memory error of torch (CUDA or host allocation)."""
    if isinstance(exc, (OutOfMemory, MemoryError)):
        return True
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "not enough memory" in text)
