"""The decoded form of a genome: an asymmetric encoder-decoder as plain, frozen data.

Like DIP's ``skip()`` arguments, the whole network is per-level lists; ``network.build_network``
is the one place that turns this data into an ``nn.Module``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class EncoderBlock:
    """Level n's down path: a (strided or pooled) conv, optionally a second conv, each + BN + activation."""

    channels: int
    kernel: int
    downsample: str  # "stride" (stride-2 conv) or "avg" (conv then 2x2 average pooling)
    second_conv: bool


@dataclass(frozen=True)
class DecoderBlock:
    """Level n's up path: BN of the concatenated inputs, conv + BN + act, optionally a 1x1 conv + BN + act."""

    channels: int
    kernel: int
    upsample: str  # how the deeper path is resampled up to this level: "nearest" or "bilinear"
    conv1x1: bool


@dataclass(frozen=True)
class Skip:
    """A gated skip connection from the input of encoder level ``source`` to decoder level ``target``.

    The branch is a 1x1 conv to ``channels`` + BN + activation, resampled to the target's scale.
    """

    source: int
    target: int
    channels: int


@dataclass(frozen=True)
class Architecture:
    """A complete DIP network plus its training meta-parameters."""

    encoders: tuple[EncoderBlock, ...]
    decoders: tuple[DecoderBlock, ...]
    skips: tuple[Skip, ...]
    learning_rate: float
    input_depth: int
    reg_noise_std: float
    activation: str
    iterations_fraction: float | None = None  # share of the iteration budget, when the genome evolves T
    padding: str = "reflection"
    extra: tuple = field(default=())  # reserved for plugin specs: sorted (name, value) pairs

    def __post_init__(self):
        if len(self.encoders) != len(self.decoders):
            raise ValueError("an Architecture needs one decoder per encoder level")
        levels = len(self.encoders)
        for s in self.skips:
            if not (0 <= s.source < levels and 0 <= s.target < levels):
                raise ValueError(f"skip {s} points outside the {levels} levels")

    @property
    def levels(self) -> int:
        return len(self.encoders)

    def iterations_within(self, budget: int) -> int:
        """DIP iterations this architecture trains for under a budget: the evolved share of it, if any."""
        return max(1, round(budget * (self.iterations_fraction or 1.0)))

    def skips_into(self, target: int) -> list[Skip]:
        return [s for s in self.skips if s.target == target]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        return cls(
            encoders=tuple(EncoderBlock(**e) for e in data["encoders"]),
            decoders=tuple(DecoderBlock(**d) for d in data["decoders"]),
            skips=tuple(sorted((Skip(**s) for s in data["skips"]), key=lambda s: (s.source, s.target))),
            learning_rate=float(data["learning_rate"]),
            input_depth=int(data["input_depth"]),
            reg_noise_std=float(data["reg_noise_std"]),
            activation=str(data["activation"]),
            iterations_fraction=data.get("iterations_fraction"),
            padding=data.get("padding", "reflection"),
            extra=tuple(tuple(x) for x in data.get("extra", ())),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        return cls.from_dict(json.loads(text))

    def key(self) -> str:
        """A stable hash of the decoded form: equal architectures share it across runs and machines."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:20]

    def summary(self) -> str:
        """One line a person can read: channels per level, skips, meta-parameters."""
        enc = "/".join(str(e.channels) for e in self.encoders)
        dec = "/".join(str(d.channels) for d in self.decoders)
        sk = ",".join(f"{s.source}>{s.target}:{s.channels}" for s in self.skips) or "none"
        return (f"enc {enc} dec {dec} skips {sk} lr {self.learning_rate:g} "
                f"z {self.input_depth} noise {self.reg_noise_std:.3g} {self.activation}")
