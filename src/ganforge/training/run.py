"""`ganforge train`: from a config to a run directory, fresh or resumed."""

import dataclasses
import logging
import platform
import sys
from pathlib import Path

import torch

import ganforge
from ganforge.config import DEFAULT_WIDTH, TrainConfig, flag, load_yaml, save_yaml
from ganforge.data import ImageSet, load_imageset, split
from ganforge.data.cache import ImageCache, is_cache, prepared_resolution
from ganforge.data.imageset import native_resolution
from ganforge.data.training_set import in_memory, open_training_set
from ganforge.data.folder import find_images
from ganforge.data.photos import EMBEDDED_PHOTOS, extract_patches, load_photo, load_photos
from ganforge.errors import UserError
from ganforge.imageio import UNREADABLE_IMAGE, check_writable_folder
from ganforge.nets.brief import BRIEF_RESOLUTION
from ganforge.nets.sr import deepened
from ganforge.nets.style import load_style_features
from ganforge.saved_model import load_model, resolve_model
from ganforge.seeding import seed_everything
from ganforge.tasks.conditional import ConditionalGenerationTask, check_labels
from ganforge.tasks.generation import GenerationTask, check_resolution
from ganforge.tasks.inpaint import InpaintTask
from ganforge.tasks.style import StyleTask
from ganforge.tasks.superres import SuperResTask
from ganforge.tasks.translate import TranslateTask
from ganforge.device import PRECISION_DTYPES, pick_device, pick_dtype
from ganforge.training.distributed import init_distributed, local_rank_from_env, main_process_dtype, shutdown
from ganforge.training.checkpoint import checkpoint_meta
from ganforge.training.monitors import MONITOR_PHOTOS, InpaintMonitor, SuperResMonitor, TrainingMonitor
from ganforge.training.trainer import Trainer, total_steps, updates_per_epoch

log = logging.getLogger("ganforge")
DEFAULT_STEPS = 5000
# Generation at 32 px or less (the quickstart's 28 px digits): half the width, two more convolutions per resolution
# (depth 2), 3500 steps. On mnist5k, width 32 beat width 64 (the old shipped model) at 2.5x the speed; depth then beat
# everything else: of depths 1-4 given the same wall time, depth 2's 3500 steps scored best on confidence, class
# entropy and domain FID, and keep the quickstart within 6 minutes on 2 cores (5:31 on a slow day, when depth 1's
# 6000 steps took 6:22) (benchmarks/digits_quality.py; README, "Quickstart").
SMALL_IMAGE_SIDE, SMALL_IMAGE_WIDTH, SMALL_IMAGE_DEPTH, SMALL_IMAGE_STEPS = 32, 32, 2, 3500
# config.yaml's environment.dtype, back to the --precision it names
SAVED_DTYPES = {str(dtype).removeprefix("torch."): name for name, dtype in PRECISION_DTYPES.items()}
RESUMABLE_CHANGES = {"steps", "epochs", "max_minutes", "device", "sample_every", "checkpoint_every", "log_every",
                     "eval_every", "eval_samples"}


def resolve_resolution(cfg: TrainConfig) -> int:
    if cfg.resolution is not None:
        return cfg.resolution
    if cfg.arch == "seed":
        return BRIEF_RESOLUTION
    return native_resolution(cfg.data) or prepared_resolution(cfg.data) or 64


def generation_defaults(cfg: TrainConfig) -> None:
    """The resolution, and the width, depth and length that depend on it where not given: small images, a narrower
    and deeper net."""
    cfg.resolution = resolve_resolution(cfg)
    small = cfg.resolution <= SMALL_IMAGE_SIDE
    if cfg.arch == "dcgan":  # the brief's networks (--arch seed) have fixed widths and depths
        if cfg.width is None:
            cfg.width = SMALL_IMAGE_WIDTH if small else DEFAULT_WIDTH
        if cfg.depth is None:
            cfg.depth = SMALL_IMAGE_DEPTH if small else 0
    if cfg.steps is None and cfg.epochs is None and small:
        cfg.steps = SMALL_IMAGE_STEPS


CACHE_TASKS = ("generation", "superres", "inpaint")  # the tasks that stream from a prepared cache


def check_cache_use(cfg: TrainConfig) -> None:
    """Style and translation read whole photos from a folder: they refuse a prepared cache."""
    for spec, option in ((cfg.data, "--data"), (cfg.data_b, "--data-b")):
        if cfg.task not in CACHE_TASKS and spec is not None and is_cache(spec):
            raise UserError(f"{option}: {spec} is a prepared image cache, which --task {cfg.task} cannot read (caches "
                            f"serve --task {', '.join(CACHE_TASKS)}); give the folder of photos it was prepared from")


def generation_setup(cfg: TrainConfig, dist):
    """The task, training images (in memory, or a cache streamed from), labels (for a conditional run) and monitor
    of a generation run."""
    check_resolution(cfg.arch, cfg.resolution)
    data, _ = split(open_training_set(cfg.data, cfg.resolution, cfg.channels, dist.enabled), cfg.max_images)
    cfg.channels = data.channels
    if cfg.dp_epsilon is not None and dist.is_main:
        log.info("differentially private training: D's batch norm is replaced by group norm (batch norm mixes the "
                 "images of a batch, which per-image gradient clipping cannot have); batches are Poisson samples; R1 "
                 "and the in-training checks are off")
    epoch_steps = updates_per_epoch(cfg.batch_size, len(data), dist.world_size) / cfg.n_critic  # as --epochs counts
    if cfg.conditional:
        check_labels(data.labels, data.class_names, cfg.data)
        task = ConditionalGenerationTask(cfg, data.channels, data.resolution, data.class_names, cfg.data, epoch_steps)
    else:
        task = GenerationTask(cfg, data.channels, data.resolution, epoch_steps)
    monitor = None
    if cfg.eval_every and dist.is_main:
        monitor = TrainingMonitor(data, cfg.eval_samples, cfg.seed, cfg.latent_dim, task.model.get("num_classes", 0))
    images = data.images if isinstance(data, ImageSet) else data
    return task, images, data.labels if cfg.conditional else None, monitor


def cached_photos(cfg: TrainConfig) -> tuple[ImageCache, ImageCache]:
    """(training, held-out) images of the prepared cache `--data`, split by --max-images as a folder's photos are."""
    return split(ImageCache.open(cfg.data), cfg.max_images)


def superres_setup(cfg: TrainConfig, dist):
    """The task, high-resolution training crops, (no) labels and validation monitor of a super-resolution run."""
    if is_cache(cfg.data):
        train, held = cached_photos(cfg)
        if train.channels != 3:
            raise UserError(f"--data: {cfg.data} holds greyscale images, and super-resolution trains on RGB; prepare "
                            "a cache with --channels 3")
        patches, heldout = train.crops(cfg.patch_size), list(in_memory(held, MONITOR_PHOTOS).images.numpy())
    else:
        train_photos, heldout = load_photos(cfg.data, cfg.max_images)
        patches = extract_patches(train_photos, cfg.patch_size)
    if cfg.fidelity_steps is None:
        cfg.fidelity_steps = total_steps(cfg, len(patches), dist.world_size) // 2
    monitor = SuperResMonitor(heldout, cfg.scale, cfg.degradation) if cfg.eval_every and heldout and dist.is_main else None
    return SuperResTask(cfg, patches, cfg.fidelity_steps), patches, None, monitor


def inpaint_setup(cfg: TrainConfig, dist):
    """The task, training images (embedded digits) or photo crops, (no) labels and held-out monitor of an inpainting run."""
    if native_resolution(cfg.data):
        data, held = split(load_imageset(cfg.data, native_resolution(cfg.data)), cfg.max_images)
        images, held_images = data.images, held.images
    elif is_cache(cfg.data):
        train, held = cached_photos(cfg)
        images, held_images = train.crops(cfg.patch_size), held.crops(cfg.patch_size, max_patches=64)
    else:
        train_photos, held_photos = load_photos(cfg.data, cfg.max_images)
        images = extract_patches(train_photos, cfg.patch_size)
        held_images = extract_patches(held_photos, cfg.patch_size, max_patches=64) if held_photos else images[:0]
    monitor = InpaintMonitor(held_images, cfg.masks, cfg.seed) if cfg.eval_every and len(held_images) and dist.is_main else None
    return InpaintTask(cfg, images), images, None, monitor


def read_style_image(path: Path):
    """The `--style` image as uint8 (3, H, W), or a one-line UserError; at least 16 pixels a side, as for stylize."""
    if not path.is_file():
        raise UserError(f"--style: {path} does not exist" if not path.exists() else f"--style: {path} is not a file")
    try:
        image = torch.from_numpy(load_photo(path).copy())  # a writable array, as torch wants
    except UNREADABLE_IMAGE as e:
        raise UserError(f"--style: {path} is not a readable image ({e})") from None
    if min(image.shape[1:]) < 16:
        raise UserError(f"--style: {path} is {image.shape[2]}x{image.shape[1]}; a style image needs at least 16x16 pixels")
    return image


def style_setup(cfg: TrainConfig, dist):
    """The task, photo crops, (no) labels and (no) monitor of a fast style network's run."""
    style = read_style_image(Path(cfg.style))
    features = load_style_features(cfg.features)
    train_photos, _ = load_photos(cfg.data, cfg.max_images)
    patches = extract_patches(train_photos, cfg.patch_size)
    if dist.is_main:
        log.info("style %s, %s features, strength %g", cfg.style, features.name, cfg.strength)
    return StyleTask(cfg, patches, style, features), patches, None, None


def translation_crops(spec: str, size: int, max_images: int | None, option: str) -> torch.Tensor:
    """RGB uint8 crops of one collection: an embedded set's images as they are, or `size` crops of photos."""
    if native_resolution(spec):
        images = split(load_imageset(spec, native_resolution(spec)), max_images)[0].images
        return images.expand(-1, 3, -1, -1).contiguous()
    return extract_patches(load_photos(spec, max_images, option)[0], size)


def translate_setup(cfg: TrainConfig, dist):
    """The task, domain A crops (the trainer's data), (no) labels and (no) monitor of a CycleGAN run."""
    for spec, option in ((cfg.data, "--data"), (cfg.data_b, "--data-b")):  # a mistyped folder is told before a long read
        if not native_resolution(spec) and spec != EMBEDDED_PHOTOS and not Path(spec).is_dir():
            find_images(Path(spec), option)  # says what is wrong with it; a folder is searched once, when it is read
    images_a = translation_crops(cfg.data, cfg.patch_size, cfg.max_images, "--data")
    images_b = translation_crops(cfg.data_b, cfg.patch_size, cfg.max_images, "--data-b")
    if images_a.shape[-1] != images_b.shape[-1]:
        raise UserError(f"--data-b: {cfg.data_b} gives {images_b.shape[-1]}x{images_b.shape[-1]} images and --data "
                        f"{cfg.data} {images_a.shape[-1]}x{images_a.shape[-1]}; both domains need one size")
    if dist.is_main:
        log.info("translate: A = %s (%d crops), B = %s (%d crops)", cfg.data, len(images_a), cfg.data_b, len(images_b))
    return TranslateTask(cfg, images_a, images_b), images_a, None, None


SETUPS = {"generation": generation_setup, "superres": superres_setup, "inpaint": inpaint_setup, "style": style_setup,
          "translate": translate_setup}


def init_weights(where: str, model: dict, built: dict[str, torch.Tensor]) -> dict:
    """The generator weights of `where`, checked to fit the architecture this run builds (`model`, whose freshly
    built weights are `built`). A super-resolution model may have fewer residual blocks: it is deepened
    (`sr.deepened`), so that a longer budget can grow a trained model instead of starting afresh."""
    config, weights = load_model(resolve_model(where), "generator")
    if model.get("task") == "superres" and config.get("task") == "superres" and config["blocks"] < model["blocks"]:
        weights = deepened(weights, built, config["blocks"])
        config = {**config, "blocks": model["blocks"]}
    # What a model was trained on and with, not what it is: a style network may start from one of another style.
    ignored = {"variant", "steps", "fidelity_steps", "init_generator", "ganforge_version", "degradation", "data", "max_images",
               "masks", "style", "style_sha256", "strength", "features", "style_side", "patch_size", "data_b",
               "privacy"}
    differ = sorted(k for k in set(config) | set(model) if k not in ignored and config.get(k) != model.get(k))
    if differ:
        details = ", ".join(f"{k} {config.get(k)!r} vs {model.get(k)!r}" for k in differ)
        raise UserError(f"--init-generator: {where} has another architecture than this run ({details})")
    return weights


def check_fidelity_extension(old: int, new: int, out: Path) -> None:
    """A resumed super-resolution run may move the end of its fidelity phase, as long as no adversarial step was taken."""
    last = out / "checkpoints" / "last.safetensors"
    step = checkpoint_meta(last)["step"] if last.exists() else 0
    if step > min(old, new):
        raise UserError(f"--fidelity-steps: the run is at step {step}, past the end of its fidelity phase; "
                        "it can only be moved while the run is still in it")


def resumed_config(out: Path, given: dict) -> TrainConfig:
    """The run's saved config, with the options given now applied where a resumed run allows it."""
    saved_path = out / "config.yaml"
    saved = load_yaml(saved_path)
    if saved.get("task") == "generation" and saved.get("arch") == "dcgan":
        saved.setdefault("depth", 0)  # a run saved before --depth existed has the paper's DCGAN
    environment = saved.pop("environment", None) or {}
    if saved.get("precision") == "auto" and environment.get("dtype") in SAVED_DTYPES:
        # What auto chose when the run started, not what it would choose on this machine: a resumed run keeps its
        # arithmetic, so that it ends as the run never interrupted would.
        saved["precision"] = SAVED_DTYPES[environment["dtype"]]
    cfg = TrainConfig.from_dict(saved, str(saved_path))
    try:
        cfg.validate()
    except UserError as e:  # its message names a flag the user may never have typed: say where the value is
        raise UserError(f"{saved_path}: {e}") from None
    for name, value in given.items():
        if name in ("out",) or value == getattr(cfg, name) or (name == "precision" and value == "auto"):
            continue
        if name == "fidelity_steps":
            check_fidelity_extension(cfg.fidelity_steps, value, out)
        elif name not in RESUMABLE_CHANGES:
            raise UserError(f"--{flag(name)}: {value!r} differs from the run's {getattr(cfg, name)!r} ({saved_path}); a resumed run keeps its config")
        setattr(cfg, name, value)
    if "steps" in given:
        cfg.epochs = None
    elif "epochs" in given:
        cfg.steps = None
    return cfg.validate()


def train(cfg: TrainConfig, resume: bool = False, given: dict | None = None) -> Path:
    """Train `cfg.task` and return the run directory. With `resume`, continue the run in `cfg.out`.

    `given` holds the options a user set explicitly, by flag or --config (they may change a resumed run's length).
    """
    out = Path(cfg.out)
    if resume and (out / "config.yaml").exists():
        cfg = resumed_config(out, given or {})
    elif resume and set(given or {}) - {"out"}:
        # Killed before it saved its config (in its first seconds, maybe before --out existed): a kill at any
        # moment must be resumable, so it starts again with the options given now, and says so.
        log.warning("--resume: %s holds no run yet (no config.yaml); starting it from step 0 with the options given",
                    out)
        cfg.validate()
    elif resume:
        raise UserError(f"--resume: {out} holds no run to resume (no checkpoint, no config.yaml) and no options were given")
    else:
        cfg.validate()
        if (out / "config.yaml").exists():
            raise UserError(f"--out: {out} already holds a run; add --resume to continue it, or choose another --out")
    check_cache_use(cfg)
    device = pick_device(cfg.device, local_rank_from_env())
    dist = init_distributed(device.type)
    try:
        return _train(cfg, out, resume, device, dist)
    finally:
        shutdown(dist)


def _train(cfg: TrainConfig, out: Path, resume: bool, device: torch.device, dist) -> Path:
    dtype = main_process_dtype(lambda: pick_dtype(cfg.precision, device), dist, device)
    if dist.is_main:
        check_writable_folder(out / "checkpoints", "--out")
    seed_everything(cfg.seed)
    if cfg.task == "generation":
        generation_defaults(cfg)
    if cfg.steps is None and cfg.epochs is None:
        cfg.steps = DEFAULT_STEPS
    task, images, labels, monitor = SETUPS[cfg.task](cfg, dist)
    trainer = Trainer(cfg, task, images, out, device, dtype, dist, monitor=monitor, labels=labels)
    resumed = resume and trainer.resume()  # False for a run killed before its first checkpoint: it starts afresh
    if not resumed and cfg.init_generator:
        trainer.init_generator(init_weights(cfg.init_generator, task.model, trainer.generator.state_dict()))
    if dist.is_main:
        environment = {
            "ganforge": ganforge.__version__, "torch": str(torch.__version__), "python": platform.python_version(),
            "device": str(device), "dtype": str(dtype).removeprefix("torch."), "world_size": dist.world_size,
            "images": len(images), "command": " ".join(sys.argv),
        }
        if trainer.private is not None:
            environment["privacy"] = privacy_summary(trainer)
        save_yaml({**dataclasses.asdict(cfg), "environment": environment}, out / "config.yaml")
        log.info("%s: %d %s %dx%dx%d, %s on %s (%s), %d steps of %d x %d",
                 cfg.data, len(images), "images" if cfg.task == "generation" else "crops", *images.shape[1:],
                 cfg.arch if cfg.task == "generation" else cfg.task, device,
                 environment["dtype"], trainer.total_steps, trainer.batch_size, dist.world_size)
    trainer.fit()
    if trainer.private is not None and dist.is_main:  # the epsilon spent, where the run's options are
        environment["privacy"] = privacy_summary(trainer)
        save_yaml({**dataclasses.asdict(cfg), "environment": environment}, out / "config.yaml")
    return out


def privacy_summary(trainer: Trainer) -> dict:
    """config.yaml's record of the privacy spent so far (the accountant's history is in the checkpoint)."""
    return {k: v for k, v in trainer.privacy_report().items() if k != "history"}
