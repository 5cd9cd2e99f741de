"""Differentially private training of D (training/privacy.py) and LOGAN's membership attack (metrics/membership.py)."""

import json
import math
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from opacus.accountants import RDPAccountant
from PIL import Image
from opacus.accountants.utils import get_noise_multiplier
from safetensors.torch import load_file
from scipy.special import gammaln, logsumexp
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from ganforge.cli import main
from ganforge.config import TrainConfig
from ganforge.data import load_imageset, split
from ganforge.data.cache import prepare_cache
from ganforge.errors import UserError
from ganforge.imageio import uint8_to_float
from ganforge.metrics.membership import discriminator_scores, logan_attack, membership_auc, top_half_accuracy
from ganforge.nets.build import build_discriminator
from ganforge.nets.dcgan import DCGANDiscriminator
from ganforge.tasks.conditional import ConditionalGenerationTask
from ganforge.tasks.generation import GenerationTask
from ganforge.training import privacy
from ganforge.training.checkpoint import checkpoint_meta
from ganforge.training.privacy import PoissonSampler, PrivateDiscriminatorGradient

DIGITS = [str(i) for i in range(10)]


def dp_args(out, *extra):
    """A private run of about a second: 8x8 digits (200 of them, the rest held out), tiny networks."""
    return ["train", "--data", "digits", "--resolution", "8", "--width", "4", "--batch-size", "16", "--max-images", "200",
            "--dp-epsilon", "8", "--dp-delta", "1e-5", "--out", str(out), "--log-every", "1", *extra]


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def saved_privacy(run) -> dict:
    return json.loads((run / "model" / "config.json").read_text())["privacy"]


def checkpoint(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


# ---------------------------------------------------------------------------- the accountant
@pytest.mark.parametrize("history", [[(1.0, 0.01, 1000)], [(0.7, 0.125, 40)], [(4.0, 0.05, 3)],
                                     [(1.1, 0.08, 30), (0.9, 0.08, 7), (1.1, 0.04, 12)]])
def test_epsilon_is_opacus_rdp_accountant_stepped_update_by_update(history):
    accountant = RDPAccountant()
    for sigma, rate, steps in history:
        for _ in range(steps):
            accountant.step(noise_multiplier=sigma, sample_rate=rate)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")  # Opacus's note, not an error
        expected = accountant.get_epsilon(1e-5)
    assert privacy.epsilon_spent([list(h) for h in history], 1e-5) == expected  # bit for bit


def sampled_gaussian_rdp(q: float, sigma: float, alpha: int) -> float:
    """Renyi DP of the Poisson-subsampled Gaussian mechanism at an integer order, from its closed form
    (Mironov, Talwar and Zhang 2019, sec. 3.3): log(sum_k C(a, k) (1-q)^(a-k) q^k exp((k^2 - k) / (2 sigma^2))) / (a-1)."""
    k = np.arange(alpha + 1)
    log_binom = gammaln(alpha + 1) - gammaln(k + 1) - gammaln(alpha - k + 1)
    log_terms = log_binom + (alpha - k) * np.log1p(-q) + k * np.log(q) + (k * k - k) / (2 * sigma**2)
    return float(logsumexp(log_terms)) / (alpha - 1)


def epsilon_from_rdp(orders, rdp, delta: float) -> float:
    """Balle et al. 2020's conversion from RDP to (epsilon, delta), minimised over the orders."""
    orders, rdp = np.asarray(orders, dtype=np.float64), np.asarray(rdp)
    return float(np.min(rdp - (np.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)))


@pytest.mark.parametrize("sigma, rate", [(1.0, 0.01), (0.8, 0.125), (2.5, 0.3)])
def test_rdp_of_an_update_matches_the_closed_form_at_integer_orders(sigma, rate):
    """Independently of Opacus: its RDP values, which every epsilon here is made of, at the integer orders."""
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = privacy.rdp_of_one_update(sigma, rate)
    integer = [i for i, a in enumerate(orders) if float(a).is_integer()]
    assert len(integer) > 50
    expected = [sampled_gaussian_rdp(rate, sigma, int(orders[i])) for i in integer]
    np.testing.assert_allclose(rdp[integer], expected, rtol=1e-9)
    # Over the integer orders alone epsilon can only be larger (fewer orders to minimise over), and close.
    updates = 500
    ours = privacy.epsilon_spent([[sigma, rate, updates]], 1e-5)
    by_hand = epsilon_from_rdp([orders[i] for i in integer], np.array(expected) * updates, 1e-5)
    assert ours <= by_hand + 1e-12 and ours > by_hand - 0.1 * by_hand


def test_without_subsampling_epsilon_is_the_gaussian_mechanism_at_every_order():
    """q = 1: the RDP of the Gaussian mechanism is alpha / (2 sigma^2) at every order, fractional ones too."""
    sigma, updates = 3.0, 20
    orders = np.array(RDPAccountant.DEFAULT_ALPHAS, dtype=np.float64)
    expected = epsilon_from_rdp(orders, updates * orders / (2 * sigma**2), 1e-5)
    assert privacy.epsilon_spent([[sigma, 1.0, updates]], 1e-5) == pytest.approx(expected, rel=1e-10)


def test_noise_is_opacus_choice_and_spends_at_most_the_target():
    sigma = privacy.noise_multiplier_for(8.0, 1e-5, 0.125, 400)
    assert sigma == get_noise_multiplier(target_epsilon=8.0, target_delta=1e-5, sample_rate=0.125, steps=400,
                                         accountant="rdp")
    assert 7.9 < privacy.epsilon_spent([[sigma, 0.125, 400]], 1e-5) <= 8.0
    assert privacy.noise_multiplier_for(math.inf, 1e-5, 0.125, 400) == 0.0
    assert privacy.epsilon_spent([[0.0, 0.125, 1]], 1e-5) == math.inf
    assert privacy.epsilon_spent([], 1e-5) == 0.0


def test_updates_within_budget_is_the_last_that_fits():
    history, sigma, rate = [[1.1, 0.1, 50]], 1.1, 0.1
    k = privacy.updates_within_budget(history, sigma, rate, 1e-5, 8.0)
    assert k > 0
    assert privacy.epsilon_spent(history + [[sigma, rate, k]], 1e-5) <= 8.0
    assert privacy.epsilon_spent(history + [[sigma, rate, k + 1]], 1e-5) > 8.0
    spent = privacy.epsilon_spent(history, 1e-5)
    assert privacy.updates_within_budget(history, sigma, rate, 1e-5, spent * 0.99) == 0


# ---------------------------------------------------------------------------- sampling, clipping, noise
def test_poisson_sampling_rate_shards_and_replay():
    sampler = PoissonSampler(1000, 50, seed=3)
    assert sampler.sample_rate == 0.05
    sizes = torch.tensor([len(sampler.indices(u)) for u in range(400)], dtype=torch.float64)
    assert abs(sizes.mean() - 50) < 1.5 and sizes.std() > 3  # Binomial(1000, 0.05): mean 50, std 6.9
    counts = torch.bincount(torch.cat([sampler.indices(u) for u in range(400)]), minlength=1000).double()
    assert abs(counts.mean() - 20) < 0.5 and counts.std() < 6  # every image drawn at rate q: Binomial(400, 0.05)
    assert torch.equal(sampler.indices(7), sampler.indices(7))
    ranks = [PoissonSampler(1001, 50, seed=3, rank=r, world_size=2) for r in range(2)]
    assert set(ranks[0].shard.tolist()).isdisjoint(ranks[1].shard.tolist())
    assert len(ranks[0].shard) == len(ranks[1].shard) == 500 and ranks[0].sample_rate == 0.1


def private_task(conditional: bool, cond_d: str = "projection", **options):
    """The trainer's task and D under --dp-epsilon (D as the trainer holds it: contiguous weights, no batch norm)."""
    torch.manual_seed(0)
    options = {"augment": "none", **options}  # by-hand gradients need the same images as the clipped ones
    cfg = TrainConfig(width=4, dp_epsilon=8.0, conditional=conditional, cond_d=cond_d, **options).validate()
    return ConditionalGenerationTask(cfg, 1, 8, DIGITS) if conditional else GenerationTask(cfg, 1, 8)


def real_batch(task, n: int) -> dict:
    """A batch as the trainer makes it: channels_last images in [-1, 1], with classes for a conditional task."""
    gen, size = torch.Generator().manual_seed(1), task.model["resolution"]
    real = (torch.rand(n, 1, size, size, generator=gen) * 2 - 1).contiguous(memory_format=torch.channels_last)
    if isinstance(task, ConditionalGenerationTask):
        return task.make_batch(real, gen, labels=torch.randint(10, (n,), generator=gen), public_fakes=4)
    return task.make_batch(real, gen, public_fakes=4)


def one_image(batch: dict, i: int) -> dict:
    return {**batch, "real": batch["real"][i : i + 1],
            **({"real_labels": batch["real_labels"][i : i + 1]} if "real_labels" in batch else {})}


@pytest.mark.parametrize("conditional, cond_d", [(False, None), (True, "projection"), (True, "acgan")])
def test_each_image_gradient_is_clipped_to_the_bound(conditional, cond_d):
    """Against per-image gradients computed independently of Opacus, one backward pass per image: each image's
    gradient is scaled to norm min(norm, C), and the update is their sum over the expected batch."""
    task = private_task(conditional, cond_d or "projection")
    d, batch = task.nets["discriminator"], real_batch(task, 6)
    params = list(d.parameters())
    by_hand = [torch.autograd.grad(task.discriminator_real_losses(d, one_image(batch, i)).sum(), params)
               for i in range(6)]
    norms = torch.stack([torch.sqrt(sum(g.pow(2).sum() for g in grads)) for grads in by_hand])
    bound = float(norms.median())  # half the images are clipped, half are not
    private = PrivateDiscriminatorGradient(d, 0.0, bound, expected_batch=3, sample_rate=0.5, seed=0)
    for i in range(6):  # one image alone: its clipped gradient
        got = private.real_gradient(lambda: task.discriminator_real_losses(d, one_image(batch, i)), 1, update=i)
        norm = torch.sqrt(sum((3 * g).pow(2).sum() for g in got))
        assert norm == pytest.approx(min(float(norms[i]), bound), rel=1e-4)
        assert norm <= bound * (1 + 1e-5)
    expected = [sum(g[k] * min(1.0, bound / float(n)) for g, n in zip(by_hand, norms)) / 3 for k in range(len(params))]
    got = private.real_gradient(lambda: task.discriminator_real_losses(d, batch), 6, update=6)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in params)  # the unclipped sum autograd left is not left for the optimiser
    assert private.history == [[0.0, 0.5, 7]]  # 6 single images and one batch



def test_each_image_loss_reads_only_its_image_even_augmented():
    """Clipping bounds one record's influence only if no image's loss depends on another image: true of the
    private D (no batch norm) with DiffAugment's per-image draws, and false of the default D (the check can fail)."""
    def influence(task) -> torch.Tensor:
        """[i, j]: how much image j moves the loss of image i."""
        batch = real_batch(task, 5)
        real = batch["real"].detach().requires_grad_(True)
        losses = task.discriminator_real_losses(task.nets["discriminator"], {**batch, "real": real})
        return torch.stack([torch.autograd.grad(losses[i], real, retain_graph=True)[0].abs().flatten(1).sum(1)
                            for i in range(5)])

    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    private = influence(private_task(False, augment="color,translation,cutout"))
    assert (private.diagonal() > 0).all() and (private[off_diagonal] == 0).all()
    torch.manual_seed(0)
    plain = GenerationTask(TrainConfig(width=4).validate(), 1, 16)  # batch norm in D: every loss reads every image
    assert (influence(plain)[off_diagonal] > 0).all()


def test_channels_last_weights_are_refused():
    """Opacus's per-image gradients of channels_last convolution weights were measured wrong."""
    d = DCGANDiscriminator(8, 1, 4, norm="group").to(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="contiguous"):
        PrivateDiscriminatorGradient(d, 1.0, 1.0, expected_batch=4, sample_rate=0.1, seed=0)


def test_noise_std_is_sigma_times_c_on_rank_zero_only():
    d = DCGANDiscriminator(16, 1, 16, norm="group")  # ~9k weights: the std to within 1% (3 sigma: 2.2%)
    sigma, c, batch = 2.0, 0.5, 8
    private = PrivateDiscriminatorGradient(d, sigma, c, expected_batch=batch, sample_rate=0.1, seed=1)
    noise = torch.cat([g.flatten() for g in private.real_gradient(None, 0, update=5)]) * batch  # no image drawn
    assert noise.numel() > 8_000
    assert noise.std().item() == pytest.approx(sigma * c, rel=0.03) and abs(noise.mean().item()) < 0.05
    again = torch.cat([g.flatten() for g in private.real_gradient(None, 0, update=5)]) * batch
    assert torch.equal(noise, again)  # seeded by the update: a resumed run adds the same noise
    other = PrivateDiscriminatorGradient(DCGANDiscriminator(16, 1, 16, norm="group"), sigma, c, expected_batch=batch,
                                         sample_rate=0.1, seed=1, rank=1, world_size=2)
    assert all(not g.any() for g in other.real_gradient(None, 0, update=5))
    assert private.history == [[sigma, 0.1, 2]]  # every update counts, even one without images


# ---------------------------------------------------------------------------- options and side doors
def test_private_defaults_turn_off_what_reads_real_images():
    plain, private = TrainConfig(), TrainConfig(dp_epsilon=8.0)
    assert (plain.r1_gamma, plain.eval_every) == (0.2, 1000)
    assert (private.r1_gamma, private.eval_every) == (0.0, 0)
    assert (plain.discriminator_norm, private.validate().discriminator_norm) == ("batch", "group")
    assert TrainConfig(loss="wgan-gp").discriminator_norm == "none"


@pytest.mark.parametrize("flags, message", [
    (["--r1-gamma", "0.5"], "--r1-gamma: 0.5 is refused with --dp-epsilon: R1 penalises"),
    (["--loss", "wgan-gp"], "--loss: 'wgan-gp' is refused with --dp-epsilon: WGAN-GP's penalty"),
    (["--augment", "translation", "--augment-target", "0.6"], "--augment-target: 0.6 is refused with --dp-epsilon: ADA"),
    (["--eval-every", "100"], "--eval-every: 100 is refused with --dp-epsilon: the in-training checks"),
    (["--spectral-norm"], "--spectral-norm: True is refused with --dp-epsilon"),
    (["--compile"], "--compile: True is refused with --dp-epsilon: D's per-image gradients come from Opacus's hooks"),
    (["--dp-delta", "0.01"], "--dp-delta: 0.01 is not below 1/200"),
    (["--dp-epsilon", "-1"], "--dp-epsilon: must be positive"),
    (["--dp-epsilon", "0.01", "--steps", "500"], "--dp-epsilon: 0.01 is too small for 500 updates"),
    (["--dp-max-grad-norm", "0"], "--dp-max-grad-norm: must be positive"),
])
def test_side_doors_and_bad_budgets_are_refused_in_one_line(tmp_path, refused, flags, message):
    refused(dp_args(tmp_path / "run", *flags), message, tmp_path)


def test_fp16_is_refused():  # CUDA's only: refused before any device is looked at
    with pytest.raises(UserError, match="--precision: 'fp16' is refused with --dp-epsilon: fp16's loss scaler"):
        TrainConfig(dp_epsilon=8.0, precision="fp16").validate()


def test_without_opacus_the_run_is_refused_in_one_line(tmp_path, refused, monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)  # as if it were not installed: its import fails
    refused(dp_args(tmp_path / "run"), "--dp-epsilon: needs Opacus; pip install 'ganforge[privacy]'", tmp_path)


def test_dp_options_need_dp_epsilon():
    with pytest.raises(UserError, match="--dp-delta: only applies with --dp-epsilon"):
        TrainConfig(dp_delta=1e-6).validate()


def test_conditional_private_batch_asks_public_classes():
    task = private_task(True)
    real, labels = torch.zeros(5, 1, 8, 8), torch.full((5,), 3)
    batch = task.make_batch(real, torch.Generator().manual_seed(0), labels=labels, public_fakes=400)
    assert torch.equal(batch["real_labels"], labels) and batch["z"].shape[0] == 400
    counts = torch.bincount(batch["labels"], minlength=10)
    assert counts.min() > 20  # uniform over the classes, not the real batch's one class
    assert task.discriminator_real_losses(task.nets["discriminator"], batch).shape == (5,)  # one per (image, label)


# ---------------------------------------------------------------------------- runs
def test_private_run_records_epsilon_everywhere_and_no_real_figures(tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level("INFO", logger="ganforge"):
        assert main(dp_args(run, "--steps", "6")) == 0
    assert "D's batch norm is replaced by group norm" in caplog.text and "privacy spent: epsilon" in caplog.text
    logged = records(run)
    assert [r["step"] for r in logged] == list(range(1, 7))
    epsilons = [r["dp_epsilon"] for r in logged]
    assert epsilons == sorted(epsilons) and 7.9 < epsilons[-1] <= 8.0 and logged[-1]["dp_delta"] == 1e-5
    assert not {"loss_d", "d_real", "r1"} & set().union(*logged)  # figures of the real images would leak them
    model, config = saved_privacy(run), yaml.safe_load((run / "config.yaml").read_text())
    assert model["epsilon"] == epsilons[-1] == config["environment"]["privacy"]["epsilon"]
    sigma = privacy.noise_multiplier_for(8.0, 1e-5, 16 / 200, 6)
    assert model["history"] == [[sigma, 16 / 200, 6]] and model["discriminator_updates"] == 6
    assert model["epsilon"] == privacy.epsilon_spent([[sigma, 16 / 200, 6]], 1e-5)  # what the accountant says
    assert model["delta"] == config["environment"]["privacy"]["delta"] == 1e-5
    assert config["r1_gamma"] == 0 and config["eval_every"] == 0
    d_keys = [k for k in checkpoint(run) if k.startswith("net.discriminator.")]
    assert d_keys and not any("running_mean" in k for k in d_keys)  # no batch norm in a private D: group norm


def test_interrupted_private_run_resumes_with_the_same_budget(tmp_path, monkeypatch):
    """Stopped (as by Ctrl-C) after 2 of 4 steps, then resumed: the same weights, accountant history and epsilon
    as 4 straight steps."""
    from ganforge.training.trainer import Trainer

    straight, split_run = tmp_path / "straight", tmp_path / "split"
    assert main(dp_args(straight, "--steps", "4")) == 0
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_any_rank_says", lambda self, local: local or self.step == 2)  # a stop request at 2
        assert main(dp_args(split_run, "--steps", "4")) == 130
    assert records(split_run)[-1]["step"] == 2 and saved_privacy(split_run)["history"][0][2] == 2
    assert main(["train", "--out", str(split_run), "--resume"]) == 0
    a, b = checkpoint(straight), checkpoint(split_run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop_speed = lambda run: [{k: v for k, v in r.items() if k != "img_per_s"} for r in records(run)]  # noqa: E731
    assert drop_speed(split_run) == drop_speed(straight)  # every line, the epsilon of each step included
    assert saved_privacy(split_run) == saved_privacy(straight)
    assert saved_privacy(straight)["history"][0][1:] == [16 / 200, 4]


def test_run_stops_with_a_checkpoint_where_the_budget_ends_and_refuses_to_go_on(tmp_path, monkeypatch, caplog, capsys,
                                                                                refused):
    """A run whose noise affords only 5 of its 10 updates (as one resumed for more steps) stops after 5, with a
    checkpoint; resumed, it is refused before anything is written."""
    from ganforge.training import trainer

    real = privacy.noise_multiplier_for
    monkeypatch.setattr(trainer, "noise_multiplier_for", lambda eps, delta, rate, updates: real(eps, delta, rate, 5))
    run = tmp_path / "run"
    with caplog.at_level("WARNING", logger="ganforge"):
        assert main(dp_args(run, "--steps", "10")) == 0
    assert "privacy budget: another step would spend more than --dp-epsilon 8; stopped at step 5 of 10" in caplog.text
    assert records(run)[-1] == {"step": 5, "event": "privacy_budget_spent"}
    assert checkpoint_meta(run / "checkpoints" / "last.safetensors")["step"] == 5
    saved = saved_privacy(run)
    assert saved["discriminator_updates"] == 5 and saved["epsilon"] <= 8.0
    assert privacy.epsilon_spent(saved["history"] + [[saved["noise_multiplier"], saved["sample_rate"], 1]], 1e-5) > 8.0
    capsys.readouterr()  # the run's progress bar
    refused(["train", "--out", str(run), "--resume"], "the privacy budget --dp-epsilon 8 is spent at step 5", run)


def test_a_run_planned_within_budget_cannot_be_resumed_for_more_steps(tmp_path, capsys, refused):
    run = tmp_path / "run"
    assert main(dp_args(run, "--steps", "4")) == 0
    capsys.readouterr()
    refused(["train", "--out", str(run), "--resume", "--steps", "8"], "the privacy budget --dp-epsilon 8 is spent at "
            "step 4", run)


def test_private_training_from_a_prepared_cache_draws_the_same_poisson_batches(tmp_path):
    """Streamed from an on-disk cache (read ahead by the prefetcher), a private run draws the same Poisson
    samples as from memory: the same weights."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / c / f"{i}.png")
    prepare_cache(folder, 8, tmp_path / "cache", workers=1, progress=False)
    args = ["--width", "4", "--batch-size", "8", "--dp-epsilon", "8", "--steps", "4", "--conditional"]
    assert main(["train", "--data", str(folder), "--resolution", "8", "--out", str(tmp_path / "memory"), *args]) == 0
    assert main(["train", "--data", str(tmp_path / "cache"), "--out", str(tmp_path / "streamed"), *args]) == 0
    a, b = checkpoint(tmp_path / "memory"), checkpoint(tmp_path / "streamed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert saved_privacy(tmp_path / "memory")["sample_rate"] == 8 / 40


def test_conditional_private_run_and_membership_in_evaluate(tmp_path):
    """A conditional (AC-GAN) private run; `evaluate`'s LOGAN AUC is scikit-learn's AUC of the checkpoint's D
    scoring the run's 200 training digits (with their classes) against the 1597 held out, computed here by hand."""
    run, out = tmp_path / "run", tmp_path / "report.json"
    assert main(dp_args(run, "--steps", "3", "--conditional", "--cond-d", "acgan")) == 0
    assert main(["evaluate", str(run), "--metrics", "fid,memorization,membership", "--n", "50", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["membership"]["members"] == 200 and report["membership"]["nonmembers"] == 1597
    assert "copying_z" in report["memorization"] and report["privacy"] == {"epsilon": saved_privacy(run)["epsilon"],
                                                                           "delta": 1e-5}
    model = json.loads((run / "model" / "config.json").read_text())
    d = build_discriminator(model, norm="group", cond_d="acgan")
    prefix = "net.discriminator."
    d.load_state_dict({k[len(prefix):]: v for k, v in checkpoint(run).items() if k.startswith(prefix)})
    d.eval()
    train, held = split(load_imageset("digits", 8, 1), 200)
    with torch.no_grad():
        scores = [d(uint8_to_float(s.images), s.labels).numpy() for s in (train, held)]
    expected = roc_auc_score([1] * 200 + [0] * 1597, np.concatenate(scores))
    assert report["membership"]["auc"] == pytest.approx(expected, abs=1e-12)


def test_membership_needs_a_run_with_held_out_images(tmp_path, small_args):
    run = tmp_path / "plain"
    assert main(small_args(run, "--steps", "2")) == 0
    from ganforge.pipelines.evaluation import evaluate

    with pytest.raises(UserError, match="membership: needs held-out real images"):
        evaluate(run, metrics=["membership"])


# ---------------------------------------------------------------------------- LOGAN
def test_membership_auc_is_the_mann_whitney_statistic():
    members, others = torch.tensor([3.0, 1.0, 2.0, 2.0]), torch.tensor([0.0, 2.0, 1.5])
    # 12 pairs: member > other in 9 (3: all 3; 1: > 0 only; 2, 2: > 0 and 1.5, tie with 2 each) + ties 2 x 0.5.
    assert membership_auc(members, others) == pytest.approx((3 + 1 + 2 + 2 + 0.5 + 0.5) / 12)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, generator=gen) + 0.3, torch.randn(500, generator=gen)
    u = mannwhitneyu(a.numpy(), b.numpy()).statistic
    assert membership_auc(a, b) == pytest.approx(u / (300 * 500), rel=1e-12)
    assert membership_auc(a, b) == roc_auc_score([1] * 300 + [0] * 500, torch.cat([a, b]).double().numpy())
    assert membership_auc(b[:300], a) < 0.5 < membership_auc(a, b[:300])


def test_top_half_accuracy_and_scores():
    assert top_half_accuracy(torch.tensor([5.0, 4.0, 0.0]), torch.tensor([3.0, 1.0, 2.0])) == pytest.approx(2 / 3)
    torch.manual_seed(0)
    d = DCGANDiscriminator(8, 1, 4, norm="group").eval()
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        expected = d(images.float() / 127.5 - 1)
    torch.testing.assert_close(discriminator_scores(d, images, batch_size=3), expected)
    report = logan_attack(expected[:4], expected[4:])
    assert report["members"] == 4 and report["nonmembers"] == 6
