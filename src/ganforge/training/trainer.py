"""The one trainer: D and G updated in turn, for every task.

A task supplies networks (`task.nets`: a generator, and a discriminator unless it is never
adversarial, as the fast style network is; CycleGAN's pairs are one module each), batches
(`make_batch`), the generator's forward (`generate`: an image batch, or a dict of them), its two losses, whether a step is adversarial (`adversarial`: super-resolution's
first phase is not), the model folders a checkpoint exports (`exports`; `phase_ends` are steps
that must be checkpointed), its preview grid (`preview_inputs`, `preview_grid`) and, where G has batch
norm, G's inputs to measure the EMA generator's statistics on (`standing_inputs`). The trainer
owns everything else: optimisers, mixed precision, DDP under torchrun, sample grids, metrics,
checkpoints and exact resume. With `--dp-epsilon` D's updates are DP-SGD (training/privacy.py):
Poisson-sampled batches, per-image clipping, noise, and a privacy budget the run stops at.

Reproducibility: every random draw of step `s` on rank `r` comes from a seed derived from
(seed, s, r), and the data order of epoch `e` from (seed, e). A resumed run therefore needs only
the step number (and the rollback count, which shifts the seeds of retried steps), and N + N
resumed steps equal 2N straight ones on the CPU, even when the run was killed mid-write.
"""

import contextlib
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ganforge.data.cache import CachedCrops, ImageCache
from ganforge.imageio import save_image, uint8_to_float
from ganforge.saved_model import save_model
from ganforge.training.checkpoint import load_checkpoint, save_checkpoint
from ganforge.device import autocast
from ganforge.atomic import atomic_path, fsync, remove_leftovers
from ganforge.errors import UserError
from ganforge.training.distributed import DistInfo, data_parallel
from ganforge.training.ema import EMA
from ganforge.training.privacy import (PoissonSampler, PrivateDiscriminatorGradient, noise_multiplier_for,
                                       require_opacus, updates_within_budget)
from ganforge.training.prefetch import Prefetcher
from ganforge.viz import plot_losses

log = logging.getLogger("ganforge")
DEVICE_DATA_LIMIT = 1 << 30  # data sets smaller than this live on the accelerator as uint8
ROLLBACK_SEED_STRIDE = 1_000_000  # steps retried after rollback k draw from seed + k * this
# Training-size batches of G's inputs that the EMA generator's batch-norm statistics are measured on. With 4 of
# them a depth-3 mnist5k model's FID ranged 2.8-8.4 over two draws of its inputs; with 32, 3.2-4.0 (with 100, 3.3-3.6).
STANDING_BATCHES = 32


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 1_009 + rank


def learning_rate_factor(schedule: str, step: int, total: int) -> float:
    """The share of --lr that step `step` of `total` trains with: 1 throughout (none), or a half cosine from 1 at the
    first step towards 0 after the last (cosine). A function of the step alone, so a resumed run is exact."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total))
    return 1.0


def epoch_share(seed: int, epoch: int, num_images: int, rank: int, world_size: int, count: int) -> torch.Tensor:
    """The data indices rank `rank` reads in epoch `epoch`, in order: every world_size-th index of the epoch's
    seeded permutation, from the rank-th on, cut to `count`. The ranks' shares are disjoint, and together
    hold every image once when `count` x world_size is the whole set."""
    perm = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed * 7_919 + epoch))
    return perm[rank::world_size][:count]


def updates_per_epoch(batch_size: int, num_images: int, world_size: int) -> int:
    """D updates in one pass over each process's share of the data (n_critic of them make one step)."""
    per_rank = num_images // world_size
    return per_rank // min(batch_size, per_rank)


def total_steps(cfg, num_images: int, world_size: int) -> int:
    """The run's length in steps: `--steps`, or `--epochs` passes over each process's share of the data."""
    if cfg.steps is not None:
        return cfg.steps
    return max(1, round(cfg.epochs * updates_per_epoch(cfg.batch_size, num_images, world_size) / cfg.n_critic))


class StepUndo:
    """A copy of what a step changes, taken before it, so that a step found bad half-way is undone whole.

    G's loss is computed after D's update (as in pytorch/examples), so a non-finite G loss is known
    only once D has stepped; and forward passes in training mode move both nets' batch-norm
    statistics (and spectral norm's vectors) even in a step that is then skipped. The copies are
    allocated once and refreshed with one `torch._foreach_copy_` per step.
    A task with no discriminator has only G's buffers to keep.
    """

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module | None,
                 opt_d: torch.optim.Optimizer | None, augment_p):
        self.generator, self.discriminator, self.opt_d, self.augment_p = generator, discriminator, opt_d, augment_p
        self.live: list[torch.Tensor] = []
        self.copies: list[torch.Tensor] = []

    def _tensors(self) -> list[torch.Tensor]:
        if self.discriminator is None:
            return [*self.generator.buffers()]
        states = [self.opt_d.state[p] for p in self.discriminator.parameters() if p in self.opt_d.state]
        adam = [state[key] for state in states for key in sorted(state) if torch.is_tensor(state[key])]  # in a fixed order
        return [*self.discriminator.parameters(), *self.discriminator.buffers(), *self.generator.buffers(), *adam]

    @torch.no_grad()
    def save(self) -> None:
        self.live, self.augment = self._tensors(), None if self.augment_p is None else self.augment_p.state()
        self.had_adam_state = self.opt_d is not None and bool(self.opt_d.state)
        if self.live and len(self.copies) == len(self.live):  # (a net with no buffers and no D has nothing to copy)
            torch._foreach_copy_(self.copies, self.live)
        else:  # the first step, or the first after Adam created its state
            self.copies = [t.clone() for t in self.live]

    @torch.no_grad()
    def restore(self) -> None:
        if self.live:
            torch._foreach_copy_(self.live, self.copies)
        if self.opt_d is not None and not self.had_adam_state:
            self.opt_d.state.clear()  # D had never stepped: Adam starts afresh, as it would have
        if self.augment_p is not None:
            self.augment_p.load_state(self.augment)


def detached(fake: torch.Tensor | dict[str, torch.Tensor]):
    """G's output cut from G's graph for D's step: one image batch, or a task's dict of them (CycleGAN's)."""
    return {k: v.detach() for k, v in fake.items()} if isinstance(fake, dict) else fake.detach()


@contextlib.contextmanager
def frozen(module: torch.nn.Module | None):
    """Stop gradients into `module`'s weights (they are not needed in the other network's step)."""
    if module is None:
        yield
        return
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class Trainer:
    def __init__(self, cfg, task, images: torch.Tensor | ImageCache | CachedCrops, run_dir: Path, device: torch.device,
                 dtype: torch.dtype, dist: DistInfo, monitor=None, labels: torch.Tensor | None = None):
        self.cfg, self.task, self.run_dir, self.device, self.dtype, self.dist = cfg, task, Path(run_dir), device, dtype, dist
        self.monitor = monitor  # called with the sampling generator every eval_every steps, on rank 0
        private = cfg.dp_epsilon is not None
        for name, net in task.nets.items():
            # channels_last: measured 1.5x faster transposed convolutions on the CPU, and what GPUs' tensor cores want;
            # but Opacus's per-image gradients of channels_last convolution weights are wrong (training/privacy.py).
            private_d = private and name == "discriminator"
            net.to(device, memory_format=torch.contiguous_format if private_d else torch.channels_last)
        self.generator, self.discriminator = task.nets["generator"], task.nets.get("discriminator")
        if dist.enabled:  # under DP-SGD, D's gradients are summed over processes by its private update, not by DDP
            self.ddp_generator = data_parallel(self.generator, device)
            self.ddp_discriminator = None if self.discriminator is None or private else data_parallel(self.discriminator, device)
        else:
            self.ddp_generator, self.ddp_discriminator = self.generator, self.discriminator
        # foreach: one multi-tensor kernel per update instead of a Python loop over the weights. On the CPU PyTorch
        # picks the loop by default; foreach gives the same weights bit for bit, twice as fast at 28 px.
        adam = dict(betas=(cfg.beta1, cfg.beta2), foreach=True)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g or cfg.lr, **adam)
        self.opt_d = None if self.discriminator is None else torch.optim.Adam(
            self.discriminator.parameters(), lr=cfg.lr_d or cfg.lr, **adam)
        self.optimizers = {"generator": self.opt_g, **({"discriminator": self.opt_d} if self.opt_d is not None else {})}
        self.base_lr = {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}
        # ADA's probability belongs to the adversarial objective, which a task with no discriminator does not have.
        self.augment_p = None if self.discriminator is None else task.adversarial_objective.augment_p
        self.ema = EMA(self.generator, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.ema_statistics_step = None  # the step whose EMA weights the EMA's batch-norm statistics were measured on
        if cfg.compile and not hasattr(torch.compiler, "set_stance"):
            raise UserError(f"--compile needs torch 2.6 or later (this is {torch.__version__})")
        if cfg.compile:
            # In place, after the EMA's copy (a copy of a compiled module would call the original's weights), so
            # that state dicts, checkpoints and exported models keep their names; sampling copies stay eager.
            for net in task.nets.values():
                net.compile()
        self.nonfinite_in_a_row, self.rollbacks = 0, 0
        self.undo = StepUndo(self.generator, self.discriminator, self.opt_d, self.augment_p)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        # The data: a uint8 tensor indexed in place (on the accelerator when small), or a cache on disk, whose
        # batches a background thread reads one update ahead.
        in_memory = isinstance(images, torch.Tensor)
        self.images = images.to(device) if in_memory and images.nbytes < DEVICE_DATA_LIMIT else images
        self.index_device = self.images.device if in_memory else torch.device("cpu")
        self.labels = None if labels is None else labels.to(self.index_device)  # for tasks that need classes
        per_rank = len(images) // dist.world_size
        self.batch_size = min(cfg.batch_size, per_rank)
        if self.batch_size < cfg.batch_size and dist.is_main:
            log.warning("--batch-size %d is more than the %d images each process has; using %d", cfg.batch_size, per_rank, self.batch_size)
        self.updates_per_epoch = updates_per_epoch(cfg.batch_size, len(images), dist.world_size)
        self.total_steps = total_steps(cfg, len(images), dist.world_size)
        self._perm_epoch, self._perm = -1, None
        self.sampler, self.private = (self._private_setup(len(images)) if private else (None, None))
        self.prefetch = None if in_memory else Prefetcher(images.read, self.batch_indices, self.total_steps * cfg.n_critic)
        preview = task.preview_inputs(cfg.grid_size, cfg.seed)  # noise, crops, or a batch dict (noise and classes)
        self.preview_inputs = {k: v.to(device) for k, v in preview.items()} if isinstance(preview, dict) else preview.to(device)
        self.history: list[dict] = []
        self.step = 0

    def _private_setup(self, num_images: int) -> tuple[PoissonSampler, PrivateDiscriminatorGradient]:
        """Poisson sampling and D's private gradient, with the noise that spends `--dp-epsilon` over the planned
        updates (a resumed run takes the noise it started with from its checkpoint)."""
        require_opacus()
        cfg = self.cfg
        if cfg.dp_delta * num_images >= 1:
            raise UserError(f"--dp-delta: {cfg.dp_delta:g} is not below 1/{num_images} (one over the training images): "
                            "such a delta allows leaking a whole image; choose a smaller one")
        sampler = PoissonSampler(num_images, self.batch_size, cfg.seed, self.dist.rank, self.dist.world_size)
        planned = self.total_steps * cfg.n_critic
        sigma = noise_multiplier_for(cfg.dp_epsilon, cfg.dp_delta, sampler.sample_rate, planned)
        private = PrivateDiscriminatorGradient(self.discriminator, sigma, cfg.dp_max_grad_norm, self.batch_size,
                                               sampler.sample_rate, cfg.seed, self.dist.rank, self.dist.world_size)
        return sampler, private

    def privacy_report(self) -> dict:
        """What the accountant says the run has spent so far, for the model's config.json and the checkpoint."""
        return {"epsilon": self.private.epsilon(self.cfg.dp_delta), "delta": self.cfg.dp_delta,
                "target_epsilon": self.cfg.dp_epsilon, "accountant": "opacus rdp", "sampling": "poisson",
                "noise_multiplier": self.private.noise_multiplier, "sample_rate": self.private.sample_rate,
                "max_grad_norm": self.cfg.dp_max_grad_norm, "discriminator_updates": self.private.updates,
                "history": self.private.history}

    def privacy_end_step(self) -> int:
        """The last step whose D updates fit in the budget (or `total_steps`): a run planned to spend at most
        --dp-epsilon ends at total_steps; one resumed for more steps stops here."""
        if self.private is None:
            return self.total_steps
        more = updates_within_budget(self.private.history, self.private.noise_multiplier, self.private.sample_rate,
                                     self.cfg.dp_delta, self.cfg.dp_epsilon)
        return min(self.total_steps, self.step + more // self.cfg.n_critic)

    def check_privacy_budget(self) -> None:
        """Refuse to resume a run whose budget is spent before its next step (so a resumed run cannot spend more)."""
        if self.private is not None and self.step < self.total_steps and self.privacy_end_step() <= self.step:
            raise UserError(f"--steps: the privacy budget --dp-epsilon {self.cfg.dp_epsilon:g} is spent at step "
                            f"{self.step} (epsilon {self.private.epsilon(self.cfg.dp_delta):.3f} at delta "
                            f"{self.cfg.dp_delta:g}); another step would exceed it. Start a new run for more training")

    # ------------------------------------------------------------------ data
    def batch_indices(self, update: int) -> torch.Tensor:
        """The data indices of D update `update`: a slice of this rank's shard of epoch e's permutation, or in
        differentially private training a Poisson sample of this rank's shard."""
        if self.sampler is not None:
            return self.sampler.indices(update).to(self.index_device)
        epoch, i = divmod(update, self.updates_per_epoch)
        if epoch != self._perm_epoch:
            share = epoch_share(self.cfg.seed, epoch, len(self.images), self.dist.rank, self.dist.world_size,
                                self.updates_per_epoch * self.batch_size)
            self._perm_epoch, self._perm = epoch, share.to(self.index_device)
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]

    def real_batch(self, update: int) -> torch.Tensor:
        """The real images of D update `update`."""
        pixels = self.images[self.batch_indices(update)] if self.prefetch is None else self.prefetch.batch(update)
        real = uint8_to_float(pixels.to(self.device, non_blocking=True))
        return real.contiguous(memory_format=torch.channels_last)

    def batch_labels(self, update: int) -> torch.Tensor:
        """The classes of the images of `real_batch(update)`."""
        return self.labels[self.batch_indices(update)].to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One G update after `n_critic` D updates; a non-finite loss anywhere skips the whole step."""
        adversarial, ok, stats = self.task.adversarial(step), True, {}
        factor = learning_rate_factor(self.cfg.lr_decay, step, self.total_steps)
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lr[name] * factor
        self.undo.save()
        for i in range(self.cfg.n_critic if adversarial else 1):
            update = step * self.cfg.n_critic + i
            seed = step_seed(self.cfg.seed + self.seed_offset, update, self.dist.rank)
            torch.manual_seed(seed)  # dropout, augmentation and other draws inside the step
            rng = torch.Generator().manual_seed(seed)
            extra = {} if self.labels is None else {"labels": self.batch_labels(update)}
            if self.private is not None:
                extra["public_fakes"] = self.batch_size  # G's inputs must not depend on the private batch
            batch = self.task.make_batch(self.real_batch(update), rng, **extra)
            with autocast(self.device, self.dtype):
                fake = self.task.generate(self.ddp_generator, batch)
            if self.private is not None:
                ok, stats = self._private_d_update(batch, detached(fake), update)
            elif adversarial:
                # (1) Update D: maximise log D(x) + log(1 - D(G(z))), i.e. minimise L_D (+ R1 when due).
                ok, stats = self._backward_d_penalty(batch, update)
                if ok:
                    with autocast(self.device, self.dtype):
                        loss_d, d_stats = self.task.discriminator_loss(self.ddp_discriminator, batch, detached(fake), update)
                    stats = {"loss_d": loss_d.detach(), **d_stats, **stats}
                    ok = self._update(self.opt_d, loss_d, keep_grads=True)
            if not ok:
                break

        # (2) Update G: maximise log D(G(z)), i.e. minimise L_G = -log D(G(z)); D's weights stay fixed.
        with frozen(self.discriminator), autocast(self.device, self.dtype):
            loss_g, g_stats = self.task.generator_loss(self.discriminator, batch, fake, step)
        ok = ok and self._update(self.opt_g, loss_g)
        if not ok:
            self.undo.restore()  # D's updates of this step, both nets' batch-norm statistics, ADA's p
        elif self.ema is not None:
            self.ema.update(self.generator, step)
        return {**stats, "loss_g": loss_g.detach(), **g_stats, "skipped": torch.tensor(float(not ok))}

    def _private_d_update(self, batch: dict, fake: torch.Tensor, update: int) -> tuple[bool, dict]:
        """(1) Update D by DP-SGD: the private gradient of its loss on real images (clipped per image, noised)
        plus the ordinary gradient of its loss on fakes. Only figures of the fakes are logged: D's loss on real
        images would leak them. Skipped (False) only if the fakes' loss is not finite, before any real image is read.
        """
        self.opt_d.zero_grad(set_to_none=True)
        with autocast(self.device, self.dtype):
            loss_fake, stats = self.task.discriminator_fake_loss(self.discriminator, batch, fake)
        if not self._all_finite(loss_fake):
            return False, {}
        real = self.private.real_gradient(lambda: self.task.discriminator_real_losses(self.discriminator, batch),
                                          len(batch["real"]), update)  # in fp32: clipping needs exact norms
        loss_fake.backward()
        for p, share in zip(self.private.params, real):
            p.grad = share if p.grad is None else p.grad / self.dist.world_size + share
            if self.dist.enabled:
                torch.distributed.all_reduce(p.grad)
        self.opt_d.step()
        return True, {"loss_d_fake": loss_fake.detach(), **stats}

    def _all_finite(self, loss: torch.Tensor) -> bool:
        finite = torch.isfinite(loss.detach()).float()
        if self.dist.enabled:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item())

    def _backward_d_penalty(self, batch: dict, update: int) -> tuple[bool, dict]:
        """Clear D's gradients, then backpropagate its lazy R1 penalty when due, before D's loss is computed
        (`AdversarialObjective.r1_loss` says why); False if it is not finite on some rank.

        It runs through D itself, not its DDP wrapper: R1's gradient skips some weights (the last bias, batch
        norm's shifts), which DDP would wait for. Like a backward under DDP's `no_sync`, it stays in D's `.grad`,
        and the loss's backward through DDP averages the sum over the ranks.
        """
        self.opt_d.zero_grad(set_to_none=True)
        with autocast(self.device, self.dtype):
            penalty, stats = self.task.discriminator_penalty(self.discriminator, batch, update)
        if penalty is None:
            return True, {}
        return (True, stats) if self._backward(penalty) else (False, {})

    def _backward(self, loss: torch.Tensor) -> bool:
        """Backpropagate `loss` (scaled for fp16) if it is finite on every rank; else report False, and the step's
        gradients are not to be used.

        Under DDP a skipped loss still gets a backward of nothing: DDP has waited for it since its forward, and left
        waiting it would take the next backward through these weights outside DDP, D's R1 penalty, for its own, and
        stop half-way through the weights R1 does not reach.
        """
        if self._all_finite(loss):
            self.scaler.scale(loss).backward()
            return True
        if self.dist.enabled and loss.requires_grad:
            (loss.nan_to_num() * 0).backward()
        return False

    def _update(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, keep_grads: bool = False) -> bool:
        """One optimiser step, skipped (and reported False) if the loss is not finite on any rank. With `keep_grads`
        the loss's gradient is added to what an earlier backward left (D's penalty); else that is cleared first."""
        if not keep_grads:
            optimizer.zero_grad(set_to_none=True)
        if not self._backward(loss):
            optimizer.zero_grad(set_to_none=True)
            return False
        self.scaler.step(optimizer)
        self.scaler.update()
        return True

    def _guard_nonfinite(self) -> bool:
        """After `nan_patience` skipped steps in a row, roll back to the last checkpoint (and say so).

        A run that diverges again and again stops with a clear message instead of writing garbage.
        """
        self.nonfinite_in_a_row += 1
        if self.nonfinite_in_a_row < self.cfg.nan_patience:
            return False
        last = self.run_dir / "checkpoints" / "last.safetensors"
        if self.rollbacks >= 3 or not last.exists():
            where = "three rollbacks did not help" if last.exists() else "no checkpoint to roll back to"
            raise UserError(f"training diverged: non-finite losses for {self.nonfinite_in_a_row} steps in a row at step "
                            f"{self.step} ({where}); try a lower --lr, --spectral-norm or --r1-gamma")
        failed_at, rollbacks = self.step, self.rollbacks + 1
        self.resume(rollback=True)
        self.nonfinite_in_a_row, self.rollbacks = 0, rollbacks  # the run's count, not the checkpoint's
        log.warning("non-finite losses for %d steps in a row at step %d: rolled back to the checkpoint of step %d (rollback %d of 3)",
                    self.cfg.nan_patience, failed_at, self.step, self.rollbacks)
        self._log({"step": self.step, "event": "rollback", "from_step": failed_at})
        return True

    @property
    def seed_offset(self) -> int:
        """Rolled-back steps are retried with other random draws, or the same divergence would repeat."""
        return ROLLBACK_SEED_STRIDE * self.rollbacks

    # ------------------------------------------------------------------ the loop
    def fit(self) -> None:
        """Train up to `total_steps`. Ctrl-C (or SIGTERM) ends the step under way, checkpoints, then stops.

        No checkpoint is written inside a streak of skipped (non-finite) steps, so that a rollback
        goes back to before the streak: one that falls due waits for the next good step. A run that
        ends, or ends a phase, inside a streak is checkpointed all the same (a skipped step changes
        nothing, so the weights are the last good ones); one stopped inside a streak is not (resuming
        replays the steps since the last checkpoint exactly).
        """
        is_main = self.dist.is_main
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", disable=not is_main, dynamic_ncols=True)
        t0, images_seen, checkpoint_due = time.perf_counter(), 0, False
        deadline = time.monotonic() + 60 * self.cfg.max_minutes if self.cfg.max_minutes else None
        privacy_end = self.privacy_end_step()
        try:
            with self._stop_requests() as stop:
                while self.step < self.total_steps:
                    if self._any_rank_says(bool(stop)):
                        self._checkpoint_unless_in_streak()
                        raise KeyboardInterrupt
                    if self.step >= privacy_end:
                        log.warning("privacy budget: another step would spend more than --dp-epsilon %g; stopped at "
                                    "step %d of %d with a checkpoint", self.cfg.dp_epsilon, self.step, self.total_steps)
                        self._log({"step": self.step, "event": "privacy_budget_spent"})
                        self.save_samples()
                        self.save_checkpoint()
                        break
                    if deadline is not None and self._any_rank_says(time.monotonic() > deadline):
                        log.info("--max-minutes %.3g reached at step %d", self.cfg.max_minutes, self.step)
                        self.save_samples()
                        self._checkpoint_unless_in_streak()
                        break
                    figures = self.train_step(self.step)
                    self.step += 1
                    images_seen += self.batch_size * self.dist.world_size
                    bar.update(1)
                    if not figures["skipped"]:
                        self.nonfinite_in_a_row = 0
                    elif self._guard_nonfinite():
                        bar.n, checkpoint_due = self.step, False
                        privacy_end = self.privacy_end_step()  # the undone updates were spent all the same
                        continue
                    if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
                        elapsed = time.perf_counter() - t0
                        record = {"step": self.step, **{k: round(float(v), 5) for k, v in figures.items()},
                                  "img_per_s": round(images_seen / max(elapsed, 1e-9), 1)}
                        if self.private is not None:
                            record.update(dp_epsilon=self.private.epsilon(self.cfg.dp_delta), dp_delta=self.cfg.dp_delta)
                        t0, images_seen = time.perf_counter(), 0
                        self._log(record)
                        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k not in ("step", "img_per_s")})
                    if self.step % self.cfg.sample_every == 0 or self.step == self.total_steps:
                        self.save_samples()
                    if self.monitor is not None and self.step % self.cfg.eval_every == 0:
                        self._log({"step": self.step, **self.monitor(self.sampling_generator())})
                    checkpoint_due = checkpoint_due or self.step % self.cfg.checkpoint_every == 0
                    if ((checkpoint_due and not self.nonfinite_in_a_row) or self.step == self.total_steps
                            or self.step in self.task.phase_ends):
                        self.save_checkpoint()
                        checkpoint_due = False
        finally:
            bar.close()
            if self.prefetch is not None:
                self.prefetch.close()
        if self.private is not None and is_main:
            report = self.privacy_report()
            log.info("privacy spent: epsilon %.4g at delta %g (Opacus RDP accountant; %d D updates, noise multiplier "
                     "%.4g, Poisson sampling rate %.4g, clipping %g)", report["epsilon"], report["delta"],
                     report["discriminator_updates"], report["noise_multiplier"], report["sample_rate"],
                     report["max_grad_norm"])

    def _checkpoint_unless_in_streak(self) -> None:
        if self.nonfinite_in_a_row:
            log.warning("stopped inside a streak of non-finite steps: not checkpointed; --resume replays from the last checkpoint")
        else:
            self.save_checkpoint()

    def _any_rank_says(self, local: bool) -> bool:
        """Whether any rank wants to stop: all ranks must stop at the same step, or collectives would hang."""
        if not self.dist.enabled:
            return local
        flag = torch.tensor([float(local)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    @contextlib.contextmanager
    def _stop_requests(self):
        """A list that becomes non-empty on SIGINT/SIGTERM, so a step is never cut in half.

        A second Ctrl-C stops at once, as usual.
        """
        requests: list[int] = []
        if threading.current_thread() is not threading.main_thread():
            yield requests
            return

        def handler(signum, frame):
            requests.append(signum)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield requests
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # ------------------------------------------------------------------ files (rank 0 only)
    def _log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        self.history.append(record)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    @property
    def checkpointed_nets(self) -> dict[str, torch.nn.Module]:
        return {**self.task.nets, **({"generator_ema": self.ema.model} if self.ema else {})}

    def sampling_generator(self) -> torch.nn.Module:
        """The EMA copy where there is one: it is what samples, evaluations and exported models use.

        Its batch-norm statistics are measured on itself, once per step that needs them (training/ema.py), on the
        same seeded inputs every time: they are a function of its weights, so a resumed run exports the same model.
        They are not part of the training state: the next EMA update overwrites them.
        """
        if self.ema is None:
            return self.generator
        if self.ema_statistics_step != self.step:
            rng = torch.Generator().manual_seed(self.cfg.seed)

            def forward(generator: torch.nn.Module) -> None:
                inputs = self.task.standing_inputs(self.batch_size, rng)
                self.task.generate(generator, {k: v.to(self.device) for k, v in inputs.items()})

            self.ema.recompute_statistics(forward, STANDING_BATCHES)
            self.ema_statistics_step = self.step
        return self.ema.model

    @torch.no_grad()
    def save_samples(self) -> None:
        if not self.dist.is_main:
            return
        generator = self.sampling_generator()
        was_training = generator.training
        generator.eval()
        grid = self.task.preview_grid(generator, self.preview_inputs)
        generator.train(was_training)
        save_image(grid, self.run_dir / "samples" / f"step_{self.step:07d}.png")
        save_image(grid, self.run_dir / "samples" / "latest.png")
        plot_losses(self.history, self.run_dir / "losses.png")

    def _sync_buffers(self) -> None:
        """Batch-norm statistics updated outside DDP's forward can drift apart; take rank 0's."""
        if self.dist.enabled:
            for net in self.checkpointed_nets.values():
                for b in net.buffers():
                    torch.distributed.broadcast(b, 0)

    def save_checkpoint(self) -> None:
        """Export the model folder(s), then checkpoint: the checkpoint's step is the commit point, so a
        run killed in between resumes from the previous checkpoint and writes this step's models again.

        metrics.jsonl is flushed to disk first: a power cut after the commit keeps every line up to its step.
        The fp16 loss scale is saved too, so a resumed run does not relearn it from 65536 through skipped steps.
        """
        self._sync_buffers()
        if not self.dist.is_main:
            return
        if (self.run_dir / "metrics.jsonl").exists():
            fsync(self.run_dir / "metrics.jsonl")
        privacy = {} if self.private is None else {"privacy": self.privacy_report()}
        for folder, config in self.task.exports(self.step).items():
            save_model(self.run_dir / folder, {**config, **privacy}, {"generator": self.sampling_generator().state_dict()})
        scaler = {"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}  # only CUDA fp16 has one
        save_checkpoint(self.run_dir / "checkpoints" / "last.safetensors", self.checkpointed_nets,
                        self.optimizers,
                        {"step": self.step, "rollbacks": self.rollbacks,
                         **({"augment": self.augment_p.state()} if self.augment_p is not None else {}), **scaler,
                         **privacy})

    def init_generator(self, weights: dict[str, torch.Tensor]) -> None:
        """Start G, and its EMA, from given weights (fine-tuning) instead of a random initialisation."""
        self.generator.load_state_dict(weights)
        if self.ema is not None:
            self.ema.model.load_state_dict(weights)

    def resume(self, rollback: bool = False) -> bool:
        """Restore weights, optimisers, step and rollback count from the run's last checkpoint; trim later metrics.

        A run killed before its first checkpoint starts again from step 0 (this seed's initial
        weights, just built): False is returned. What a kill mid-write left behind is cleaned up:
        temporary files and folders, and a last metrics line cut short. The privacy accountant's
        history and noise are restored too, except in a `rollback`: the updates rolled back were spent;
        a run whose privacy budget is spent is refused before anything is cleaned up.
        """
        last = self.run_dir / "checkpoints" / "last.safetensors"
        if last.exists():
            meta = load_checkpoint(last, self.checkpointed_nets, self.optimizers)
            self.step, self.rollbacks = int(meta["step"]), int(meta.get("rollbacks", 0))
            if "augment" in meta and self.augment_p is not None:
                self.augment_p.load_state(meta["augment"])
            if "scaler" in meta and self.scaler.is_enabled():
                self.scaler.load_state_dict(meta["scaler"])
            if self.private is not None and not rollback:
                saved = meta["privacy"]
                self.private.history = [list(h) for h in saved["history"]]
                self.private.noise_multiplier = saved["noise_multiplier"]
                self.check_privacy_budget()  # before the clean-up below: a run whose budget is spent is left as it is
        elif self.dist.is_main:
            log.info("%s: no checkpoint yet (the run stopped before its first); starting again from step 0", self.run_dir)
        metrics = self.run_dir / "metrics.jsonl"
        self.history = [r for r in read_metrics(metrics) if r["step"] <= self.step]
        if self.dist.is_main:
            for folder in (self.run_dir, self.run_dir / "checkpoints", self.run_dir / "samples"):
                remove_leftovers(folder)
            if metrics.exists():
                with atomic_path(metrics) as tmp:
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        return last.exists()


def read_metrics(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl. A last line cut short (a kill mid-write) is dropped."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise UserError(f"{path}: line {i + 1} is not JSON; delete it to resume") from None
            log.warning("%s: dropped a last line cut short: %r", path, line[:60])
    return records
