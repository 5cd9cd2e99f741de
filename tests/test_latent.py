"""Seeded latents and the truncation trick (`ganforge sample/interpolate/augment --truncation`)."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from ganforge.cli import main
from ganforge.errors import UserError
from ganforge.latent import check_truncation, latents


def test_no_truncation_is_the_plain_seeded_normal():
    z = latents([3, 7], 100)
    assert torch.equal(z[0], torch.randn(100, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(latents([7], 100, truncation=1.0)[0], z[1])


def test_truncated_latents_follow_bigGANs_truncated_normal():
    """truncnorm(-2, 2) x psi, per component (scipy's distribution as the reference); seed s gives one z in any batch."""
    psi = 0.7
    z = latents(list(range(300)), 100, truncation=psi)
    assert z.abs().max() <= 2 * psi and z.abs().max() > 1.9 * psi
    assert torch.equal(latents([5, 123], 100, truncation=psi)[1], z[123])
    sample = z.flatten().numpy() / psi
    assert stats.kstest(sample, stats.truncnorm(-2, 2).cdf).pvalue > 0.01
    for other in (stats.truncnorm(-1.5, 1.5), stats.truncnorm(-2.5, 2.5), stats.norm()):  # the test can tell these apart
        assert stats.kstest(sample, other.cdf).pvalue < 1e-6


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.01, float("nan")])
def test_truncation_outside_0_1_is_refused(bad):
    with pytest.raises(UserError, match="--truncation"):
        check_truncation(bad)


def test_sample_with_truncation(tmp_path, refused):
    plain, truncated = tmp_path / "plain.png", tmp_path / "truncated.png"
    assert main(["sample", "--model", "mnist5k", "--n", "16", "--out", str(plain)]) == 0
    assert main(["sample", "--model", "mnist5k", "--n", "16", "--truncation", "0.5", "--out", str(truncated)]) == 0
    a, b = (np.asarray(Image.open(p), dtype=float) for p in (plain, truncated))
    assert a.shape == b.shape and np.abs(a - b).mean() > 5  # other latents, other images
    refused(["sample", "--model", "mnist5k", "--truncation", "2", "--out", str(tmp_path / "x.png")], "--truncation",
            tmp_path)
    refused(["interpolate", "--model", "mnist5k", "--truncation", "0", "--out", str(tmp_path / "x.png")],
            "--truncation", tmp_path)
