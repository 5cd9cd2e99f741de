import pytest
import torch
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
