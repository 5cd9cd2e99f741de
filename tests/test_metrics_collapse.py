import pytest
import torch

from ganforge.metrics import CollapseMonitor, class_histogram_stats, diversity


def test_class_histogram_of_balanced_and_collapsed_predictions():
    balanced = torch.arange(100) % 10
    assert class_histogram_stats(balanced, 10) == pytest.approx({"class_coverage": 1.0, "class_entropy": 1.0})
    one_class = torch.full((100,), 3)
    assert class_histogram_stats(one_class, 10) == {"class_coverage": 0.1, "class_entropy": 0.0}


def test_class_histogram_takes_probabilities_and_ignores_stray_samples():
    labels = torch.cat([torch.zeros(97, dtype=torch.long), torch.tensor([1, 2, 3])])
    probs = torch.nn.functional.one_hot(labels, 4).float() * 0.7 + 0.075
    stats = class_histogram_stats(probs, 4)
    # Classes 1-3 get 1 % each, under the 1 / (4 * 4) = 6.25 % needed to count as covered.
    assert stats["class_coverage"] == 0.25
    assert 0 < stats["class_entropy"] < 0.2


def test_diversity_is_the_mean_pairwise_distance():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert diversity(x) == pytest.approx((5 + 5 + 0) / 3)
    assert diversity(torch.ones(10, 5)) == pytest.approx(0.0, abs=1e-6)


def test_monitor_fires_on_collapse_and_stays_quiet_on_diverse_samples():
    g = torch.Generator().manual_seed(0)
    monitor = CollapseMonitor()
    for _ in range(3):
        assert monitor.update(torch.randn(64, 16, generator=g)) is None
    warning = monitor.update(torch.randn(1, 16, generator=g).repeat(64, 1))
    assert warning is not None and "diversity" in warning


def test_monitor_checks_class_coverage_and_a_real_reference():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(50, 8, generator=g)
    one_class = torch.nn.functional.one_hot(torch.zeros(50, dtype=torch.long), 10).float()
    warning = CollapseMonitor().update(features, one_class)
    assert warning is not None and "10%" in warning
    collapsed_from_the_start = torch.ones(50, 8)
    assert CollapseMonitor().update(collapsed_from_the_start) is None
    assert CollapseMonitor(reference=diversity(features)).update(collapsed_from_the_start) is not None
