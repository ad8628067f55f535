"""Declarative genome specification: named fields of fixed bit width with decoded value tables.

Each field's table has exactly ``2**bits`` entries, so every bit string of the right length decodes
to a valid architecture (no repair is needed at decode time; size-dependent repairs happen in the
builder, see ``network.py``). Bits are read most significant first.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

from .architecture import Architecture, DecoderBlock, EncoderBlock, Skip
from .errors import GenomeError

CHANNELS = (8, 16, 24, 32, 48, 64, 96, 128)
KERNELS = (1, 3, 5, 7)
DOWNSAMPLE = ("stride", "avg")
UPSAMPLE = ("nearest", "bilinear")
SKIP_CHANNELS = (1, 2, 4, 8, 16, 24, 32, 64)
LEARNING_RATES = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03)
INPUT_DEPTHS = (2, 8, 16, 32)
REG_NOISE = (0.0, 1 / 60, 1 / 30, 0.05)
ACTIVATIONS = ("leaky_relu", "relu", "elu", "silu")
ITERATION_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
MIN_LEVELS, MAX_LEVELS = 1, 6
_BIT_CHARS = bytes.maketrans(b"\x00\x01", b"01")  # bit values -> the ASCII digits int(..., 2) reads
_BIT_VALUES = frozenset((0, 1))


@dataclass(frozen=True)
class Field:
    """One named gene: ``values[int(bits)]`` is its decoded value; ``group`` names the gene it belongs to."""

    name: str
    values: tuple
    group: str

    def __post_init__(self):
        n = len(self.values)
        if n < 2 or n & (n - 1):
            raise ValueError(f"field {self.name}: a value table needs a power-of-two length, got {n}")
        if len(set(self.values)) != n:
            raise ValueError(f"field {self.name}: duplicate values in its table")

    @property
    def bits(self) -> int:
        return int(math.log2(len(self.values)))


class GenomeSpec:
    """The default search space of Ho et al.: per level an encoder gene, a decoder gene and gated skip
    genes to every decoder level, then meta-parameter fields."""

    def __init__(self, levels: int = 5, evolve_iterations: bool = False):
        if not MIN_LEVELS <= levels <= MAX_LEVELS:
            raise GenomeError(f"levels must be between {MIN_LEVELS} and {MAX_LEVELS}, got {levels}")
        self.levels = levels
        self.evolve_iterations = evolve_iterations
        fields: list[Field] = []
        for n in range(levels):
            g = f"level{n}.encoder"
            fields += [Field(f"{g}.channels", CHANNELS, g), Field(f"{g}.kernel", KERNELS, g),
                       Field(f"{g}.downsample", DOWNSAMPLE, g), Field(f"{g}.second_conv", (False, True), g)]
            g = f"level{n}.decoder"
            fields += [Field(f"{g}.channels", CHANNELS, g), Field(f"{g}.kernel", KERNELS, g),
                       Field(f"{g}.upsample", UPSAMPLE, g), Field(f"{g}.conv1x1", (False, True), g)]
            for m in range(levels):
                g = f"level{n}.skip{m}"
                fields += [Field(f"{g}.gate", (False, True), g), Field(f"{g}.channels", SKIP_CHANNELS, g)]
        fields += [Field("meta.learning_rate", LEARNING_RATES, "meta.learning_rate"),
                   Field("meta.input_depth", INPUT_DEPTHS, "meta.input_depth"),
                   Field("meta.reg_noise_std", REG_NOISE, "meta.reg_noise_std"),
                   Field("meta.activation", ACTIVATIONS, "meta.activation")]
        if evolve_iterations:
            fields.append(Field("meta.iterations_fraction", ITERATION_FRACTIONS, "meta.iterations_fraction"))
        self.fields: tuple[Field, ...] = tuple(fields)
        self.slices: tuple[tuple[int, int], ...] = self._slices()
        self.length = self.slices[-1][1]
        self._index = {f.name: i for i, f in enumerate(self.fields)}
        self._build_caches()

    def _build_caches(self) -> None:
        """Precompute what the hot paths (decode, gene-aware operators) would otherwise rebuild per call."""
        fields, slices = self.fields, self.slices
        self._names = tuple(f.name for f in fields)
        self._gene_cuts = tuple(slices[i][0] for i in range(1, len(fields)) if fields[i].group != fields[i - 1].group)
        # per field: (shift from the least significant bit, mask, value table) over the genome read as one integer
        self._readers = tuple((self.length - stop, (1 << (stop - start)) - 1, f.values)
                              for f, (start, stop) in zip(fields, slices))
        at = self._index
        self._plan_encoders = tuple(tuple(at[f"level{n}.encoder.{k}"] for k in ("channels", "kernel", "downsample",
                                                                                  "second_conv"))
                                    for n in range(self.levels))
        self._plan_decoders = tuple(tuple(at[f"level{n}.decoder.{k}"] for k in ("channels", "kernel", "upsample",
                                                                                  "conv1x1"))
                                    for n in range(self.levels))
        self._plan_skips = tuple((n, m, at[f"level{n}.skip{m}.gate"], at[f"level{n}.skip{m}.channels"])
                                 for n in range(self.levels) for m in range(self.levels))
        self._plan_meta = tuple(at[f"meta.{k}"] for k in ("learning_rate", "input_depth", "reg_noise_std",
                                                          "activation"))
        self._plan_iterations = at.get("meta.iterations_fraction")

    def __setstate__(self, state: dict) -> None:
        """Unpickling (SCOOP workers, checkpoints): restore, and rebuild the caches if an older pickle lacks them."""
        self.__dict__.update(state)
        if "_readers" not in state:
            self._build_caches()

    def _slices(self) -> tuple[tuple[int, int], ...]:
        out, start = [], 0
        for f in self.fields:
            out.append((start, start + f.bits))
            start += f.bits
        return tuple(out)

    # -- description ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"levels": self.levels, "evolve_iterations": self.evolve_iterations, "length": self.length}

    @classmethod
    def from_dict(cls, data: dict) -> "GenomeSpec":
        return cls(levels=int(data.get("levels", 5)), evolve_iterations=bool(data.get("evolve_iterations", False)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenomeSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.levels, self.evolve_iterations))

    def __repr__(self) -> str:
        return f"GenomeSpec(levels={self.levels}, evolve_iterations={self.evolve_iterations})"

    def gene_boundaries(self) -> list[int]:
        """Bit positions between genes (encoder block, decoder block, one skip, one meta-parameter)."""
        return list(self._gene_cuts)

    @property
    def gene_cuts(self) -> tuple[int, ...]:
        """``gene_boundaries()`` as a precomputed tuple, for operators that run once per mating."""
        return self._gene_cuts

    # -- bits <-> values -----------------------------------------------------------------------
    def check_bits(self, bits: Sequence[Any]) -> None:
        if len(bits) != self.length:
            raise GenomeError(f"genome has {len(bits)} bits; the {self.levels}-level spec needs {self.length}")
        try:
            if set(bits) <= _BIT_VALUES:  # fast path: every bit hashes and compares equal to 0 or 1
                return
        except TypeError:  # an unhashable entry: the scan below names it
            pass
        bad = [b for b in bits if b not in (0, 1) or isinstance(b, float) and not float(b).is_integer()]
        if bad:
            raise GenomeError(f"genome bits must be 0 or 1, found {bad[0]!r}")

    def field_index(self, bits: Sequence[int], i: int) -> int:
        start, stop = self.slices[i]
        value = 0
        for b in bits[start:stop]:
            value = (value << 1) | int(b)
        return value

    def set_field_index(self, bits: list, i: int, index: int) -> None:
        start, stop = self.slices[i]
        width = stop - start
        for k in range(width):
            bits[start + k] = (index >> (width - 1 - k)) & 1

    def field_values(self, bits: Sequence[int]) -> list:
        """The decoded value of every field, in field order (checks the bits first)."""
        self.check_bits(bits)
        raw = None
        if isinstance(bits, list):
            try:
                raw = bytes(bits)  # fast path: ints and bools (the usual genomes)
            except TypeError:
                pass
        if raw is None:
            raw = bytes(int(b) for b in bits)  # floats 0.0/1.0, numpy arrays, tuples: already checked
        whole = int(raw.translate(_BIT_CHARS), 2)  # most significant bit first, as field_index reads
        return [table[(whole >> shift) & mask] for shift, mask, table in self._readers]

    def values(self, bits: Sequence[int]) -> dict[str, Any]:
        return dict(zip(self._names, self.field_values(bits)))

    def decode(self, bits: Sequence[int]) -> Architecture:
        """Bits -> Architecture. Valid for every bit string of length ``self.length``."""
        v = self.field_values(bits)
        encoders = tuple(EncoderBlock(v[c], v[k], v[d], v[s]) for c, k, d, s in self._plan_encoders)
        decoders = tuple(DecoderBlock(v[c], v[k], v[u], v[x]) for c, k, u, x in self._plan_decoders)
        skips = tuple(Skip(n, m, v[channels]) for n, m, gate, channels in self._plan_skips if v[gate])
        lr, depth, noise, activation = self._plan_meta
        iterations = self._plan_iterations
        return Architecture(encoders, decoders, skips, learning_rate=v[lr], input_depth=v[depth],
                            reg_noise_std=v[noise], activation=v[activation],
                            iterations_fraction=None if iterations is None else v[iterations])

    def encode(self, arch: Architecture) -> list[int]:
        """Architecture -> bits. ``decode(encode(a)) == a``; the channel bits of a closed skip gate are
        inert and encode as index 0, so ``encode(decode(b))`` equals ``b`` up to those inert bits."""
        if arch.levels != self.levels:
            raise GenomeError(f"architecture has {arch.levels} levels; the spec has {self.levels}")
        values: dict[str, Any] = {}
        for n, (e, d) in enumerate(zip(arch.encoders, arch.decoders)):
            values.update({f"level{n}.encoder.channels": e.channels, f"level{n}.encoder.kernel": e.kernel,
                           f"level{n}.encoder.downsample": e.downsample, f"level{n}.encoder.second_conv": e.second_conv,
                           f"level{n}.decoder.channels": d.channels, f"level{n}.decoder.kernel": d.kernel,
                           f"level{n}.decoder.upsample": d.upsample, f"level{n}.decoder.conv1x1": d.conv1x1})
            for m in range(self.levels):
                values[f"level{n}.skip{m}.gate"] = False
                values[f"level{n}.skip{m}.channels"] = SKIP_CHANNELS[0]
        for s in arch.skips:
            values[f"level{s.source}.skip{s.target}.gate"] = True
            values[f"level{s.source}.skip{s.target}.channels"] = s.channels
        values.update({"meta.learning_rate": arch.learning_rate, "meta.input_depth": arch.input_depth,
                       "meta.reg_noise_std": arch.reg_noise_std, "meta.activation": arch.activation})
        if self.evolve_iterations:
            values["meta.iterations_fraction"] = arch.iterations_fraction if arch.iterations_fraction else 1.0
        elif arch.iterations_fraction not in (None, 1.0):
            raise GenomeError("this spec does not evolve iterations but the architecture sets a fraction")
        bits = [0] * self.length
        for i, f in enumerate(self.fields):
            value = values[f.name]
            index = _index_of(f, value)
            self.set_field_index(bits, i, index)
        return bits

    def random_bits(self, rng: random.Random) -> list[int]:
        return [rng.randint(0, 1) for _ in range(self.length)]


def _index_of(f: Field, value: Any) -> int:
    for i, v in enumerate(f.values):
        if v == value or (isinstance(v, float) and isinstance(value, float) and math.isclose(v, value, rel_tol=1e-9)):
            return i
    raise GenomeError(f"{f.name} = {value!r} is not in the search space (allowed: {', '.join(map(_fmt, f.values))})")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


DEFAULT_SPEC = GenomeSpec()


def classical_dip(levels: int = 5) -> Architecture:
    """The reference DIP "skip" network (Ulyanov et al.): 128 channels per level, 4-channel skips,
    3x3 kernels, stride-2 down, bilinear up, 1x1 up-convs, LeakyReLU, 32 input channels,
    lr 0.01, reg-noise 1/30, reflection padding."""
    enc = EncoderBlock(128, 3, "stride", True)
    dec = DecoderBlock(128, 3, "bilinear", True)
    return Architecture(encoders=(enc,) * levels, decoders=(dec,) * levels,
                        skips=tuple(Skip(n, n, 4) for n in range(levels)),
                        learning_rate=0.01, input_depth=32, reg_noise_std=1 / 30, activation="leaky_relu")


def decode(bits: Sequence[int], spec: GenomeSpec | None = None) -> Architecture:
    return (spec or DEFAULT_SPEC).decode(bits)


def encode(arch: Architecture, spec: GenomeSpec | None = None) -> list[int]:
    return (spec or GenomeSpec(levels=arch.levels)).encode(arch)
