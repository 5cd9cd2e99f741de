"""Style transfer by optimisation: the losses against hand computation, and the feature networks."""

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from ganforge.nets.style import RANDOM_NAME, random_features, vgg19_style_features
from ganforge.nets.vgg import vgg19_features
from ganforge.style_losses import content_loss, gram_matrix, out_of_range, style_loss, total_variation


# ---------------------------------------------------------------------------------------- losses by hand
def test_gram_matrix_divides_by_the_number_of_positions():
    f = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    # G_ij = sum_p F_ip F_jp / (H W): (1+4+9+16)/4, (0+2+0-4)/4, (0+1+0+1)/4
    assert torch.equal(gram_matrix(f), torch.tensor([[[7.5, -0.5], [-0.5, 0.5]]]))
    # the same texture twice as large has the same Gram matrix
    assert torch.allclose(gram_matrix(torch.cat([f, f], dim=-1)), gram_matrix(f))


def test_style_loss_is_the_weighted_sum_of_gram_mses():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    b = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    targets = {"a": torch.zeros(1, 2, 2), "b": torch.tensor([[[4.0]]])}
    # a: mean(7.5^2, 0.5^2, 0.5^2, 0.5^2) = 57/4 = 14.25, weight 2; b: G = (9+1)/2 = 5, (5-4)^2 = 1, weight 0.5
    assert style_loss({"a": a, "b": b}, targets, {"a": 2.0, "b": 0.5}).item() == pytest.approx(2 * 14.25 + 0.5 * 1)
    assert style_loss({"a": a, "b": b}, targets, {"b": 1.0}).item() == pytest.approx(1.0)  # only the weighted layers


def test_content_loss_is_the_sum_over_layers_of_feature_mses():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, -1.0]]).view(1, 2, 2, 2)
    b = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    # a against a + 1: every difference is 1; b against 0: mean(9, 1) = 5
    assert content_loss({"a": a, "b": b, "c": a}, {"a": a + 1, "b": torch.zeros_like(b)}).item() == pytest.approx(6.0)


def test_total_variation_and_out_of_range_by_hand():
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).view(1, 1, 2, 2)
    # vertical |3-0|, |5-1| -> mean 3.5; horizontal |1-0|, |5-3| -> mean 1.5
    assert total_variation(x).item() == pytest.approx(5.0)
    # excess over 1: 0.5, 0, 1, 0 -> mean of squares (0.25 + 1) / 4
    assert out_of_range(torch.tensor([-1.5, 0.5, 2.0, 1.0])).item() == pytest.approx(0.3125)


# ---------------------------------------------------------------------------------------- feature networks
def pattern(size: int = 32) -> torch.Tensor:
    """A fixed colour image in [-1, 1] made by arithmetic alone, the same on every machine."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    return torch.stack([torch.sin(x / 3), torch.cos(y / 5), torch.sin((x + y) / 7)])[None]


def test_builtin_network_is_deterministic_and_pinned():
    a, b = random_features(), random_features()
    assert a.name == RANDOM_NAME == "random-multiscale-v1"
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    x = pattern()
    fa, fb = a(x), b(x)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert set(fa) == set(a.style_layers) | set(a.content_layers)
    assert [f.shape[1:] for f in fa.values()] == [(32, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (256, 2, 2)]
    # Pinned: a change in the seeding, the initialisation or the architecture must change RANDOM_NAME and these.
    digest = hashlib.sha256(b"".join(v.contiguous().numpy().tobytes() for _, v in sorted(a.state_dict().items())))
    assert digest.hexdigest()[:16] == "bc626934068639ac"
    means = [round(f.mean().item(), 4) for f in fa.values()]
    assert means == pytest.approx([0.4172, 0.3216, 0.3455, 0.2708, 0.2488], abs=2e-4)
    assert not any(p.requires_grad for p in a.parameters()) and not a.training


def test_builtin_network_takes_any_size_from_16_pixels():
    net = random_features()
    for h, w in [(16, 16), (17, 45), (16, 300)]:
        maps = net(torch.zeros(1, 3, h, w))
        assert maps["scale5"].shape[-2:] == (-(-h // 16), -(-w // 16))


def vgg19_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout VGG19 state dict with random weights (plus a classifier, to be ignored)."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in vgg19_features().state_dict().items()}
    return {**state, "classifier.0.weight": torch.zeros(4, 4)}


class Payload:
    """Unpickling this would run code: a .pth that holds it must be refused, never loaded."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_vgg19_features_from_pth_and_safetensors(tmp_path):
    torch.save(vgg19_state(), tmp_path / "vgg19.pth")
    save_file(vgg19_state(), str(tmp_path / "vgg19.safetensors"))
    a, b = vgg19_style_features(tmp_path / "vgg19.pth"), vgg19_style_features(tmp_path / "vgg19.safetensors")
    assert a.name == "vgg19 (vgg19.pth)" and b.name == "vgg19 (vgg19.safetensors)"
    assert list(a.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert a.content_layers == ("relu4_2",) and sum(a.style_layers.values()) == pytest.approx(1)
    x = pattern()
    fa, fb = a(x), b(x)
    assert [fa[k].shape[1] for k in a.style_layers] == [64, 128, 256, 512, 512] and fa["relu4_2"].shape[1] == 512
    assert all(torch.equal(fa[k], fb[k]) for k in fa) and all((f >= 0).all() for f in fa.values())  # after ReLU
    torch.save({**vgg19_state(), "features.0.weight": torch.zeros(64, 3, 5, 5)}, tmp_path / "wrong.pth")
    torch.save({"features.0.weight": Payload()}, tmp_path / "code.pth")
    for name, needle in (("wrong.pth", "does not hold torchvision VGG19"), ("code.pth", "not a plain state dict"),
                         ("none.pth", "does not exist")):
        with pytest.raises(Exception, match=needle) as e:
            vgg19_style_features(tmp_path / name)
        assert "--features" in str(e.value)
