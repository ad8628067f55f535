"""The one builder that turns an ``Architecture`` into an ``nn.Module``.

Structure per level n (as in DIP's ``skip()``): the encoder takes the level's input to half
resolution; decoder n sees the concatenation of its skip branches and the deeper path resampled to
level n's size. Skips may cross scales: the branch from level n's input is resampled to decoder m.

Size-dependent repairs (documented in the README), applied when the builder knows the image size:
- a convolution whose input map is not larger than its padding cannot use reflection padding, so it
  uses zero padding instead;
- batch normalisation of a 1x1 map (a batch of one image) is undefined, so such a layer is dropped.
These are the only repairs; every decoded genome is otherwise valid as it stands.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import Architecture

ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
}


def level_sizes(size: Sequence[int], arch: Architecture) -> list[tuple[int, int]]:
    """Spatial size of each level's input, and of the deepest encoder output (len = levels + 1)."""
    h, w = int(size[0]), int(size[1])
    sizes = [(h, w)]
    for enc in arch.encoders:
        if enc.downsample == "stride":
            h, w = (h + 1) // 2, (w + 1) // 2  # stride-2 conv with 'same' padding and an odd kernel
        else:
            h, w = max(h // 2, 1), max(w // 2, 1)
        sizes.append((h, w))
    return sizes


def min_image_size(levels: int) -> int:
    """Smallest image side the builder accepts for a network of ``levels`` levels."""
    return 2 ** levels


def _padding_mode(arch: Architecture, kernel: int, size: tuple[int, int] | None) -> str:
    if arch.padding != "reflection":
        return "zeros"
    if size is not None and min(size) <= kernel // 2:
        return "zeros"  # repair: reflection needs the map larger than the padding
    return "reflect"


def norm(channels: int, size: tuple[int, int] | None) -> nn.Module:
    if size is not None and size[0] * size[1] == 1:
        return nn.Identity()  # repair: BN needs more than one value per channel
    return nn.BatchNorm2d(channels)


def conv(in_ch: int, out_ch: int, kernel: int, stride: int, padding_mode: str) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, padding_mode=padding_mode)


class DIPNet(nn.Module):
    """An asymmetric encoder-decoder with gated, possibly cross-scale skips, ending in a sigmoid."""

    def __init__(self, arch: Architecture, out_channels: int = 3, image_size: Sequence[int] | None = None):
        super().__init__()
        self.arch = arch
        act = ACTIVATIONS[arch.activation]
        sizes = level_sizes(image_size, arch) if image_size is not None else [None] * (arch.levels + 1)
        in_channels = [arch.input_depth] + [e.channels for e in arch.encoders]  # input channels of each level

        self.encoders = nn.ModuleList()
        for n, enc in enumerate(arch.encoders):
            layers: list[nn.Module] = []
            stride = 2 if enc.downsample == "stride" else 1
            layers += [conv(in_channels[n], enc.channels, enc.kernel, stride,
                            _padding_mode(arch, enc.kernel, sizes[n])),
                       norm(enc.channels, sizes[n + 1]), act()]
            if enc.downsample == "avg":
                layers.insert(1, nn.AvgPool2d(2, 2))
            if enc.second_conv:
                layers += [conv(enc.channels, enc.channels, enc.kernel, 1,
                                _padding_mode(arch, enc.kernel, sizes[n + 1])),
                           norm(enc.channels, sizes[n + 1]), act()]
            self.encoders.append(nn.Sequential(*layers))

        self.skips = nn.ModuleDict()
        for s in arch.skips:
            self.skips[f"{s.source}_{s.target}"] = nn.Sequential(
                conv(in_channels[s.source], s.channels, 1, 1, "zeros"), norm(s.channels, sizes[s.source]), act())

        self.decoders = nn.ModuleList()
        for m, dec in enumerate(arch.decoders):
            deeper = arch.decoders[m + 1].channels if m + 1 < arch.levels else arch.encoders[-1].channels
            cat_channels = deeper + sum(s.channels for s in arch.skips_into(m))
            pad = _padding_mode(arch, dec.kernel, sizes[m])
            layers = [norm(cat_channels, sizes[m]), conv(cat_channels, dec.channels, dec.kernel, 1, pad),
                      norm(dec.channels, sizes[m]), act()]
            if dec.conv1x1:
                layers += [conv(dec.channels, dec.channels, 1, 1, "zeros"), norm(dec.channels, sizes[m]), act()]
            self.decoders.append(nn.Sequential(*layers))
        self.head = nn.Sequential(conv(arch.decoders[0].channels, out_channels, 1, 1, "zeros"), nn.Sigmoid())
        self._skip_plan = [[(s.source, f"{s.source}_{s.target}") for s in arch.skips_into(m)]
                           for m in range(arch.levels)]
        self._upsample = [d.upsample for d in arch.decoders]

    @staticmethod
    def _resize(x: torch.Tensor, size: torch.Size, mode: str) -> torch.Tensor:
        if x.shape[-2:] == size:
            return x
        if x.shape[-2] > size[0]:  # a skip going down in scale: average, like a pooling layer
            return F.adaptive_avg_pool2d(x, size)
        if mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=size, mode="nearest")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        feats = [z]
        x = z
        for enc in self.encoders:
            x = enc(x)
            feats.append(x)
        y = x
        for m in range(len(self.decoders) - 1, -1, -1):
            size = feats[m].shape[-2:]
            parts = [self._resize(self.skips[name](feats[src]), size, self._upsample[m])
                     for src, name in self._skip_plan[m]]
            parts.append(self._resize(y, size, self._upsample[m]))
            y = self.decoders[m](torch.cat(parts, 1) if len(parts) > 1 else parts[0])
        return self.head(y)


def build_network(arch: Architecture, out_channels: int = 3, image_size: Sequence[int] | None = None) -> DIPNet:
    """Architecture -> ``nn.Module``. Pass ``image_size`` (H, W) so the builder can repair padding
    for maps too small for reflection padding."""
    return DIPNet(arch, out_channels=out_channels, image_size=image_size)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
