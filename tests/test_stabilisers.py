"""Losses, penalties, augmentation, EMA and the non-finite guard of the evaluation issue."""

import json
import math
from pathlib import Path

import pytest
import torch

from ganforge.diffaugment import diff_augment, parse_policy
from ganforge.cli import main
from ganforge.config import TrainConfig
from ganforge.errors import UserError
from ganforge.losses import ADVERSARIAL_LOSSES, gradient_penalty, r1_penalty
from ganforge.training.ema import EMA

REAL, FAKE = [2.0, -1.0], [0.5, -3.0]


@pytest.mark.parametrize(
    "name, expected_d, expected_g",
    [
        ("hinge", (max(0, 1 - 2) + max(0, 1 + 1)) / 2 + (max(0, 1 + 0.5) + max(0, 1 - 3)) / 2, -(0.5 - 3) / 2),
        ("lsgan", 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 3**2) / 2, 0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2),
        ("wgan-gp", (0.5 - 3) / 2 - (2 - 1) / 2, -(0.5 - 3) / 2),
    ],
)
def test_losses_match_hand_computation(name, expected_d, expected_g):
    d_loss, g_loss = ADVERSARIAL_LOSSES[name]
    assert math.isclose(d_loss(torch.tensor(REAL), torch.tensor(FAKE)).item(), expected_d, rel_tol=1e-6)
    assert math.isclose(g_loss(torch.tensor(FAKE)).item(), expected_g, rel_tol=1e-6)


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = w·x has gradient w everywhere, so the penalty is (|w| - 1)² exactly."""
    w = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    critic = lambda x: (x * w).sum(dim=(1, 2, 3))  # noqa: E731
    real, fake = torch.randn(5, 2, 1, 1), torch.randn(5, 2, 1, 1)
    assert math.isclose(gradient_penalty(critic, real, fake).item(), (5.0 - 1.0) ** 2, rel_tol=1e-6)


def test_penalties_see_one_score_per_image_of_a_patch_critic():
    """A patch critic's map is averaged per image: the penalty does not grow with the number of patches."""
    w1, w2 = torch.tensor([1.0, 2.0, 0.0, 0.0]), torch.tensor([3.0, 0.0, 0.0, 4.0])
    patches = lambda x: torch.stack([x.flatten(1) @ w1, x.flatten(1) @ w2], dim=1)  # noqa: E731  (N, 2 patches)
    real = torch.randn(5, 1, 2, 2, requires_grad=True)
    expected = ((w1 + w2) / 2).pow(2).sum()
    assert torch.allclose(r1_penalty(patches(real), real), expected)
    fake = torch.randn(5, 1, 2, 2)
    assert math.isclose(gradient_penalty(patches, real, fake).item(), (expected.sqrt().item() - 1) ** 2, rel_tol=1e-5)


def test_r1_penalty_of_a_quadratic_critic():
    """D(x) = Σx² has gradient 2x, so R1 = E[Σ(2x)²] = 4 E[Σx²]."""
    real = torch.randn(6, 1, 2, 2, requires_grad=True)
    logits = real.pow(2).sum(dim=(1, 2, 3))
    expected = 4 * real.detach().pow(2).sum(dim=(1, 2, 3)).mean()
    assert torch.allclose(r1_penalty(logits, real), expected)


def test_r1_penalty_has_gradients_for_d():
    d = torch.nn.Conv2d(1, 1, 3, padding=1)
    real = torch.randn(4, 1, 8, 8, requires_grad=True)
    r1_penalty(d(real).sum(dim=(1, 2, 3)), real).backward()
    assert d.weight.grad is not None and d.weight.grad.abs().sum() > 0


def test_diff_augment_keeps_shape_and_gradient():
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = diff_augment(x, parse_policy("color,translation,cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(UserError, match="--augment"):
        parse_policy("color,blur")


def test_cutout_blanks_a_quarter_and_translation_moves():
    torch.manual_seed(0)
    x = torch.ones(8, 1, 16, 16)
    from ganforge.diffaugment import cutout, translation

    zeros = (cutout(x) == 0).float().mean(dim=(1, 2, 3))
    assert ((zeros > 0) & (zeros <= 0.25)).all()
    moved = translation(torch.arange(256.0).view(1, 1, 16, 16).repeat(8, 1, 1, 1))
    assert not torch.equal(moved, torch.arange(256.0).view(1, 1, 16, 16).repeat(8, 1, 1, 1))


def test_ema_averages_weights():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=1000)  # decay 0.5 once warmed up
    assert torch.allclose(ema.model.weight, start + 0.5)


def test_ema_blends_every_parameter_and_copies_buffers_with_the_warm_up_decay():
    """avg <- avg + (1 - d)(p - avg) with d = min(decay, (1 + step) / (10 + step)), per tensor, by hand."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Linear(4, 2))
    ema = EMA(model, decay=0.999)
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(5, 2, 6, 6))  # training mode: the batch-norm running statistics move
    ema.update(model, step=20)
    d = 21 / 30
    for name, p in model.named_parameters():
        assert torch.allclose(ema.model.state_dict()[name], d * before[name] + (1 - d) * p, atol=1e-6), name
    for name, b in model.named_buffers():
        assert torch.equal(ema.model.state_dict()[name], b), name


def test_ema_statistics_are_the_plain_mean_over_batches_of_its_own_activations():
    """Running mean = mean of the batches' means, running variance = mean of their unbiased variances, both of the
    average's own layer outputs; then eval mode and the old momentum (an exponential average would fail here)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        ema.model[0].weight.mul_(3.0)  # the average differs from the live model, whose statistics it holds
    model(torch.randn(8, 2, 4, 4) + 5)
    ema.update(model, step=1000)
    batches = [torch.randn(6, 2, 5, 5) * (i + 1) + i for i in range(5)]
    feed = iter(batches)
    ema.recompute_statistics(lambda net: net(next(feed)), batches=len(batches))
    with torch.no_grad():
        outputs = [ema.model[0](x) for x in batches]
    bn = ema.model[1]
    assert torch.allclose(bn.running_mean, torch.stack([y.mean((0, 2, 3)) for y in outputs]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([y.var((0, 2, 3)) for y in outputs]).mean(0), rtol=1e-5)
    assert int(bn.num_batches_tracked) == len(batches)
    assert not ema.model.training and bn.momentum == 0.1
    assert not torch.allclose(model[1].running_mean, bn.running_mean)  # the live model's are left alone


def test_exported_generator_normalises_with_statistics_of_its_own_weights(tmp_path, small_args):
    """The EMA generator a run exports: each batch norm's running mean and variance are what its input shows on
    fresh noise (4096 other latents), not the live generator's statistics, which a lagging average does not share."""
    from safetensors.torch import load_file

    from ganforge.pipelines.sampling import load_generator

    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "30", "--ema-decay", "0.9", "--lr", "0.002")) == 0
    generator, model = load_generator(run / "model", "cpu")
    norms = {name: m for name, m in generator.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    seen = {}
    for name, m in norms.items():  # a copy: the ReLU after each norm works in place
        m.register_forward_pre_hook(lambda m, inputs, name=name: seen.setdefault(name, inputs[0].clone()))
    with torch.no_grad():
        generator(torch.randn(4096, model["latent_dim"], generator=torch.Generator().manual_seed(99)))
    live = load_file(str(run / "checkpoints" / "last.safetensors"))
    live_error = {}
    for name, bn in norms.items():
        own_mean, own_var = seen[name].mean((0, 2, 3)), seen[name].var((0, 2, 3))
        assert ((bn.running_mean - own_mean).abs() / own_var.sqrt()).max() < 0.05, name
        assert ((bn.running_var / own_var).log().abs()).max() < 0.1, name
        live_error[name] = ((live[f"net.generator.{name}.running_mean"] - own_mean).abs() / own_var.sqrt()).max()
    assert max(live_error.values()) > 0.2  # the live statistics would have failed the first check


@pytest.mark.parametrize(
    "extra",
    [
        ["--loss", "hinge", "--spectral-norm"],
        ["--loss", "lsgan", "--ema-decay", "0.9"],
        ["--loss", "wgan-gp", "--n-critic", "2"],
        ["--r1-gamma", "1", "--r1-every", "2", "--lr-d", "0.0004", "--lr-g", "0.0001"],
        ["--augment", "color,translation,cutout"],
        ["--topk", "0.5"],
    ],
)
def test_every_stabiliser_trains_and_resumes(tmp_path, small_args, extra):
    run = tmp_path / "run"
    assert main(small_args(run, "--steps", "4", *extra)) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in records)
    assert main(small_args(run, "--steps", "6", "--resume", *extra)) == 0


@pytest.mark.parametrize("adaptive", [[], ["--augment-target", "0.01"]])
def test_resume_is_exact_with_ema_and_augmentation(tmp_path, small_args, adaptive):
    from safetensors.torch import load_file

    extra = ["--ema-decay", "0.99", "--augment", "color,translation", "--r1-gamma", "0.5", "--r1-every", "2", *adaptive]
    assert main(small_args(tmp_path / "a", "--steps", "6", *extra)) == 0
    assert main(small_args(tmp_path / "b", "--steps", "3", *extra)) == 0
    assert main(small_args(tmp_path / "b", "--steps", "6", "--resume", *extra)) == 0
    a = load_file(str(tmp_path / "a" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "last.safetensors"))
    assert any(k.startswith("net.generator_ema.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adaptive_augmentation_probability():
    from ganforge.diffaugment import AdaptiveProbability

    ada = AdaptiveProbability(target=0.6, interval=2, speed_images=100)
    assert ada.p == 0
    for _ in range(4):
        ada.update(torch.full((10,), 3.0))  # D sure that every real image is real: overfitting
    assert ada.p == pytest.approx(0.4)  # two adjustments of 20 images / 100
    for _ in range(20):
        ada.update(-torch.ones(10))
    assert ada.p == 0  # clamped at 0
    fixed = AdaptiveProbability(target=0)
    fixed.update(torch.ones(10))
    assert fixed.p == 1
    restored = AdaptiveProbability(target=0.6)
    ada.update(torch.ones(10))
    restored.load_state(ada.state())
    assert restored.state() == ada.state()


def test_diff_augment_probability():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    policy = parse_policy("color")
    assert torch.equal(diff_augment(x, policy, 0.0), x)
    changed = (diff_augment(x, policy, 0.5) != x).flatten(1).any(dim=1).float().mean()
    assert 0.3 < changed < 0.7


def test_fixed_augmentation_probability_option():
    from ganforge.adversarial import AdversarialObjective

    objective = AdversarialObjective.from_config(TrainConfig(augment="color", augment_p=0.3))
    objective.augment_p.update(torch.ones(10))
    assert objective.augment_p.p == 0.3  # fixed: D's confidence does not move it
    assert AdversarialObjective.from_config(TrainConfig(augment="color", augment_target=0.6)).augment_p.p == 0  # adaptive
    with pytest.raises(UserError, match="--augment-p"):
        TrainConfig(augment_p=0).validate()


def make_trainer(tmp_path, **options):
    from ganforge.tasks.generation import GenerationTask
    from ganforge.training.distributed import DistInfo
    from ganforge.training.trainer import Trainer

    options = {"data": "digits", "resolution": 8, "width": 8, "batch_size": 8, "checkpoint_every": 5,
               "sample_every": 1000, "log_every": 1, "steps": 20, **options}
    cfg = TrainConfig(**options)
    torch.manual_seed(cfg.seed)  # the networks' initial weights, as `ganforge train` seeds them, whatever ran before
    task = GenerationTask(cfg, 1, cfg.resolution)
    images = torch.randint(0, 256, (64, 1, cfg.resolution, cfg.resolution), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    (tmp_path / "checkpoints").mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, task, images, tmp_path, torch.device("cpu"), torch.float32, DistInfo())


def poison(trainer, which: str, steps: set[int]):
    """Make D's (or G's) loss NaN at the given steps, the first time each is reached (a rollback retries them)."""
    objective = trainer.task.adversarial_objective
    name = "d_loss_fn" if which == "d" else "g_loss_fn"
    real_loss, left = getattr(objective, name), set(steps)

    def loss(*args):
        value = real_loss(*args)
        if trainer.step in left:
            left.discard(trainer.step)
            return value * float("nan")
        return value

    setattr(objective, name, loss)


def everything(trainer) -> dict[str, torch.Tensor]:
    """Every tensor a step may change: weights, buffers, EMA and both optimisers' state."""
    from ganforge.training.checkpoint import save_checkpoint
    from safetensors.torch import load_file

    path = trainer.run_dir / "probe.safetensors"
    save_checkpoint(path, trainer.checkpointed_nets, {"generator": trainer.opt_g, "discriminator": trainer.opt_d}, {})
    return load_file(str(path))


@pytest.mark.parametrize("which", ["d", "g"])
@pytest.mark.parametrize("n_critic", [1, 2])
def test_a_nonfinite_step_is_skipped_whole(tmp_path, which, n_critic):
    """D's loss or G's: nothing changes, not D's update before G's loss, batch-norm statistics, Adam state or EMA."""
    trainer = make_trainer(tmp_path, resolution=16, n_critic=n_critic, augment="color", augment_target=0.6)
    for step in range(3):  # the optimisers have state, EMA has moved
        trainer.train_step(step)
    trainer.step = 3
    poison(trainer, which, {3})
    before, augment = everything(trainer), trainer.task.adversarial_objective.augment_p.state()
    assert trainer.train_step(3)["skipped"] == 1
    after = everything(trainer)
    assert before.keys() == after.keys() and any(k.startswith("optim.discriminator.") for k in after)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert trainer.task.adversarial_objective.augment_p.state() == augment
    assert trainer.train_step(3)["skipped"] == 0  # not poisoned twice: a good step changes the weights
    assert not torch.equal(before["net.discriminator.main.0.weight"], everything(trainer)["net.discriminator.main.0.weight"])


def test_nonfinite_steps_are_skipped_and_roll_back(tmp_path, caplog):
    trainer = make_trainer(tmp_path, nan_patience=3)
    poison(trainer, "d", {7, 8, 9})  # steps 7, 8, 9 give NaN once: skipped, then a rollback to step 5
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    with caplog.at_level("WARNING", logger="ganforge"):
        trainer.fit()
    assert "rolled back to the checkpoint of step 5" in caplog.text
    assert trainer.rollbacks == 1 and trainer.step == 20
    assert all(torch.isfinite(p).all() for p in trainer.generator.parameters())
    assert any(not torch.equal(before[k], v) for k, v in trainer.generator.state_dict().items())
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 5, "event": "rollback", "from_step": 10} in events
    timeline = [e for e in events if "event" not in e]  # the rolled-back steps' lines were replaced
    assert [e["step"] for e in timeline] == list(range(1, 21))
    assert all(math.isfinite(e["loss_d"]) and e["skipped"] == 0 for e in timeline)


def test_no_checkpoint_inside_a_nonfinite_streak(tmp_path, caplog):
    """The checkpoint due at step 10 falls in the streak: it waits for the first good step, so the
    rollback goes back to before the streak (step 5), not into it."""
    trainer = make_trainer(tmp_path, nan_patience=10)
    poison(trainer, "g", {9})
    saved = []
    save = trainer.save_checkpoint
    trainer.save_checkpoint = lambda: (saved.append(trainer.step), save())
    trainer.fit()
    assert saved == [5, 11, 15, 20]

    trainer = make_trainer(tmp_path / "rollback", nan_patience=3)
    poison(trainer, "g", {9, 10, 11})
    with caplog.at_level("WARNING", logger="ganforge"):
        trainer.fit()
    assert "at step 12: rolled back to the checkpoint of step 5" in caplog.text


@pytest.mark.parametrize("which", ["d", "g"])
def test_resume_after_a_rollback_is_exact(tmp_path, which):
    """Straight through a rollback, or stopped after it and resumed: the same weights, bit for bit
    (the retried steps' seeds and the rollback count come back from the checkpoint)."""
    straight = make_trainer(tmp_path / "straight", nan_patience=3)
    poison(straight, which, {7, 8, 9})
    straight.fit()
    stopped = make_trainer(tmp_path / "split", nan_patience=3, steps=12)
    poison(stopped, which, {7, 8, 9})
    stopped.fit()
    assert stopped.rollbacks == 1
    resumed = make_trainer(tmp_path / "split", nan_patience=3)
    resumed.resume()
    assert resumed.step == 12 and resumed.rollbacks == 1
    resumed.fit()
    a, b = everything(straight), everything(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_persistent_divergence_stops_with_a_clear_error(tmp_path):
    trainer = make_trainer(tmp_path, nan_patience=2)
    trainer.task.adversarial_objective.d_loss_fn = lambda real, fake: (real.mean() + fake.mean()) * float("inf")
    with pytest.raises(UserError, match="training diverged"):
        trainer.fit()


def test_the_fp16_loss_scale_survives_a_resume(tmp_path):
    """The GradScaler only runs for CUDA fp16; one enabled on the CPU stands in for it here."""
    trainer = make_trainer(tmp_path)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    trainer.scaler._growth_tracker = torch.tensor(3, dtype=torch.int32)  # steps since the scale last changed
    trainer.save_checkpoint()
    resumed = make_trainer(tmp_path)
    resumed.scaler = torch.amp.GradScaler("cpu")
    assert resumed.resume()
    assert resumed.scaler.state_dict() == trainer.scaler.state_dict()
    assert resumed.scaler.get_scale() == 1024.0


def test_logged_metrics_reach_the_disk_before_the_checkpoint_commits(tmp_path, monkeypatch):
    import ganforge.training.trainer as trainer_module

    events = []
    monkeypatch.setattr(trainer_module, "fsync", lambda path: events.append(("fsync", Path(path).name)))
    real_save = trainer_module.save_checkpoint
    monkeypatch.setattr(trainer_module, "save_checkpoint", lambda *a: (events.append(("checkpoint",)), real_save(*a)))
    trainer = make_trainer(tmp_path)
    trainer._log({"step": 0, "loss_d": 1.0})
    trainer.save_checkpoint()
    assert events == [("fsync", "metrics.jsonl"), ("checkpoint",)]


def test_top_k_training_learns_only_from_the_fakes_d_rates_most_real():
    from ganforge.adversarial import AdversarialObjective

    logits = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0, 0.0, -0.5, 4.0])
    critic = lambda fake: logits  # noqa: E731 - D's verdict on 8 fakes, whatever they are
    best_half = torch.tensor([4.0, 2.0, 1.0, 0.5])  # sorted by hand
    floor_half, floor_03 = AdversarialObjective("bce", topk=0.5), AdversarialObjective("bce", topk=0.3)
    assert floor_half.generator_loss(critic, torch.zeros(8), epoch=1000).item() == pytest.approx(
        float(torch.log1p(torch.exp(-best_half)).mean()), rel=1e-6)
    assert floor_03.generator_loss(critic, torch.zeros(8), epoch=1000).item() == pytest.approx(
        float(torch.log1p(torch.exp(-best_half[:3])).mean()), rel=1e-6)  # ceil(0.3 * 8) = 3
    every_fake = float(torch.log1p(torch.exp(-logits)).mean())
    assert floor_half.generator_loss(critic, torch.zeros(8), epoch=0).item() == pytest.approx(every_fake, rel=1e-6)
    assert AdversarialObjective("bce").generator_loss(critic, torch.zeros(8), epoch=1000).item() == pytest.approx(
        every_fake, rel=1e-6)


def test_top_k_share_shrinks_by_one_percent_per_epoch_down_to_the_floor():
    from ganforge.adversarial import AdversarialObjective

    objective = AdversarialObjective("bce", topk=0.5)
    assert objective.kept_share(0) == 1.0
    assert objective.kept_share(1) == pytest.approx(0.99)
    assert objective.kept_share(39) == pytest.approx(0.99 ** 39)
    assert objective.kept_share(200) == 0.5  # 0.99 ** 200 = 0.13 is below the floor
    assert AdversarialObjective("bce").kept_share(10**6) == 1.0


@pytest.mark.parametrize("conditional", [False, True])
def test_generation_tasks_count_top_k_epochs_in_steps(conditional):
    from ganforge.tasks.conditional import ConditionalGenerationTask
    from ganforge.tasks.generation import GenerationTask

    cfg = TrainConfig(topk=0.5, width=8)
    task = (ConditionalGenerationTask(cfg, 1, 28, ["a", "b"], steps_per_epoch=78) if conditional
            else GenerationTask(cfg, 1, 28, steps_per_epoch=78))
    seen = []
    task.adversarial_objective.generator_loss = lambda critic, fake, epoch: seen.append(epoch) or torch.zeros(())
    batch = {"labels": torch.zeros(4, dtype=torch.long)}
    task.generator_loss(None, batch, torch.zeros(4, 1, 28, 28), 39 * 78)
    assert seen == [pytest.approx(39)]


def test_top_k_epochs_are_counted_as_epochs_counts_them():
    """With n_critic D updates per step, a step reads n_critic batches: top-k's epoch is the one --epochs counts."""
    from ganforge.training.distributed import DistInfo
    from ganforge.training.run import generation_defaults, generation_setup
    from ganforge.training.trainer import total_steps

    cfg = TrainConfig(data="digits", topk=0.5, n_critic=5, width=8, eval_every=0, epochs=1).validate()
    generation_defaults(cfg)
    task, images, _, _ = generation_setup(cfg, DistInfo())
    assert task.steps_per_epoch == pytest.approx(len(images) // 64 / 5)  # 1797 digits: 28 updates, 5.6 steps
    assert task.steps_per_epoch == pytest.approx(total_steps(cfg, len(images), 1), abs=0.5)


def test_d_gets_the_gradient_of_its_loss_plus_lazy_r1_backpropagated_apart(tmp_path):
    """R1 is backpropagated on its own before D's loss (half the memory); D's optimiser must still see the gradient
    of L_D + 0.5 gamma k R1 on R1 steps, as one fused backward gives it, and of L_D alone on the others."""
    import copy

    trainer = make_trainer(tmp_path, resolution=16, r1_gamma=2.0, r1_every=4, augment="none", ema_decay=0.0)
    d, objective, seen = trainer.discriminator, trainer.task.adversarial_objective, {}
    loss_fn, step_fn = trainer.task.discriminator_loss, trainer.opt_d.step

    def recording_loss(critic, batch, fake, step):
        seen.update(real=batch["real"].clone(), fake=fake.detach().clone(), d=copy.deepcopy(d))
        return loss_fn(critic, batch, fake, step)

    def recording_step(*args, **kwargs):
        seen["grads"] = [p.grad.clone() for p in d.parameters()]
        return step_fn(*args, **kwargs)

    trainer.task.discriminator_loss, trainer.opt_d.step = recording_loss, recording_step
    for step, with_r1 in [(0, True), (1, False), (2, False), (4, True)]:
        stats = trainer.train_step(step)
        assert ("r1" in stats) == with_r1
        critic, real = seen["d"], seen["real"].requires_grad_(True)
        real_logits = critic(real).float()
        loss = objective.d_loss_fn(real_logits, critic(seen["fake"]).float())
        if with_r1:
            loss = loss + 0.5 * 2.0 * 4 * r1_penalty(real_logits, real)
        expected = torch.autograd.grad(loss, list(critic.parameters()))
        for got, want in zip(seen["grads"], expected, strict=True):
            assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
