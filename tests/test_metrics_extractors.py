import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ganforge.data import load_imageset
from ganforge.errors import UserError
from ganforge.metrics import DomainFeatures, InceptionV3Features, load_domain_features, train_domain_features
from ganforge.metrics.inception import FIDInceptionV3
from ganforge.saved_model import save_model


@pytest.fixture(autouse=True)
def _one_thread():
    """The small domain networks train faster on one thread, and much faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inception_state():
    """A random FID Inception state dict shaped like pytorch-fid's file: with `fc.*`, without batch counters."""
    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    return {**state, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}


def test_inception_loads_a_pytorch_fid_style_pth_and_gives_pool3_features(tmp_path, inception_state):
    assert {"Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_mean", "Mixed_5b.branch1x1.conv.weight",
            "Mixed_7c.branch3x3dbl_3b.bn.running_var"} <= inception_state.keys()
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(inception_state, path)
    extractor = InceptionV3Features(path)
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    features = extractor.features(grey)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    assert extractor.name.startswith("inception-v3-fid:")


def test_inception_accepts_safetensors_with_the_same_keys(tmp_path, inception_state):
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in inception_state.items()}, str(path))
    torch.save(inception_state, tmp_path / "same.pth")
    assert InceptionV3Features(path).name == InceptionV3Features(tmp_path / "same.pth").name


def test_inception_refuses_missing_unreadable_and_wrong_files(tmp_path):
    with pytest.raises(UserError, match="nowhere.pth: no such Inception weights file"):
        InceptionV3Features(tmp_path / "nowhere.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(UserError, match="garbage.pth: cannot read"):
        InceptionV3Features(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(UserError, match="wrong.pth: not FID Inception-v3 weights") as err:
        InceptionV3Features(wrong)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def digits():
    data = load_imageset("digits", 8)
    return data.images[:600], data.labels[:600]


def _small(images, labels, seed=0):
    return train_domain_features(images, labels, steps=25, seed=seed, batch_size=32, width=8, feature_dim=16)


def test_domain_classifier_is_deterministic_and_round_trips(tmp_path, digits):
    images, labels = digits
    model = _small(images, labels)
    assert model.is_classifier and model.name.startswith("domain-classifier-8px:")
    features = model.features(images[:50])
    assert features.shape == (50, 16)
    assert torch.equal(_small(images, labels).features(images[:50]), features)
    probs = model.predict_proba(images[:50])
    assert probs.shape == (50, 10) and torch.allclose(probs.sum(1), torch.ones(50))
    model.save(tmp_path / "domain")
    loaded = load_domain_features(tmp_path / "domain")
    assert isinstance(loaded, DomainFeatures) and loaded.name == model.name
    assert torch.equal(loaded.features(images[:50]), features)
    as_float = images[:50].float() / 127.5 - 1
    assert torch.allclose(loaded.features(as_float), features, atol=1e-6)


def test_domain_features_without_labels_train_contrastively(digits):
    images, labels = digits
    unlabelled = torch.full_like(labels, -1)
    model = _small(images, unlabelled)
    assert not model.is_classifier and model.name.startswith("domain-contrastive-")
    assert model.features(images[:20]).shape == (20, 16)
    assert _small(images, None).name == model.name
    assert not _small(images, torch.zeros_like(labels)).is_classifier  # one class teaches nothing
    with pytest.raises(ValueError):
        model.predict_proba(images[:4])


def test_domain_features_resize_but_refuse_other_channels(tmp_path, digits):
    images, labels = digits
    model = _small(images, labels)
    assert model.features(torch.rand(3, 1, 16, 16) * 2 - 1).shape == (3, 16)
    with pytest.raises(UserError, match="expects 1-channel images"):
        model.features(torch.rand(3, 3, 8, 8))
    save_model(tmp_path / "other", {"kind": "dcgan"}, {"weights": {"w": torch.zeros(2)}})
    with pytest.raises(UserError, match="other: not a domain-features folder"):
        load_domain_features(tmp_path / "other")


# ---------------------------------------------------------------------------- the FID Inception graph
@pytest.fixture(scope="module")
def scaled_inception_state():
    """Random weights that keep activations near unit scale through all 94 layers (He-scaled convolutions,
    batch-norm statistics off 0 and 1), so that a pooling or padding difference anywhere reaches pool3."""
    g = torch.Generator().manual_seed(1)
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        if key.endswith("conv.weight"):
            state[key] = torch.randn(value.shape, generator=g) * (2 / value[0].numel()) ** 0.5
        elif key.endswith(("bn.weight", "bn.running_var")):
            state[key] = 1 + 0.3 * torch.rand(value.shape, generator=g)
        elif key.endswith(("bn.bias", "bn.running_mean")):
            state[key] = 0.1 * torch.randn(value.shape, generator=g)
    return state


def _conv(state, name, x, stride=1, same=True):
    """pytorch-fid's BasicConv2d: convolution without bias, batch norm with TensorFlow's eps 0.001, ReLU."""
    w = state[f"{name}.conv.weight"]
    x = F.conv2d(x, w, stride=stride, padding=(w.shape[2] // 2, w.shape[3] // 2) if same else 0)
    x = F.batch_norm(x, state[f"{name}.bn.running_mean"], state[f"{name}.bn.running_var"],
                     state[f"{name}.bn.weight"], state[f"{name}.bn.bias"], eps=0.001)
    return F.relu(x)


def _tf_avg(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _reference_pool3(s, x):
    """pytorch-fid's FIDInceptionA/C/E_1/E_2 graph, written out from its source in plain functions."""
    def c(name, x, stride=1, same=True):
        return _conv(s, name, x, stride, same)

    def chain(prefix, x, n):
        for i in range(1, n + 1):
            x = c(f"{prefix}_{i}", x)
        return x

    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = c("Conv2d_2b_3x3", c("Conv2d_2a_3x3", c("Conv2d_1a_3x3", x, 2, False), same=False))
    x = F.max_pool2d(x, 3, 2)
    x = F.max_pool2d(c("Conv2d_4a_3x3", c("Conv2d_3b_1x1", x), same=False), 3, 2)
    for m in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = torch.cat([c(f"{m}.branch1x1", x), c(f"{m}.branch5x5_2", c(f"{m}.branch5x5_1", x)),
                       chain(f"{m}.branch3x3dbl", x, 3), c(f"{m}.branch_pool", _tf_avg(x))], 1)
    b3 = c("Mixed_6a.branch3x3dbl_3", chain("Mixed_6a.branch3x3dbl", x, 2), 2, False)
    x = torch.cat([c("Mixed_6a.branch3x3", x, 2, False), b3, F.max_pool2d(x, 3, 2)], 1)
    for m in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = torch.cat([c(f"{m}.branch1x1", x), chain(f"{m}.branch7x7", x, 3), chain(f"{m}.branch7x7dbl", x, 5),
                       c(f"{m}.branch_pool", _tf_avg(x))], 1)
    b3 = c("Mixed_7a.branch3x3_2", c("Mixed_7a.branch3x3_1", x), 2, False)
    b7 = c("Mixed_7a.branch7x7x3_4", chain("Mixed_7a.branch7x7x3", x, 3), 2, False)
    x = torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)
    for m, pool in (("Mixed_7b", _tf_avg), ("Mixed_7c", lambda t: F.max_pool2d(t, 3, 1, 1))):
        b3, d = c(f"{m}.branch3x3_1", x), chain(f"{m}.branch3x3dbl", x, 2)
        x = torch.cat([c(f"{m}.branch1x1", x), c(f"{m}.branch3x3_2a", b3), c(f"{m}.branch3x3_2b", b3),
                       c(f"{m}.branch3x3dbl_3a", d), c(f"{m}.branch3x3dbl_3b", d), c(f"{m}.branch_pool", pool(x))], 1)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


BLOCK_SHAPES_AT_299 = {
    "Conv2d_1a_3x3": (32, 149), "Conv2d_2a_3x3": (32, 147), "Conv2d_2b_3x3": (64, 147), "Conv2d_3b_1x1": (80, 73),
    "Conv2d_4a_3x3": (192, 71), "Mixed_5b": (256, 35), "Mixed_5c": (288, 35), "Mixed_5d": (288, 35),
    "Mixed_6a": (768, 17), "Mixed_6b": (768, 17), "Mixed_6c": (768, 17), "Mixed_6d": (768, 17), "Mixed_6e": (768, 17),
    "Mixed_7a": (1280, 8), "Mixed_7b": (2048, 8), "Mixed_7c": (2048, 8),
}


def test_inception_block_shapes_and_features_match_an_independent_forward(tmp_path, scaled_inception_state):
    torch.save(scaled_inception_state, tmp_path / "inception.pth")
    extractor = InceptionV3Features(tmp_path / "inception.pth")
    shapes = {}

    def record(name):
        def hook(_module, _inputs, out):
            shapes[name] = tuple(out.shape[1:])
        return hook

    for name in BLOCK_SHAPES_AT_299:
        getattr(extractor.net, name).register_forward_hook(record(name))
    image = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(2)) * 2 - 1  # downsized: no antialiasing
    features = extractor.features(image)
    assert shapes == {name: (c, s, s) for name, (c, s) in BLOCK_SHAPES_AT_299.items()}
    with torch.no_grad():
        expected = _reference_pool3(scaled_inception_state, image)
    assert expected.std() > 0.1  # the random weights carry signal all the way through
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, size, pool", [
    ("Mixed_5b", 35, _tf_avg), ("Mixed_6b", 17, _tf_avg), ("Mixed_7b", 8, _tf_avg),
    ("Mixed_7c", 8, lambda t: F.max_pool2d(t, 3, 1, 1)),
])
def test_inception_pool_branches_leave_padding_out_and_the_last_block_max_pools(name, size, pool,
                                                                              scaled_inception_state):
    # The pool branch is the block's last output channels: its 1x1 convolution applied to the pooled
    # input. Border pixels tell count_include_pad True from False, and any pixel max from average.
    net = FIDInceptionV3()
    net.load_state_dict(scaled_inception_state, strict=False)
    block = getattr(net, name).eval()
    x = torch.rand(1, block.branch1x1.conv.in_channels, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out_channels = block.branch_pool.conv.out_channels
        torch.testing.assert_close(block(x)[:, -out_channels:], block.branch_pool(pool(x)), rtol=1e-5, atol=1e-5)
