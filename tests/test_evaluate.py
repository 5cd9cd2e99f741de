"""`ganforge evaluate`, `ganforge features train` and the monitor that runs during training."""

import json

import pytest
import torch
from PIL import Image

from ganforge.cli import main


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
    assert Image.open(digits_run / "losses.png").size[0] > 0  # eval lines do not break the plot


def test_evaluate_writes_a_report_naming_its_extractor(digits_run, capsys):
    assert main(["evaluate", str(digits_run), "--n", "100"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((digits_run / "evaluation.json").read_text())
    assert report["extractor"].startswith("domain-classifier-8px:") and report["extractor"] in printed
    assert "held-out" in report["reference"] and "297" in report["reference"]
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "fid_floor_train_vs_heldout"):
        assert isinstance(report[key], float), key
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
