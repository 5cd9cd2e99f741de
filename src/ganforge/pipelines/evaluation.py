"""`ganforge evaluate` and `ganforge features train`.

Every report names its feature extractor: numbers from different extractors are never mixed.
The reference set is the run's held-out split where it has one (`--max-images`), so that FID,
precision/recall and the memorisation audit compare against real images the GAN never saw.
Generated images are rounded to 8 bits, as real ones are, before their features are taken.
The membership attack (LOGAN) reads the run's discriminator from its last checkpoint and scores
the same split: the `--max-images` training images are the members, the held-out rest are not.
"""

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ganforge.atomic import atomic_path
from ganforge.config import TrainConfig, load_yaml
from ganforge.data import ImageSet, load_imageset, split
from ganforge.data.embedded import cache_dir
from ganforge.data.imageset import native_resolution
from ganforge.errors import UserError
from ganforge.imageio import check_writable, check_writable_folder, float_to_uint8
from ganforge.metrics import (
    DomainFeatures,
    InceptionV3Features,
    class_histogram_stats,
    density_coverage,
    diversity,
    fid,
    kid,
    load_domain_features,
    memorization_audit,
    precision_recall,
    save_closest_pairs,
    train_domain_features,
)
from ganforge.metrics.domain import domain_features
from ganforge.metrics.membership import discriminator_scores, logan_attack
from ganforge.nets.build import build_discriminator
from ganforge.saved_model import build_model
from ganforge.weights_file import net_state, read_state_dict
from ganforge.device import pick_device
from ganforge.latent import balanced_labels, generate, latents
from ganforge.pipelines.sampling import load_generator

log = logging.getLogger("ganforge")
METRICS = ("fid", "kid", "pr", "dc", "memorization", "membership")
CHECKPOINT = Path("checkpoints") / "last.safetensors"  # where a run keeps its discriminator
MEMBERSHIP_MAX = 5000  # images of each side the attack scores at most
ALIASES = {"coverage": "dc", "precision": "pr", "recall": "pr", "memorisation": "memorization", "density": "dc"}


def parse_metrics(text: str | None) -> list[str] | None:
    """The metrics named in `--metrics`; None when it is not given, which means the defaults."""
    if text is None:
        return None
    names = []
    for name in (t.strip().lower() for t in text.split(",") if t.strip()):
        name = ALIASES.get(name, name)
        if name not in METRICS:
            raise UserError(f"--metrics: unknown metric {name!r}; choose from fid, kid, pr, dc (coverage), memorization, "
                            "membership")
        if name not in names:
            names.append(name)
    if not names:
        raise UserError("--metrics: name at least one metric")
    return names


# ---------------------------------------------------------------------------- feature extractors
def pick_extractor(train: ImageSet, features: str | None, inception_weights: str | None, device: str):
    if features and inception_weights:
        raise UserError("--features and --inception-weights: choose one feature extractor")
    if inception_weights:
        return InceptionV3Features(inception_weights, device=pick_device(device))
    if features:
        return load_domain_features(features, device=pick_device(device))
    return domain_features(train)


def real_features(extractor, images: torch.Tensor, folder: Path) -> torch.Tensor:
    """Features of real images, kept in `folder` so that the next evaluation does not extract them again.

    Real images do not change between evaluations, and a pass over the training set (or any
    Inception pass on a CPU) is the slow part of one. The file is keyed by the extractor's name,
    which pins its weights, and a digest of the pixels; a folder that cannot be written only
    costs the extraction again.
    """
    digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:16]
    path = folder / f"{extractor.name.replace(':', '-')}-{digest}.safetensors"
    if path.exists():
        return load_file(str(path))["features"]
    features = extractor.features(images)
    try:
        with atomic_path(path) as tmp:
            save_file({"features": features.contiguous()}, str(tmp))
    except OSError:
        pass
    return features


# ---------------------------------------------------------------------------- evaluate
def run_config(where: str | Path) -> dict:
    """The options of a run directory's config.yaml; {} for a model folder."""
    path = Path(where) / "config.yaml"
    return {k: v for k, v in load_yaml(path).items() if k != "environment"} if path.exists() else {}


def run_data(where: str | Path, model: dict, data: str | None) -> tuple[ImageSet, ImageSet]:
    """(training, held-out) images of a run, at the resolution of its generator's config `model`; `data` overrides
    the run's."""
    run_cfg = run_config(where)
    spec = data or run_cfg.get("data")
    if spec is None:
        raise UserError(f"--data: {where} is a model folder without its run's config; name the real images to compare with")
    max_images = run_cfg.get("max_images") if spec == run_cfg.get("data") else None
    return split(load_imageset(spec, model["resolution"], model["channels"]), max_images)


def chosen_metrics(asked: list[str] | None, heldout: ImageSet, where: str | Path) -> list[str]:
    """The metrics to compute: those asked for, else all that the data allows.

    Memorisation and membership need held-out images, which a run trained without `--max-images`
    lacks, and membership the run's checkpoint (its discriminator), which a model folder lacks:
    asked for, that is an error; as a default each is left out with a note, so that plain runs evaluate.
    """
    missing = {}
    if not len(heldout):
        for name in ("memorization", "membership"):
            missing[name] = ("needs held-out real images; train with --max-images (the rest of --data is held out) "
                             f"or leave {name} out")
    if "membership" not in missing and not (Path(where) / CHECKPOINT).exists():
        missing["membership"] = (f"needs the run's discriminator ({Path(where) / CHECKPOINT}); evaluate a run "
                                 "directory, not a model folder")
    if asked is None:
        for name, why in missing.items():
            log.info("%s skipped: it %s", name, why)
        return [m for m in METRICS if m not in missing]
    for name in asked:
        if name in missing:
            raise UserError(f"--metrics {name}: {missing[name]}")
    return asked


def load_discriminator(where: str | Path, model: dict, device: torch.device) -> torch.nn.Module:
    """A run's discriminator as its last checkpoint holds it, built from the run's options, in eval mode."""
    run_cfg = TrainConfig.from_dict(run_config(where), str(Path(where) / "config.yaml"))
    path = Path(where) / CHECKPOINT
    weights = net_state(read_state_dict(path, "checkpoint"), "discriminator")

    def build(config: dict) -> torch.nn.Module:
        return build_discriminator(config, run_cfg.spectral_norm, run_cfg.discriminator_norm, run_cfg.cond_d)

    return build_model(build, model, weights, path).to(device).eval()


def membership(where: str | Path, model: dict, train: ImageSet, heldout: ImageSet, device: torch.device) -> dict:
    """LOGAN's white-box attack with the run's D: members are training images, non-members held-out ones (at most
    MEMBERSHIP_MAX of each, the first of each split, which is itself a fixed seeded shuffle)."""
    discriminator = load_discriminator(where, model, device)
    conditional = bool(model.get("num_classes"))

    def scores(images: ImageSet) -> torch.Tensor:
        images = images.subset(torch.arange(min(len(images), MEMBERSHIP_MAX)))
        return discriminator_scores(discriminator, images.images, images.labels if conditional else None)

    return {**logan_attack(scores(train), scores(heldout)), "attack": "LOGAN white-box: D's score"}


def evaluate(where: str | Path, data: str | None = None, metrics: list[str] | None = None, n: int | None = None,
             features: str | None = None, inception_weights: str | None = None, out: str | Path | None = None,
             seed: int = 0, device: str = "auto") -> dict:
    """Compare a generator's samples with real images; return the report and write it as JSON.

    `metrics` None means every metric the data allows (see `chosen_metrics`).
    """
    generator, model = load_generator(where, device)  # first: a broken model is reported before any data is read
    train, heldout = run_data(where, model, data)
    metrics = chosen_metrics(metrics, heldout, where)
    reference = heldout if len(heldout) else train
    n = n or min(len(reference), 5000)
    if n < 10:
        raise UserError(f"--n: must be at least 10 (precision/recall and coverage need neighbours), got {n}")
    is_run = (Path(where) / "config.yaml").exists()
    out = Path(out) if out else (Path(where) / "evaluation.json" if is_run else Path("evaluation.json"))
    check_writable(out, "--out")
    extractor = pick_extractor(train, features, inception_weights, device)
    z = latents(list(range(seed, seed + n)), model["latent_dim"])
    fake_images = float_to_uint8(generate(generator, z, balanced_labels(n, model)))  # 8-bit, as real images are
    cache = Path(where) / "real_features" if is_run else cache_dir() / "real_features"
    f_fake, f_ref = extractor.features(fake_images), real_features(extractor, reference.images, cache)
    report = {
        "run": str(where), "extractor": extractor.name, "generated": n, "seed": seed,
        "reference": f"{'held-out' if len(heldout) else 'training'} images of {reference.source} ({len(reference)})",
    }
    if "fid" in metrics:
        report["fid"] = fid(f_fake, f_ref)
    if "kid" in metrics:
        report.update(kid(f_fake, f_ref))
    if "pr" in metrics:
        report.update(precision_recall(f_ref, f_fake))
    if "dc" in metrics:
        report.update(density_coverage(f_ref, f_fake))
    report["diversity"] = diversity(f_fake)
    if isinstance(extractor, DomainFeatures) and extractor.is_classifier:
        report.update(class_histogram_stats(extractor.predict_proba(fake_images), extractor.config["num_classes"]))
    if len(heldout):
        f_train = real_features(extractor, train.images, cache)
        report["fid_floor_train_vs_heldout"] = fid(f_train, f_ref)
    if "memorization" in metrics:
        audit = memorization_audit(f_fake, f_train, f_ref)
        pairs_png = out.with_name(out.stem + "_closest_pairs.png")
        save_closest_pairs(fake_images, train.images, audit["closest_pairs"], pairs_png)
        report["memorization"] = {**audit, "closest_pairs_png": str(pairs_png)}
    if "membership" in metrics:
        report["membership"] = membership(where, model, train, heldout, next(generator.parameters()).device)
    if "privacy" in model:  # what the accountant said the run spent, from the model's config.json
        report["privacy"] = {k: model["privacy"][k] for k in ("epsilon", "delta")}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    """The report as a table; KID carries its spread and the subsets it was measured on."""
    rows = [(k, f"{v:.4f}") for k, v in report.items() if isinstance(v, float) and k != "kid_std"]
    rows = [(k, f"{v} ± {report['kid_std']:.4f} (std over {report['kid_subsets']} subsets of "
                f"{report['kid_subset_size']} images per set)" if k == "kid" else v) for k, v in rows]
    if "memorization" in report:
        m = report["memorization"]
        rows += [("near_copy_share", f"{m['near_copy_share']:.4f}"), ("copying_z", f"{m['copying_z']:.4f}")]
    width = max(len(k) for k, _ in rows)
    lines = [f"extractor: {report['extractor']}", f"reference: {report['reference']}, generated: {report['generated']}"]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    if "memorization" in report:
        lines.append(f"  closest pairs: {report['memorization']['closest_pairs_png']}")
    if "membership" in report:
        m = report["membership"]
        lines.append(f"  membership (LOGAN, {m['members']} training vs {m['nonmembers']} held-out images): AUC "
                     f"{m['auc']:.4f} (0.5: no leak), top-half accuracy {m['logan_accuracy']:.4f}")
    if "privacy" in report:
        lines.append(f"  privacy: trained with epsilon {report['privacy']['epsilon']:.4g} at delta {report['privacy']['delta']:g}")
    return "\n".join(lines)


def train_features(data: str, out: str | Path, resolution: int | None = None, channels: int | None = None,
                   steps: int = 400, seed: int = 0, max_images: int | None = None) -> DomainFeatures:
    """`ganforge features train`: a domain feature network for `data`, saved in `out`."""
    check_writable_folder(Path(out), "--out")
    resolution = resolution or native_resolution(data) or 64
    train, _ = split(load_imageset(data, resolution, channels), max_images)
    features = train_domain_features(train.images, train.labels, steps=steps, seed=seed)
    features.save(out)
    return features
