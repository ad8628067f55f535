"""Every genome builds a trainable network; size repairs work."""
import random

import pytest
import torch

from nasdip_deap import GenomeSpec, build_network, classical_dip, decode
from nasdip_deap.network import level_sizes


@pytest.mark.parametrize("seed", range(25))
def test_random_genome_trains_on_32px(seed):
    spec = GenomeSpec()
    arch = decode(spec.random_bits(random.Random(seed)))
    torch.manual_seed(seed)
    net = build_network(arch, out_channels=3, image_size=(32, 32))
    z = torch.rand(1, arch.input_depth, 32, 32)
    out = net(z)
    assert out.shape == (1, 3, 32, 32)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    out.mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("levels", range(1, 7))
def test_every_depth_builds_at_its_minimum_size(levels):
    spec = GenomeSpec(levels=levels)
    size = 2 ** levels
    for seed in range(3):
        arch = spec.decode(spec.random_bits(random.Random(seed)))
        net = build_network(arch, 1, (size, size + 3))
        net(torch.rand(1, arch.input_depth, size, size + 3)).sum().backward()


def test_reflection_padding_repaired_on_small_maps():
    arch = classical_dip()
    net = build_network(arch, 3, (32, 32))
    modes = [m.padding_mode for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
    assert "reflect" in modes and "zeros" in modes  # deep 1-2 px maps fall back to zero padding
    net(torch.rand(1, 32, 32, 32))


def test_cross_scale_skips_are_resampled():
    import dataclasses
    from nasdip_deap import Skip
    arch = dataclasses.replace(classical_dip(), skips=(Skip(0, 3, 8), Skip(4, 0, 2), Skip(2, 2, 4)))
    net = build_network(arch, 3, (64, 48))
    assert net(torch.rand(1, 32, 64, 48)).shape == (1, 3, 64, 48)


def test_level_sizes_odd_image():
    sizes = level_sizes((45, 33), classical_dip())
    assert sizes[0] == (45, 33) and sizes[1] == (23, 17) and len(sizes) == 6


@pytest.mark.parametrize("out_channels", [1, 3])
def test_conv_weight_count_matches_the_built_network(out_channels):
    """The count the predictor and the surrogate use as a feature is that of the network that trains."""
    from nasdip_deap.memory import conv_weight_count

    spec, rng = GenomeSpec(levels=5), random.Random(7)
    for arch in [classical_dip(5)] + [spec.decode(spec.random_bits(rng)) for _ in range(20)]:
        net = build_network(arch, out_channels=out_channels)
        built = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv_weight_count(arch, out_channels) == built, arch.key()
