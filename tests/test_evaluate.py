"""`ganforge evaluate`, `ganforge features train` and the monitor that runs during training."""

import json
import shutil

import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.data.embedded import cache_dir
from ganforge.metrics import DomainFeatures
from ganforge.pipelines.evaluation import evaluate


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    args = ["train", "--data", "digits", "--resolution", "8", "--width", "8", "--batch-size", "16", "--steps", "4",
            "--max-images", "1500", "--eval-every", "2", "--eval-samples", "64", "--out", str(run)]
    assert main(args) == 0
    return run


def test_training_records_evaluations(digits_run):
    records = [json.loads(line) for line in (digits_run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert {"fid_domain", "kid_domain", "diversity", "class_coverage", "class_entropy"} <= set(evals[0])
    assert (evals[0]["kid_subset_size"], evals[0]["kid_subsets"]) == (32, 100)  # half of the 64 samples
    assert Image.open(digits_run / "losses.png").size[0] > 0  # eval lines do not break the plot


def test_evaluate_writes_a_report_naming_its_extractor(digits_run, capsys):
    assert main(["evaluate", str(digits_run), "--n", "100"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((digits_run / "evaluation.json").read_text())
    assert report["extractor"].startswith("domain-classifier-8px:") and report["extractor"] in printed
    assert "held-out" in report["reference"] and "297" in report["reference"]
    for key in ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "fid_floor_train_vs_heldout"):
        assert isinstance(report[key], float), key
    assert (report["kid_subset_size"], report["kid_subsets"]) == (50, 100)  # half of the 100 generated images
    assert report["kid_std"] > 0 and "(std over 100 subsets of 50 images per set)" in printed
    assert report["fid_floor_train_vs_heldout"] < report["fid"]  # 4 steps of training are far from the data
    memo = report["memorization"]
    assert 0 <= memo["near_copy_share"] <= 1 and len(memo["closest_pairs"]) == 16
    assert Image.open(memo["closest_pairs_png"]).size[0] > 0


def test_evaluate_errors(digits_run, capsys, tmp_path):
    assert main(["evaluate", str(digits_run), "--metrics", "fid,bogus"]) == 2
    assert "--metrics" in capsys.readouterr().err
    no_holdout = tmp_path / "r"
    assert main(["train", "--data", "digits", "--resolution", "8", "--width", "8", "--steps", "1", "--out", str(no_holdout)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(no_holdout), "--metrics", "memorization"]) == 2
    assert "held-out" in capsys.readouterr().err
    assert main(["evaluate", str(digits_run), "--inception-weights", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err


def test_features_train_and_use(digits_run, tmp_path, capsys):
    folder = tmp_path / "features"
    assert main(["features", "train", "--data", "digits", "--resolution", "8", "--max-images", "1500",
                 "--steps", "50", "--out", str(folder)]) == 0
    assert (folder / "config.json").exists() and (folder / "weights.safetensors").exists()
    capsys.readouterr()
    assert main(["evaluate", str(digits_run), "--features", str(folder), "--metrics", "fid,kid",
                 "--out", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert "memorization" not in report and "fid" in report and "precision" not in report


def test_evaluate_defaults_work_on_a_run_without_held_out_images(tmp_path, capsys, caplog):
    run = tmp_path / "quickstart"
    assert main(["train", "--data", "digits", "--resolution", "8", "--width", "8", "--steps", "1", "--out", str(run)]) == 0
    with caplog.at_level("INFO", logger="ganforge"):
        assert main(["evaluate", str(run), "--n", "100"]) == 0
    report = json.loads((run / "evaluation.json").read_text())
    assert "memorization" not in report and "fid_floor_train_vs_heldout" not in report
    assert "training images of digits (1797)" in report["reference"] and isinstance(report["coverage"], float)
    notes = [r.getMessage() for r in caplog.records if "memorization" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0] and "--max-images" in notes[0]


@pytest.fixture
def extractor_calls(monkeypatch):
    """The number of images in each call of a domain network's `features`, and the images themselves."""
    calls = []
    features = DomainFeatures.features

    def counting(self, images):
        calls.append(images)
        return features(self, images)

    monkeypatch.setattr(DomainFeatures, "features", counting)
    return calls


def test_evaluate_extracts_real_images_once_per_run(digits_run, extractor_calls, tmp_path):
    shutil.rmtree(digits_run / "real_features", ignore_errors=True)  # left by the tests before
    first = evaluate(digits_run, n=100, out=tmp_path / "first.json")
    assert sorted(len(images) for images in extractor_calls) == [100, 297, 1500]  # generated, held-out, training
    extractor_calls.clear()
    second = evaluate(digits_run, n=100, out=tmp_path / "second.json")
    assert [len(images) for images in extractor_calls] == [100]  # only the generated images
    assert second["fid_floor_train_vs_heldout"] == first["fid_floor_train_vs_heldout"] and second["fid"] == first["fid"]
    assert len(list((digits_run / "real_features").glob("domain-classifier-8px-*.safetensors"))) == 2


def test_evaluate_of_a_model_folder_caches_real_features_in_the_cache_folder(digits_run, extractor_calls, tmp_path):
    shutil.rmtree(cache_dir() / "real_features", ignore_errors=True)
    evaluate(digits_run / "model", data="digits", metrics=["fid"], n=100, out=tmp_path / "e.json")
    assert sorted(len(images) for images in extractor_calls) == [100, 1797]
    extractor_calls.clear()
    evaluate(digits_run / "model", data="digits", metrics=["fid"], n=100, out=tmp_path / "e.json")
    assert [len(images) for images in extractor_calls] == [100]
    assert len(list((cache_dir() / "real_features").glob("domain-classifier-8px-*.safetensors"))) == 1


def _on_8bit_levels(images: torch.Tensor) -> bool:
    """Whether images (uint8, or float in [-1, 1]) hold only the 256 levels an 8-bit file can."""
    levels = images.double() if images.dtype == torch.uint8 else (images.double() + 1) * 127.5
    return bool(torch.all(levels == levels.round()))


def test_evaluate_rounds_generated_images_to_8_bits_before_features(digits_run, extractor_calls, tmp_path):
    evaluate(digits_run, metrics=["fid"], n=100, out=tmp_path / "e.json")
    generated = [images for images in extractor_calls if len(images) == 100]
    assert len(generated) == 1 and _on_8bit_levels(generated[0])


class ConstantGenerator(torch.nn.Module):
    """A generator forced to collapse: every z gives the same image."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image = torch.nn.Parameter(image)

    def forward(self, z):
        return self.image.expand(z.shape[0], -1, -1, -1)


def test_training_monitor_fires_on_a_collapsed_generator_and_not_on_real_data(caplog):
    from ganforge.data import load_imageset, split
    from ganforge.training.monitors import TrainingMonitor
    from ganforge.imageio import uint8_to_float

    train, _ = split(load_imageset("digits", 8), 1500)
    monitor = TrainingMonitor(train, num_samples=200, seed=0, latent_dim=4)
    with caplog.at_level("WARNING", logger="ganforge"):
        record = monitor(ConstantGenerator(uint8_to_float(train.images[:1])))
    assert "possible mode collapse" in record["collapse_warning"] and "possible mode collapse" in caplog.text
    assert record["class_coverage"] <= 0.1 and record["diversity"] < 1e-3  # float32 round-off; real data: ~50

    images = uint8_to_float(train.images)
    shuffled = ShuffledData(images)
    assert "collapse_warning" not in TrainingMonitor(train, 200, 0, 4)(shuffled)


def test_training_monitor_rounds_generated_images_to_8_bits(extractor_calls):
    from ganforge.data import load_imageset, split
    from ganforge.training.monitors import TrainingMonitor

    train, _ = split(load_imageset("digits", 8), 1500)
    off_grid = torch.full((1, 8, 8), 0.3337)  # 170.04 on the 0-255 scale
    record = TrainingMonitor(train, num_samples=50, seed=0, latent_dim=4)(ConstantGenerator(off_grid))
    generated = [images for images in extractor_calls if len(images) == 50 and images.float().std() == 0]
    assert len(generated) == 1 and _on_8bit_levels(generated[0])
    assert record["kid_subset_size"] == 25


class ShuffledData(torch.nn.Module):
    """A 'generator' that returns real training images: as diverse as the data."""

    def __init__(self, images):
        super().__init__()
        self.images, self.dummy = images, torch.nn.Parameter(torch.zeros(1))
        self.offset = 0

    def forward(self, z):
        out = self.images[self.offset : self.offset + z.shape[0]]
        self.offset += z.shape[0]
        return out
