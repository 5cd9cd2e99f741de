"""Differentially private training of the discriminator (DP-SGD), as in DPGAN and GS-WGAN.

What is private, and why only D's update needs noise: the generator never reads a real image;
its gradient comes through D's weights, and the fakes it makes come from its weights and public
noise. So if every update of D is (epsilon, delta)-DP, everything computed from the sequence of
D's weights is too, by post-processing: G, its EMA (a function of G's trajectory), sample grids
of generated images, the exported model. Each D update is DP-SGD (Abadi et al. 2016):

- **Poisson sampling**: each training image joins an update independently with probability
  q = batch_size / images (per process: its fixed shard of the data), so the batch's size is
  random. This is the sampling Opacus's RDP accountant assumes. The fakes of an update are a fixed
  number (the expected batch) of classes drawn uniformly: the real batch's size and classes are private.
- **Per-image clipping**: Opacus's GradSampleModule computes the gradient of D's loss on each real
  image (with its class, for a conditional D: a label is part of its image's record); each is
  scaled to an L2 norm of at most C (`--dp-max-grad-norm`). An image whose gradient is not finite
  counts as a zero gradient (norm 0, within the bound), so that no step is skipped on its account.
- **Gaussian noise** of std sigma x C is added once to the sum of clipped gradients, which is
  divided by the expected batch size; D's loss on the fakes, which reads no data, adds its
  ordinary gradient. D has group norm where the DCGAN has batch norm (config.discriminator_norm).
- **Accounting**: Opacus's RDP accountant composes the updates; sigma is chosen with Opacus's
  `get_noise_multiplier` so that the planned updates (steps x n_critic) spend at most the target
  epsilon at delta. Its history (noise, rate, count) is saved in each checkpoint as JSON, so a
  resumed run continues it. Every update that ran is counted, including those of steps that a
  non-finite G loss undid and those retried after a rollback (their noise was different).
- **torchrun**: each image lies in one process's shard; each process sums its clipped gradients,
  process 0 alone adds the noise, and the sum over processes is divided by the expected global
  batch. Adding or removing one image changes that sum by at most C, as in one process, and the
  sampling rate of every image is q: the accounting is unchanged.

What the guarantee does not cover: the run directory itself (checkpoints hold D, config.yaml the
seed, metrics.jsonl only figures of the fakes and epsilon). The noise is drawn from a generator
seeded from (seed, update), like every other draw, so that runs reproduce and resume exactly, as
Opacus does without `secure_mode`: the guarantee holds against whoever sees the released model
but not the run's seed. The number of training images is treated as public (it sets q).
"""

import functools
import math
import warnings

import torch
from torch import nn

from ganforge.errors import UserError

ACCOUNTANT = "rdp"  # Opacus's Renyi-DP accountant, which assumes Poisson sampling
# Opacus's note when the best Renyi order is its largest: the bound holds, it is only not the tightest. Its default
# orders are kept so that every epsilon here is the one Opacus itself computes.
LARGEST_ALPHA = "Optimal order is the largest alpha"
NOISE_SEED_STRIDE = 7_777_777  # noise draws apart from the step's other draws


def require_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise UserError("--dp-epsilon: needs Opacus; pip install 'ganforge[privacy]' (or opacus)") from None


@functools.lru_cache(maxsize=16)  # Opacus's search takes seconds; runs in one process often ask the same
def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, updates: int) -> float:
    """The noise (std / C) with which `updates` Poisson-sampled updates at rate q spend at most `epsilon`; 0 for inf."""
    if math.isinf(epsilon):
        return 0.0
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=LARGEST_ALPHA)
            return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=updates, accountant=ACCOUNTANT))
    except ValueError as e:  # Opacus: "The privacy budget is too low."
        raise UserError(f"--dp-epsilon: {epsilon:g} is too small for {updates} updates at sampling rate {sample_rate:.4g} "
                        f"and delta {delta:g} ({e}); train fewer steps or on more images") from None


def epsilon_spent(history: list, delta: float) -> float:
    """The epsilon at `delta` of a run's accountant history [(noise multiplier, sample rate, updates), ...].

    Opacus's RDPAccountant.get_epsilon, computed as it does (the RDP of one update at each of its default
    orders, times the updates, summed over the history, then converted at delta), with the RDP of one
    update at (noise, rate) kept: Opacus recomputes it on every call, which took 0.3 s, at every log line.
    """
    if not history:
        return 0.0
    if any(sigma == 0 for sigma, _, _ in history):
        return math.inf
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import get_privacy_spent

    rdp = sum([rdp_of_one_update(float(sigma), float(rate)) * int(n) for sigma, rate, n in history])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=LARGEST_ALPHA)
        return float(get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)[0])


@functools.lru_cache(maxsize=64)
def rdp_of_one_update(sigma: float, sample_rate: float):
    """The Renyi DP of one Poisson-sampled Gaussian update at Opacus's default orders (a numpy array)."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    return compute_rdp(q=sample_rate, noise_multiplier=sigma, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS)


def updates_within_budget(history: list, sigma: float, sample_rate: float, delta: float, epsilon: float) -> int:
    """How many more updates at (sigma, q) keep the run's epsilon at most `epsilon` (a binary search)."""
    if math.isinf(epsilon):
        return 2**62

    def fits(k: int) -> bool:
        return epsilon_spent([*history, (sigma, sample_rate, k)] if k else history, delta) <= epsilon

    if not fits(0):
        return 0
    hi = 1
    while fits(hi):
        hi *= 2
        if hi > 2**40:
            return hi
    lo = hi // 2  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


class PoissonSampler:
    """The real images of each D update: every image of this process's shard joins with probability q, from a
    generator seeded by (seed, update, rank), so that a resumed run draws the same batches."""

    def __init__(self, num_images: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.shard = torch.arange(rank, num_images - num_images % world_size, world_size)  # one process per image
        self.sample_rate = batch_size / len(self.shard)
        self.seed, self.rank = seed, rank

    def indices(self, update: int) -> torch.Tensor:
        rng = torch.Generator().manual_seed((self.seed * 1_000_003 + update) * 1_009 + self.rank)
        return self.shard[torch.rand(len(self.shard), generator=rng) < self.sample_rate]


def without_inplace_activations(module: nn.Module) -> None:
    """Opacus's backward hooks refuse an in-place activation after a hooked layer; the same values, not in place."""
    for m in module.modules():
        if getattr(m, "inplace", False):
            m.inplace = False


class PrivateDiscriminatorGradient:
    """D's DP-SGD gradient: per-image gradients (Opacus), clipping, noise, and the accountant's history.

    D's weights must be in the default (contiguous) memory format: Opacus's convolution gradients were
    measured wrong, silently, for channels_last weights (tests/test_privacy.py checks the trainer's D).
    """

    def __init__(self, discriminator: nn.Module, noise_multiplier: float, max_grad_norm: float, expected_batch: int,
                 sample_rate: float, seed: int, rank: int = 0, world_size: int = 1, history: list | None = None):
        from opacus import GradSampleModule

        # Opacus's hooks on D fire in every backward pass through it (real images, fakes, G's loss), where no input
        # needs a gradient, which is as it should be; PyTorch would warn about that at every step of the run.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        without_inplace_activations(discriminator)
        self.params = [p for p in discriminator.parameters() if p.requires_grad]
        if any(p.dim() == 4 and not p.is_contiguous() for p in self.params):
            raise ValueError("DP-SGD needs D's weights in the contiguous memory format, not channels_last")
        self.grad_sample = GradSampleModule(discriminator, loss_reduction="sum")
        self.grad_sample.disable_hooks()  # on only for the real images' pass: fakes and G's loss need no per-image grads
        self.noise_multiplier, self.max_grad_norm = noise_multiplier, max_grad_norm
        self.expected_batch, self.sample_rate = expected_batch, sample_rate
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.history: list = [list(h) for h in history or []]

    @property
    def updates(self) -> int:
        return sum(int(n) for _, _, n in self.history)

    def _count_update(self) -> None:
        """As Opacus's accountant does: consecutive updates at the same (noise, rate) are one entry."""
        if self.history and self.history[-1][:2] == [self.noise_multiplier, self.sample_rate]:
            self.history[-1][2] += 1
        else:
            self.history.append([self.noise_multiplier, self.sample_rate, 1])

    def _clipped_sum(self, losses) -> list[torch.Tensor]:
        """The sum over images of each one's gradient of its loss, scaled to an L2 norm of at most C.

        `losses()` runs D and returns one loss per image; Opacus's hooks record each image's gradient in
        the one backward pass. An image whose gradient is not finite counts as zero (norm 0, within the bound).
        """
        self.grad_sample.enable_hooks()
        try:
            values = losses()
            values.sum().backward()
        finally:
            self.grad_sample.disable_hooks()
        # A weight the losses do not use has no per-image gradient: zero.
        per_image = [torch.zeros(len(values), *p.shape, device=p.device) if getattr(p, "grad_sample", None) is None
                     else p.grad_sample.float() for p in self.params]
        for p in self.params:
            p.grad, p.grad_sample = None, None  # the unclipped sum autograd left is never used
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_image]).norm(dim=0)
        finite = torch.isfinite(norms)
        scale = torch.where(finite, (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0), torch.zeros_like(norms))
        return [torch.einsum("i,i...->...", scale, torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)).to(p.dtype)
                for g, p in zip(per_image, self.params)]

    def real_gradient(self, real_losses, num_real: int, update: int) -> list[torch.Tensor]:
        """This process's share of the private gradient of D's loss on real images, one tensor per parameter.

        `real_losses()` returns D's loss on each real image of the batch (`num_real` of them, maybe none).
        The shares of all processes sum to (sum of clipped gradients + noise) / expected global batch.
        """
        summed = self._clipped_sum(real_losses) if num_real else [torch.zeros_like(p) for p in self.params]
        if self.rank == 0 and self.noise_multiplier > 0:
            rng = torch.Generator().manual_seed(self.seed * 1_000_003 + update + NOISE_SEED_STRIDE)
            std = self.noise_multiplier * self.max_grad_norm
            for total in summed:
                total += (std * torch.randn(total.shape, generator=rng, dtype=torch.float32)).to(total.device, total.dtype)
        self._count_update()
        return [total / (self.expected_batch * self.world_size) for total in summed]

    def epsilon(self, delta: float) -> float:
        return epsilon_spent(self.history, delta)
