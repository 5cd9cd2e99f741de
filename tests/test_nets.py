import pytest
import torch
from torch.nn.utils import parametrize

from ganforge.errors import UserError
from ganforge.nets.conditional import ProjectionDiscriminator
from ganforge.nets.brief import BriefDiscriminator, BriefGenerator
from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator, LatentProjection, resolution_plan


@pytest.mark.parametrize("resolution", [8, 16, 28, 32, 48, 56, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(resolution, channels):
    g = DCGANGenerator(resolution, channels, latent_dim=16, width=4)
    d = DCGANDiscriminator(resolution, channels, width=4)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, channels, resolution, resolution)
    assert x.abs().max() <= 1.0  # tanh output
    assert d(x).shape == (2,)


def test_dcgan_at_64_is_the_reference_architecture():
    g = DCGANGenerator(64, 3, 100, 64)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    d = DCGANDiscriminator(64, 3, 64)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert sum(p.numel() for p in g.parameters()) == 3_576_704  # pytorch/examples netG at nc=3


@pytest.mark.parametrize("latent, channels, kernel", [(100, 64, 7), (150, 32, 4), (100, 512, 4)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_latent_projection_is_the_transposed_convolution(latent, channels, kernel, layout):
    """G's first layer as a matrix product: the same map, the same gradients, as ConvTranspose2d on its weight."""
    torch.manual_seed(0)
    layer = LatentProjection(latent, channels, kernel).to(memory_format=layout)
    z = torch.randn(8, latent, 1, 1, requires_grad=True)
    upstream = torch.randn(8, channels, kernel, kernel)
    out = layer(z)
    out.backward(upstream)
    grads = layer.weight.grad.clone(), z.grad.clone()
    layer.weight.grad = z.grad = None
    expected = torch.nn.functional.conv_transpose2d(z, layer.weight)
    expected.backward(upstream)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], layer.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], z.grad, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)  # what the channels_last layers after it take


@pytest.mark.parametrize("resolution", [30, 3, 9, 100])
def test_unsupported_resolution_is_a_user_error(resolution):
    with pytest.raises(UserError, match="--resolution"):
        resolution_plan(resolution)


def test_brief_networks_follow_the_brief():
    g, d = BriefGenerator(channels=3, latent_dim=100), BriefDiscriminator(channels=3)
    x = g(torch.randn(2, 100))
    assert x.shape == (2, 3, 56, 56)  # 7 -> 7 -> 14 -> 28 -> 56: the brief's G makes 56x56
    assert d(x).shape == (2,)
    assert g.dense[0].out_features == 128 * 7 * 7
    kinds = [type(m).__name__ for m in d.main]
    assert kinds == ["Conv2d", "LeakyReLU", "Dropout", "Conv2d", "LeakyReLU", "Dropout", "Flatten", "Linear"]
    assert all(m.kernel_size == (5, 5) for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d))


@pytest.mark.parametrize("make, layers", [
    (lambda: DCGANDiscriminator(32, 3, width=16, spectral_norm=True), 4),  # 3 strided convs + the last one
    (lambda: ProjectionDiscriminator(32, 3, width=16, num_classes=10, spectral_norm=True, aux_classifier=True), 6),
], ids=["dcgan", "projection-acgan"])
def test_spectral_norm_keeps_the_dcgan_init(make, layers):
    """The weights spectral norm stores (and normalises at every forward) are N(0, 0.02), not PyTorch's default."""
    torch.manual_seed(0)
    d = make()
    stored = [m.parametrizations.weight.original for m in d.modules() if parametrize.is_parametrized(m, "weight")]
    assert len(stored) == layers  # every convolution, projection embedding and classifier
    for w in stored:
        if w.numel() >= 500:  # enough values for the sample std to be within 10% of 0.02
            assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.003, w.shape
    # and spectral norm still normalises: the largest singular value of the used weight is about 1
    d(torch.randn(4, 3, 32, 32), *([torch.zeros(4, dtype=torch.long)] if isinstance(d, ProjectionDiscriminator) else []))
    first = d.features[0] if isinstance(d, ProjectionDiscriminator) else d.main[0]
    sigma = torch.linalg.matrix_norm(first.weight.flatten(1).detach(), ord=2).item()
    assert 0.8 < sigma < 1.2


def test_depth_adds_one_3x3_convolution_per_resolution_and_side():
    """At 28 px (width 32: 64 channels at 7x7, 32 at 14x14) depth 1 adds a 3x3 convolution with its batch norm at both
    of G's hidden resolutions, and one after D's normalised strided convolution (64 channels at 7x7), each keeping
    the map's size; depth 0 is the DCGAN as it was."""
    def count(m):
        return sum(p.numel() for p in m.parameters())

    def refinements(m):
        return [(c.in_channels, c.kernel_size, c.stride) for c in m.modules()
                if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]

    g0, g1, g2 = (DCGANGenerator(28, 1, 100, 32, depth) for depth in (0, 1, 2))
    d0, d1 = DCGANDiscriminator(28, 1, 32), DCGANDiscriminator(28, 1, 32, depth=1)
    assert refinements(g0) == refinements(d0) == []
    assert refinements(g1) == [(64, (3, 3), (1, 1)), (32, (3, 3), (1, 1))]
    assert refinements(d1) == [(64, (3, 3), (1, 1))]
    conv_bn = lambda c: c * c * 9 + 2 * c  # a bias-free 3x3 convolution and its batch norm's scale and shift
    assert count(g1) - count(g0) == conv_bn(64) + conv_bn(32) and count(g2) - count(g0) == 2 * (conv_bn(64) + conv_bn(32))
    assert count(d1) - count(d0) == conv_bn(64)
    # each sits after its resolution's activation and before the next up-convolution (or D's next strided one)
    kinds = [type(m).__name__ for m in g1.main]
    assert kinds == ["LatentProjection", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU",
                     "ConvTranspose2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "ConvTranspose2d", "Tanh"]
    assert [type(m).__name__ for m in d1.main] == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU",
                                                   "Conv2d", "BatchNorm2d", "LeakyReLU", "Conv2d"]
    x = g2(torch.randn(3, 100))
    assert x.shape == (3, 1, 28, 28) and d1(x).shape == (3,)


def test_conditional_depth_conditions_every_added_layer():
    """The conditional G's added 3x3 convolutions each get a class-conditional batch norm; depth 0 is unchanged."""
    from ganforge.nets.conditional import ConditionalBatchNorm2d, ConditionalDCGANGenerator

    g0 = ConditionalDCGANGenerator(28, 1, 16, 32, num_classes=10)
    g1 = ConditionalDCGANGenerator(28, 1, 16, 32, num_classes=10, depth=1)
    assert [type(c).__name__ for c in g0.convs] == ["LatentProjection", "ConvTranspose2d"]
    assert [(type(c).__name__, c.out_channels) for c in g1.convs] == [
        ("LatentProjection", 64), ("Conv2d", 64), ("ConvTranspose2d", 32), ("Conv2d", 32)]
    assert all(isinstance(n, ConditionalBatchNorm2d) and n.bn.num_features == c.out_channels
               for n, c in zip(g1.norms, g1.convs))
    d1 = ProjectionDiscriminator(28, 1, 32, 10, depth=1)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in d1.modules()) == 1
    y = torch.arange(4) % 10
    assert g1(torch.randn(4, 16), y).shape == (4, 1, 28, 28) and d1(g1(torch.randn(4, 16), y), y).shape == (4,)
