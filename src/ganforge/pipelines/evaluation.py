"""`ganforge evaluate` and `ganforge features train`, and the monitor that evaluates during training.

Every report names its feature extractor: numbers from different extractors are never mixed.
The reference set is the run's held-out split where it has one (`--max-images`), so that FID,
precision/recall and the memorisation audit compare against real images the GAN never saw.
"""

import json
import logging
from pathlib import Path

from ganforge.atomic import atomic_path
from ganforge.config import load_yaml
from ganforge.data import ImageSet, load_imageset, split
from ganforge.data.imageset import native_resolution
from ganforge.errors import UserError
from ganforge.imageio import check_writable
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
from ganforge.saved_model import resolve_model
from ganforge.device import pick_device
from ganforge.latent import balanced_labels, generate, latents
from ganforge.pipelines.sampling import load_generator

log = logging.getLogger("ganforge")
METRICS = ("fid", "kid", "pr", "dc", "memorization")
ALIASES = {"coverage": "dc", "precision": "pr", "recall": "pr", "memorisation": "memorization", "density": "dc"}


def parse_metrics(text: str) -> list[str]:
    names = []
    for name in (t.strip().lower() for t in text.split(",") if t.strip()):
        name = ALIASES.get(name, name)
        if name not in METRICS:
            raise UserError(f"--metrics: unknown metric {name!r}; choose from fid, kid, pr, dc (coverage), memorization")
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


# ---------------------------------------------------------------------------- evaluate
def run_data(where: str | Path, data: str | None) -> tuple[ImageSet, ImageSet, dict]:
    """(training, held-out) images of a run, at its generator's resolution; `data` overrides the run's."""
    model_dir = resolve_model(where)
    model = json.loads((model_dir / "config.json").read_text())
    run_config_path = Path(where) / "config.yaml"
    run_cfg = load_yaml(run_config_path) if run_config_path.exists() else {}
    spec = data or run_cfg.get("data")
    if spec is None:
        raise UserError(f"--data: {where} is a model folder without its run's config; name the real images to compare with")
    max_images = run_cfg.get("max_images") if spec == run_cfg.get("data") else None
    train, heldout = split(load_imageset(spec, model["resolution"], model["channels"]), max_images)
    return train, heldout, model


def evaluate(where: str | Path, data: str | None = None, metrics: list[str] | None = None, n: int | None = None,
             features: str | None = None, inception_weights: str | None = None, out: str | Path | None = None,
             seed: int = 0, device: str = "auto") -> dict:
    """Compare a generator's samples with real images; return the report and write it as JSON."""
    metrics = metrics or [m for m in METRICS]
    generator, _ = load_generator(where, device)  # first: a broken model is reported before any data is read
    train, heldout, model = run_data(where, data)
    if "memorization" in metrics and len(heldout) == 0:
        raise UserError("--metrics memorization: needs held-out real images; train with --max-images "
                        "(the rest of --data is held out) or leave memorization out")
    reference = heldout if len(heldout) else train
    n = n or min(len(reference), 5000)
    if n < 10:
        raise UserError(f"--n: must be at least 10 (precision/recall and coverage need neighbours), got {n}")
    out = Path(out) if out else (Path(where) / "evaluation.json" if (Path(where) / "config.yaml").exists() else Path("evaluation.json"))
    check_writable(out, "--out")
    extractor = pick_extractor(train, features, inception_weights, device)
    fake_images = generate(generator, latents(list(range(seed, seed + n)), model["latent_dim"]), balanced_labels(n, model))
    f_fake, f_ref, f_train = extractor.features(fake_images), extractor.features(reference.images), None
    report = {
        "run": str(where), "extractor": extractor.name, "generated": n, "seed": seed,
        "reference": f"{'held-out' if len(heldout) else 'training'} images of {reference.source} ({len(reference)})",
    }
    if "fid" in metrics:
        report["fid"] = fid(f_fake, f_ref)
    if "kid" in metrics:
        report["kid"], report["kid_std"] = kid(f_fake, f_ref)
    if "pr" in metrics:
        report.update(precision_recall(f_ref, f_fake))
    if "dc" in metrics:
        report.update(density_coverage(f_ref, f_fake))
    report["diversity"] = diversity(f_fake)
    if isinstance(extractor, DomainFeatures) and extractor.is_classifier:
        report.update(class_histogram_stats(extractor.predict_proba(fake_images), extractor.config["num_classes"]))
    if len(heldout):
        f_train = extractor.features(train.images)
        report["fid_floor_train_vs_heldout"] = fid(f_train, f_ref)
    if "memorization" in metrics:
        audit = memorization_audit(f_fake, f_train, f_ref)
        pairs_png = out.with_name(out.stem + "_closest_pairs.png")
        save_closest_pairs(fake_images, train.images, audit["closest_pairs"], pairs_png)
        report["memorization"] = {**audit, "closest_pairs_png": str(pairs_png)}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    rows = [(k, v) for k, v in report.items() if isinstance(v, (int, float)) and k not in ("generated", "seed")]
    if "memorization" in report:
        m = report["memorization"]
        rows += [("near_copy_share", m["near_copy_share"]), ("copying_z", m["copying_z"])]
    width = max(len(k) for k, _ in rows)
    lines = [f"extractor: {report['extractor']}", f"reference: {report['reference']}, generated: {report['generated']}"]
    lines += [f"  {k:<{width}}  {v:.4f}" for k, v in rows]
    if "memorization" in report:
        lines.append(f"  closest pairs: {report['memorization']['closest_pairs_png']}")
    return "\n".join(lines)


def train_features(data: str, out: str | Path, resolution: int | None = None, channels: int | None = None,
                   steps: int = 400, seed: int = 0, max_images: int | None = None) -> DomainFeatures:
    """`ganforge features train`: a domain feature network for `data`, saved in `out`."""
    out = check_writable(Path(out), "--out")
    resolution = resolution or native_resolution(data) or 64
    train, _ = split(load_imageset(data, resolution, channels), max_images)
    features = train_domain_features(train.images, train.labels, steps=steps, seed=seed)
    features.save(out)
    return features
