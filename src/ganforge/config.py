"""The one place where a training option is spelled: a dataclass whose fields are the CLI flags.

`ganforge train --batch-size 32` sets `TrainConfig.batch_size`; configs/*.yaml and a run's
config.yaml use the same field names. Each field also says where `train --help` lists it
(`group`) and where it applies (`tasks`, `needs`), so that an option set where it does nothing
is refused rather than silently ignored.
"""

import dataclasses
import math
import types
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganforge.atomic import atomic_path
from ganforge.data.masks import MASK_KINDS
from ganforge.diffaugment import parse_policy
from ganforge.errors import UserError

# Every task, and what its generator maps from. An option's `tasks` names tasks or these kinds,
# so adding a task is one line here (plus its setup in training/run.py).
TASKS = {"generation": "noise", "superres": "image", "inpaint": "image", "style": "image", "translate": "image"}
# Sections of `ganforge train --help`, in order.
GROUPS = ("data", "networks", "losses and stabilisers", "optimisation", "privacy", "run and output")
DATA, NETS, LOSSES, OPTIM, PRIVACY, RUN = GROUPS
NOISE, SUPERRES, INPAINT, STYLE, TRANSLATE = ("noise",), ("superres",), ("inpaint",), ("style",), ("translate",)
ADVERSARIAL = ("generation", "superres", "inpaint", "translate")  # the tasks with a discriminator
DEFAULT_WIDTH = 64  # --width, except generation at 32 px or less (training/run.py's SMALL_IMAGE_WIDTH)


def option(default, help: str, group: str, tasks: tuple[str, ...] | None = None, needs: str | tuple | None = None,
           by_task: dict | None = None, private=None, **kwargs):
    """A config field with its CLI help text, its section of `train --help` and where it applies.

    `tasks`: the tasks (or kinds of task, see TASKS) it applies to; None: every task.
    `needs`: the option only does something when another is on: a field name (on: not False,
    0, None or "none"), or (field name, value).
    `by_task`: defaults that differ by task ({task: value}); the field is then None until the
    config is built, when it takes its task's default, or `default`, where the option applies.
    `private`: the default in differentially private training (--dp-epsilon), for an option on by default that
    would read real images outside the privacy accounting; set explicitly to anything else there, it is refused.
    """
    metadata = {"help": help, "group": group, "tasks": tasks, "needs": needs, "by_task": by_task, "base": default,
                "private": private, **kwargs}
    return field(default=None if by_task or private is not None else default, metadata=metadata)


@dataclass
class TrainConfig:
    data: str | None = option(None, "embedded set (mnist5k, digits, photos) or a folder of images (default: mnist5k; "
                                    "photos for --task superres and inpaint)", group=DATA)
    out: str = option("runs/ganforge", "run directory (config, checkpoints, samples, metrics)", group=RUN)
    max_images: int | None = option(None, "train on this many images of --data (a fixed seeded choice); the rest is held out "
                                    "for evaluation (the embedded photos always hold out the same four)", group=DATA)
    task: str = option("generation", "what is trained: generation (noise -> image), superres (image -> x2/x4 image), inpaint "
                       "(image with holes -> the full image), style (photo -> the photo in the style of --style; no "
                       "discriminator) or translate (CycleGAN: --data <-> --data-b, unpaired)",
                       group=NETS, choices=list(TASKS))
    arch: str = option("dcgan", "dcgan: resolution-generic DCGAN; seed: the brief's 56x56 networks",
                       group=NETS, tasks=NOISE, choices=["dcgan", "seed"])
    resolution: int | None = option(None, "image size (default: the embedded set's own, 64 for folders, 56 for --arch seed)",
                                    group=DATA, tasks=NOISE)
    channels: int | None = option(None, "1 or 3 (default: from the data)", group=DATA, tasks=NOISE)
    width: int | None = option(DEFAULT_WIDTH, "base channel width of G and D (ngf = ndf); for generation 32 at 32 px or less and 64 "
                               "above; the brief's networks (--arch seed) have fixed widths", group=NETS,
                               needs=("arch", "dcgan"), by_task={"generation": None})  # resolved with the resolution
    depth: int | None = option(0, "extra 3x3 convolutions per resolution in G and D (a DCGAN at 28 px has only two layers "
                               "a side); for generation 2 at 32 px or less, 0 above (the paper's DCGAN)", group=NETS,
                               tasks=NOISE, needs=("arch", "dcgan"), by_task={"generation": None})  # by resolution
    latent_dim: int = option(100, "size of the noise vector z", group=NETS, tasks=NOISE)
    loss: str | None = option("bce", "adversarial loss: the brief's non-saturating bce, hinge, lsgan or wgan-gp",
                              by_task={"translate": "lsgan"},  # CycleGAN's
                       group=LOSSES, tasks=ADVERSARIAL, choices=["bce", "hinge", "lsgan", "wgan-gp"])
    n_critic: int = option(1, "D updates per G update (5 is usual for wgan-gp)", group=LOSSES, tasks=ADVERSARIAL)
    gp_weight: float = option(10.0, "weight of the WGAN-GP gradient penalty", group=LOSSES, needs=("loss", "wgan-gp"))
    r1_gamma: float | None = option(0.2, "R1 penalty weight on real images (0: off); part of the default that won "
                                    "benchmarks/stability.py", group=LOSSES, tasks=ADVERSARIAL, private=0.0)
    r1_every: int = option(16, "apply R1 every N steps, scaled by N (lazy regularisation; 1: every step)",
                           group=LOSSES, needs="r1_gamma")
    topk: float = option(1.0, "top-k training (Sinha et al. 2020): G learns only from the fakes D rates most real, a share "
                         "that shrinks 0.99x per epoch from all of them down to this floor (e.g. 0.5); 1: off",
                         group=LOSSES, tasks=NOISE)
    spectral_norm: bool = option(False, "spectral normalisation in D (replaces its batch norm)",
                                 group=NETS, tasks=NOISE)
    ema_decay: float | None = option(0.999, "EMA of G's weights, used for sampling and export (0: off)", group=LOSSES,
                                     by_task={"style": 0.99})  # style runs are short: 0.999 would lag them
    conditional: bool = option(False, "class-conditional GAN: labels from the embedded set, or one sub-folder per class",
                               group=NETS, tasks=NOISE)
    cond_d: str = option("projection", "how D hears the class (with --conditional): projection (Miyato & Koyama 2018) or acgan (an auxiliary classifier, Odena et al. 2017)",
                         group=NETS, needs="conditional", choices=["projection", "acgan"])
    ac_weight: float = option(1.0, "weight of the AC-GAN class cross-entropy in D's and G's losses (with --cond-d acgan)",
                              group=LOSSES, needs=("cond_d", "acgan"))
    augment: str | None = option("none", "differentiable augmentation of real and fake images: none, or a list of color,translation,cutout "
                          "(color improved every digit generator measured)",
                          group=LOSSES, tasks=ADVERSARIAL, by_task={"generation": "color"})
    augment_target: float = option(0.0, "adaptive augmentation (ADA): augment each image with a probability that rises while "
                                   "D's sign(D(x)) averages above this target (0.6 is ADA's); 0: a fixed probability, --augment-p",
                                   group=LOSSES, needs="augment")
    augment_p: float = option(1.0, "with --augment: the fixed probability that an image is augmented (1: every image, as in "
                              "DiffAugment; below 1 keeps transforms such as translation from leaking into the samples)",
                              group=LOSSES, needs="augment")
    batch_size: int | None = option(64, "images per step and per process", group=OPTIM, by_task={"style": 4})
    steps: int | None = option(None, "training steps (D and G updates); default 5000 unless --epochs (3500 for "
                                     "generation at 32 px or less)", group=OPTIM)
    epochs: float | None = option(None, "training length in passes over the data (instead of --steps)", group=OPTIM)
    max_minutes: float | None = option(None, "stop (with a checkpoint) after this many minutes of training, whatever --steps says",
                                       group=RUN)
    lr: float = option(2e-4, "Adam learning rate of both networks", group=OPTIM)
    lr_g: float | None = option(None, "G's learning rate (two time-scale update rule; default: --lr)", group=OPTIM)
    lr_d: float | None = option(None, "D's learning rate (default: --lr)", group=OPTIM, tasks=ADVERSARIAL)
    lr_decay: str = option("none", "learning-rate schedule over --steps: none (constant) or cosine (from --lr down to 0, "
                           "as EDSR and ESRGAN's later recipes anneal; the rate is a function of the step, so resume "
                           "is exact)", group=OPTIM, choices=["none", "cosine"])
    beta1: float | None = option(0.5, "Adam beta1", group=OPTIM, by_task={"style": 0.9})
    beta2: float = option(0.999, "Adam beta2", group=OPTIM)
    init_generator: str | None = option(None, "start G (and its EMA) from a saved model of the same architecture: a run, a "
                                        "model folder or a shipped name (e.g. superres-x4 to fine-tune it); a superres model with "
                                        "fewer --blocks is deepened, its new blocks starting as identities", group=NETS)
    seed: int = option(0, "seed of everything random; the same seed gives the same run on the CPU", group=RUN)
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps", group=RUN)
    precision: str = option("auto", "auto (bf16 where fast, else fp32), fp32, bf16 or fp16 (CUDA)",
                            group=RUN, choices=["auto", "fp32", "bf16", "fp16"])
    compile: bool = option(False, "compile the networks with torch.compile (inductor): faster steps after a one-off "
                           "compile at the start of the run (about a minute on the CPU; needs a C++ compiler there)",
                           group=RUN)
    sample_every: int = option(500, "steps between sample grids", group=RUN)
    checkpoint_every: int = option(1000, "steps between checkpoints", group=RUN)
    log_every: int = option(10, "steps between lines of metrics.jsonl", group=RUN)
    eval_every: int | None = option(1000, "steps between domain-feature FID/KID and mode-collapse checks (0: off)", group=RUN,
                                    private=0)
    eval_samples: int = option(1000, "generated images per check during training", group=RUN, tasks=NOISE)
    grid_size: int = option(64, "images in each sample grid", group=RUN, tasks=NOISE)
    nan_patience: int = option(10, "non-finite losses in a row before rolling back to the last checkpoint",
                               group=LOSSES)
    scale: int = option(4, "superres: upscaling factor", group=NETS, tasks=SUPERRES, choices=[2, 4])
    degradation: str = option("bicubic", "superres: how training inputs are made from crops: bicubic (the papers' protocol) "
                              "or realistic (blur, noise, JPEG, for real-world photos)",
                              group=DATA, tasks=SUPERRES, choices=["bicubic", "realistic"])
    patch_size: int = option(96, "superres, inpaint, style, translate: side of the training crops of photos (for "
                             "superres a multiple of --scale)", group=DATA, tasks=SUPERRES + INPAINT + STYLE + TRANSLATE)
    blocks: int = option(8, "superres, inpaint, translate: residual blocks in the generator(s)", group=NETS,
                         tasks=SUPERRES + INPAINT + TRANSLATE)
    fidelity_steps: int | None = option(None, "superres: L1-only steps before adversarial fine-tuning (default: half of "
                                        "--steps); their model is kept in model-fidelity/",
                                        group=LOSSES, tasks=SUPERRES)
    pixel_loss: str = option("l1", "superres: the loss to the ground truth: l1 (EDSR's, robust to outliers) or l2 (the mean "
                             "squared error, which PSNR measures: a last fine-tune of an L1 model for PSNR)",
                             group=LOSSES, tasks=SUPERRES, choices=["l1", "l2"])
    adversarial_weight: float = option(0.05, "superres, inpaint: weight of the adversarial loss beside L1 (for superres, "
                                       "in the second phase)", group=LOSSES, tasks=SUPERRES + INPAINT)
    perceptual_weights: str | None = option(None, "superres, inpaint: a local VGG19 weights file (torchvision's vgg19 .pth, "
                                            "or .safetensors) to add ESRGAN's perceptual loss (for superres, in the second "
                                            "phase)", group=LOSSES, tasks=SUPERRES + INPAINT)
    perceptual_weight: float = option(1.0, "superres, inpaint: weight of the perceptual loss (with --perceptual-weights)",
                                      group=LOSSES, tasks=SUPERRES + INPAINT, needs="perceptual_weights")
    masks: str = option("mixed", "inpaint: the holes training draws: box, freeform (DeepFill v2 brush strokes), thin, "
                        "medium, thick (LaMa's presets) or mixed (each mask from one of them)",
                        group=DATA, tasks=INPAINT, choices=list(MASK_KINDS))
    inpaint_net: str = option("ffc", "inpaint: residual blocks of fast Fourier convolutions (ffc: LaMa's, every pixel sees "
                              "the whole image) or plain convolutions (conv: the baseline)",
                              group=NETS, tasks=INPAINT, choices=["ffc", "conv"])
    hole_weight: float = option(1.0, "inpaint: weight of L1 to the original inside the holes", group=LOSSES, tasks=INPAINT)
    valid_weight: float = option(1.0, "inpaint: weight of L1 to the original outside the holes (keeps the fill consistent "
                                 "with its surroundings)", group=LOSSES, tasks=INPAINT)
    feature_matching_weight: float = option(0.0, "inpaint: weight of L1 between the discriminator's features of the "
                                            "filled image and of the original (pix2pixHD, LaMa): asks for the "
                                            "original's texture where L1 on pixels asks for its average",
                                            group=LOSSES, tasks=INPAINT)
    texture_weight: float = option(0.0, "inpaint: weight of the texture loss: the relative error of the Gram matrices "
                                   "of the hole in the --features network, fill against original (Liu et al. 2018): "
                                   "asks for the original's texture statistics wherever the strokes fall",
                                   group=LOSSES, tasks=INPAINT)
    style: str | None = option(None, "style: the style image (a painting, a texture) the network learns to paint in",
                               group=DATA, tasks=STYLE)
    strength: float = option(1.0, "style: weight of the style (and total variation) against the content, as in "
                             "`ganforge stylize --strength`", group=LOSSES, tasks=STYLE)
    data_b: str | None = option(None, "translate: the second collection (domain B; --data is domain A): a folder, "
                                "photos or an embedded set", group=DATA, tasks=TRANSLATE)
    cycle_weight: float = option(10.0, "translate: weight of the cycle loss |G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b|",
                                 group=LOSSES, tasks=TRANSLATE)
    identity_weight: float = option(0.5, "translate: weight of the identity loss |G_AB(b) - b| + |G_BA(a) - a|, as a "
                                    "share of --cycle-weight (0: off)", group=LOSSES, tasks=TRANSLATE)
    pool_size: int = option(50, "translate: past fakes each discriminator may be shown instead of new ones (0: none)",
                            group=LOSSES, tasks=TRANSLATE)
    features: str | None = option(None, "style, inpaint: a local torchvision VGG19 weights file (.pth or .safetensors) "
                                  "for the style and content losses, or inpaint's texture loss (default: the built-in "
                                  "random network, nothing downloaded)", group=LOSSES, tasks=STYLE + INPAINT)
    dp_epsilon: float | None = option(None, "differentially private training (DP-SGD on D, Opacus's accountant): the "
                                      "privacy budget epsilon; the noise is set so that the planned steps spend at most "
                                      "this, and the run stops before it spends more; inf: clipping without noise (no "
                                      "guarantee). Needs the privacy extra (pip install 'ganforge[privacy]')",
                                      group=PRIVACY, tasks=NOISE)
    dp_delta: float = option(1e-5, "the delta of the (epsilon, delta) guarantee; must be below 1/(training images)",
                             group=PRIVACY, needs="dp_epsilon")
    dp_max_grad_norm: float = option(1.0, "the clipping bound of each real image's gradient of D's loss (DP-SGD's C)",
                                     group=PRIVACY, needs="dp_epsilon")

    def __post_init__(self):
        """Options whose default depends on the task take it (Johnson et al.'s Adam for the fast style network,
        CycleGAN's LSGAN for translation); where an option does not apply, it stays None."""
        for f in dataclasses.fields(self):
            if f.metadata["private"] is not None and getattr(self, f.name) is None:
                setattr(self, f.name, f.metadata["private"] if self.dp_epsilon is not None else f.metadata["base"])
            by_task, tasks = f.metadata["by_task"], f.metadata["tasks"]
            if not by_task or self.task not in TASKS:
                continue
            applies = tasks is None or self.task in tasks or TASKS[self.task] in tasks
            if getattr(self, f.name) is None and applies:
                setattr(self, f.name, by_task.get(self.task, f.metadata["base"]))
            elif not applies and getattr(self, f.name) == f.metadata["base"]:
                setattr(self, f.name, None)  # a config saved when the base was every task's default (loss: bce)

    def validate(self) -> "TrainConfig":
        for f in dataclasses.fields(self):
            _check_type_and_choice(f, getattr(self, f.name))
        if self.data is None:
            self.data = "mnist5k" if self.task == "generation" else "photos"
        positive = ["width", "latent_dim", "batch_size", "sample_every", "checkpoint_every", "log_every", "grid_size",
                    "n_critic", "r1_every", "nan_patience", "eval_samples", "blocks"]
        for name in positive:  # None: resolved later (the width of generation, by resolution)
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{flag(name)}: must be at least 1, got {getattr(self, name)}")
        if self.depth is not None and self.depth < 0:
            raise UserError(f"--depth: must be at least 0, got {self.depth}")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps: must be at least 1, got {self.steps}")
        for name in ("max_images", "max_minutes"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise UserError(f"--{flag(name)}: must be positive, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs <= 0:
            raise UserError(f"--epochs: must be positive, got {self.epochs}")
        if self.steps is not None and self.epochs is not None:
            raise UserError("--steps and --epochs: give one, not both")
        for name in ("lr", "lr_g", "lr_d"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise UserError(f"--{flag(name)}: must be in (0, 1), got {value}")
        if self.task == "superres" and (self.patch_size % self.scale or self.patch_size < 8 * self.scale):
            raise UserError(f"--patch-size: must be a multiple of --scale {self.scale} and at least {8 * self.scale}, "
                            f"got {self.patch_size}")
        if self.task == "translate" and self.data_b is None:
            raise UserError("--data-b: --task translate needs a second collection (--data ./photos --data-b ./paintings)")
        if self.pool_size < 0:
            raise UserError(f"--pool-size: must be at least 0, got {self.pool_size}")
        if self.task == "translate" and self.augment_target:
            raise UserError("--augment-target: not with --task translate (its two discriminators would share, and "
                            "twice update, one augmentation probability); use --augment-p")
        if self.task == "inpaint" and self.features is not None and not self.texture_weight:
            raise UserError("--features: for --task inpaint it is the network of the texture loss; set --texture-weight")
        if self.task == "style" and self.style is None:
            raise UserError("--style: --task style needs a style image (--style painting.jpg)")
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise UserError(f"--strength: must be 0 or more, got {self.strength}")
        if self.patch_size < 16:
            raise UserError(f"--patch-size: must be at least 16, got {self.patch_size}")
        if self.fidelity_steps is not None and self.fidelity_steps < 0:
            raise UserError(f"--fidelity-steps: must be at least 0, got {self.fidelity_steps}")
        for name in ("gp_weight", "r1_gamma", "eval_every", "adversarial_weight", "perceptual_weight", "ac_weight",
                     "hole_weight", "valid_weight", "feature_matching_weight", "texture_weight", "cycle_weight", "identity_weight"):
            if getattr(self, name) < 0:
                raise UserError(f"--{flag(name)}: must be at least 0, got {getattr(self, name)}")
        if not 0 <= self.augment_target < 1:
            raise UserError(f"--augment-target: must be in [0, 1), got {self.augment_target}")
        if not 0 < self.augment_p <= 1:
            raise UserError(f"--augment-p: must be in (0, 1], got {self.augment_p}")
        if not 0 < self.topk <= 1:
            raise UserError(f"--topk: must be in (0, 1] (the smallest share of fakes G learns from), got {self.topk}")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"--ema-decay: must be in [0, 1), got {self.ema_decay}")
        if self.augment is not None:  # None: a task with no discriminator
            parse_policy(self.augment)
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.conditional and self.arch != "dcgan":
            raise UserError(f"--conditional: works with --arch dcgan, not --arch {self.arch}")
        if self.channels not in (None, 1, 3):
            raise UserError(f"--channels: must be 1 or 3, got {self.channels}")
        if self.resolution is not None and self.resolution < 4:
            raise UserError(f"--resolution: must be at least 4, got {self.resolution}")
        self._refuse_options_that_do_not_apply()
        self._check_privacy()
        return self

    @property
    def discriminator_norm(self) -> str:
        """Batch norm in D (nets/dcgan.py), except where it would mix the images of a batch: none for WGAN-GP's
        per-image penalty, group norm for DP-SGD's per-image clipping. (With no normalisation at all, a private D,
        whose convolutions have no bias, learnt to call the real digits fake and G made grey images: benchmarks/
        privacy.py, epsilon inf.)"""
        if self.dp_epsilon is not None:
            return "group"
        return "none" if self.loss == "wgan-gp" else "batch"

    def _check_privacy(self) -> None:
        """DP-SGD's options, and the side doors through which real images would reach D's updates, the log or
        the run's files outside the privacy accounting: each is refused with its reason."""
        if self.dp_epsilon is None:
            return
        if math.isnan(self.dp_epsilon) or self.dp_epsilon <= 0:
            raise UserError(f"--dp-epsilon: must be positive (inf: clipping without noise), got {self.dp_epsilon}")
        if not 0 < self.dp_delta < 1:
            raise UserError(f"--dp-delta: must be in (0, 1), got {self.dp_delta}")
        if not (math.isfinite(self.dp_max_grad_norm) and self.dp_max_grad_norm > 0):
            raise UserError(f"--dp-max-grad-norm: must be positive, got {self.dp_max_grad_norm}")
        side_doors = [
            ("r1_gamma", self.r1_gamma > 0, "R1 penalises D's gradient at each real image, which DP-SGD cannot clip; "
                                            "use 0"),
            ("loss", self.loss == "wgan-gp", "WGAN-GP's penalty takes D's gradient at mixes of real and fake images, "
                                             "which DP-SGD cannot clip; use bce, hinge or lsgan"),
            ("augment_target", self.augment_target > 0, "ADA sets its probability from D's scores of real images, "
                                                        "outside the accounting; use a fixed --augment-p"),
            ("eval_every", self.eval_every > 0, "the in-training checks compare samples with the training images and "
                                                "log the result, outside the accounting; use 0 and `ganforge evaluate`"),
            ("spectral_norm", self.spectral_norm, "Opacus computes per-image gradients of plain weights, not of "
                                                  "spectral norm's parametrisation"),
            ("precision", self.precision == "fp16", "fp16's loss scaler skips steps on overflows of the real "
                                                    "images' gradients, outside the accounting; use bf16 or fp32"),
            ("compile", self.compile, "D's per-image gradients come from Opacus's hooks on its layers, which are not "
                                      "checked under torch.compile's graphs; train without --compile"),
        ]
        for name, refused, reason in side_doors:
            if refused:
                raise UserError(f"--{flag(name)}: {getattr(self, name)!r} is refused with --dp-epsilon: {reason}")

    def _refuse_options_that_do_not_apply(self) -> None:
        """An option left at its default is fine anywhere; one set where it does nothing is a mistake to report."""
        kind = TASKS[self.task]
        for f in dataclasses.fields(self):
            value, tasks, needs = getattr(self, f.name), f.metadata["tasks"], f.metadata["needs"]
            if value in (f.default, f.metadata["base"]):  # base: the default where by_task has none (width: 64)
                continue
            if tasks is not None and self.task not in tasks and kind not in tasks:
                applies = sorted(t for t, k in TASKS.items() if t in tasks or k in tasks)
                raise UserError(f"--{flag(f.name)}: only applies to --task {' or '.join(applies)}, not --task {self.task}")
            if isinstance(needs, str) and getattr(self, needs) in (None, False, 0, "none"):
                raise UserError(f"--{flag(f.name)}: only applies with --{flag(needs)}")
            if isinstance(needs, tuple) and getattr(self, needs[0]) != needs[1]:
                raise UserError(f"--{flag(f.name)}: only applies with --{flag(needs[0])} {needs[1]}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{source}: unknown option(s) {', '.join(unknown)}")
        floats = {f.name for f in dataclasses.fields(cls) if field_kind(f) is float}
        return cls(**{k: _yaml_float(v) if k in floats else v for k, v in d.items()})


def flag(name: str) -> str:
    return name.replace("_", "-")


def field_kind(f: dataclasses.Field) -> type:
    """A field's value type: int for `int | None`."""
    return f.type.__args__[0] if isinstance(f.type, types.UnionType) else f.type


def _yaml_float(value):
    """A YAML value for a float field: PyYAML follows YAML 1.1, which reads `1e-4` (no dot) as a string, so a
    string that is a finite number is that number; anything else is left for validate() to refuse."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _check_type_and_choice(f: dataclasses.Field, value) -> None:
    """The command line converts and checks types and choices; a YAML config's values are checked here."""
    kind = field_kind(f)
    if value is None and not isinstance(f.type, types.UnionType):
        raise UserError(f"--{flag(f.name)}: needs a value, got nothing (null)")
    accepted = (int, float) if kind is float else kind
    if value is not None and (not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool))):
        expected = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[kind]
        raise UserError(f"--{flag(f.name)}: expected {expected}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise UserError(f"--{flag(f.name)}: {value!r} is not one of {', '.join(map(str, choices))}")


def load_yaml(path: Path) -> dict:
    try:
        d = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a mapping of options")
    return d


def save_yaml(d: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(d, sort_keys=False))
