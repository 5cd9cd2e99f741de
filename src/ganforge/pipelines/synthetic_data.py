"""`ganforge augment`: a labelled synthetic data set from a class-conditional generator.

The output is a folder any tool can read: one sub-folder of PNGs per class, `manifest.csv`
(file, label, class_name, seed; one row per PNG, nothing else on disk) and `augment.json`
(which model, the SHA-256 of its weights, the seeds, the filter's acceptance rates, versions).
It is built in a hidden folder beside `out` and swapped into place at the end (`atomic_folder`),
so an interrupted run leaves no half-written data set behind.

Image j of class c uses seed `seed + 1_000_000 * c + j`, so every image can be made again.
With `filter`, the domain classifier of the model's training data (or `features`) judges each
image, only those it assigns to their intended class are kept, and more seeds are drawn to make
up the number.
"""

import csv
import hashlib
import json
from pathlib import Path

import torch
from tqdm import tqdm

import ganforge
from ganforge.atomic import atomic_folder
from ganforge.config import load_yaml
from ganforge.data import load_imageset, split
from ganforge.errors import UserError
from ganforge.metrics import load_domain_features
from ganforge.metrics.domain import domain_features
from ganforge.imageio import check_writable_folder, to_pil
from ganforge.saved_model import resolve_model
from ganforge.latent import check_truncation, generate, latents
from ganforge.pipelines.sampling import class_folder, load_generator

SEED_STRIDE = 1_000_000  # seeds of class c start at seed + SEED_STRIDE * c
MAX_DRAWS_PER_IMAGE = 20  # with --filter, give up on a class that needs more draws than this per kept image


def _check_request(out: Path, per_class: int, filter: bool, features: str | None, truncation: float) -> None:
    """The options of `augment`, checked before any work."""
    if not 1 <= per_class < SEED_STRIDE:
        raise UserError(f"--per-class: must be in 1..{SEED_STRIDE - 1}, got {per_class}")
    if features and not filter:
        raise UserError("--features: only used with --filter")
    check_truncation(truncation)
    _check_out(out)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file; name a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out: {out} is not empty; name a new or empty folder (augment never overwrites)")
    check_writable_folder(out.parent, "--out")  # the finished folder is renamed into place there


def _classifier(where: str | Path, model: dict, features: str | None):
    """The domain classifier that judges the classes of generated images."""
    if features:
        extractor = load_domain_features(features)
    else:
        run_config = Path(where) / "config.yaml"
        run_cfg = load_yaml(run_config) if run_config.exists() else {}
        spec, max_images = run_cfg.get("data", model.get("data")), run_cfg.get("max_images", model.get("max_images"))
        if not spec:
            raise UserError(f"--filter: {where} does not say which data it was trained on; give --features "
                            "(a classifier from `ganforge features train`)")
        try:
            data = load_imageset(spec, model["resolution"], model["channels"])
        except UserError as e:
            raise UserError(f"--filter: cannot load the model's training data ({e}); give --features") from None
        if data.class_names != model["class_names"]:
            raise UserError(f"--filter: the classes of {spec} are not the model's; give --features")
        extractor = domain_features(split(data, max_images)[0])
    if not extractor.is_classifier or extractor.config["num_classes"] != model["num_classes"]:
        raise UserError(f"--features: {extractor.name} does not classify the model's {model['num_classes']} classes")
    return extractor


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def augment(where: str | Path, out: str | Path, per_class: int, seed: int = 0, filter: bool = False,
            features: str | None = None, device: str = "auto", batch_size: int = 256, truncation: float = 1.0) -> Path:
    """Write `per_class` generated images of every class into `out` (see the module's docstring)."""
    _check_request(Path(out), per_class, filter, features, truncation)
    generator, model = load_generator(where, device)
    return write_synthetic_set(generator, model, where, out, per_class, seed, filter, features, batch_size, truncation)


def write_synthetic_set(generator: torch.nn.Module, model: dict, where: str | Path, out: str | Path, per_class: int,
                        seed: int = 0, filter: bool = False, features: str | None = None, batch_size: int = 256,
                        truncation: float = 1.0) -> Path:
    """`augment` with the generator of `where` already loaded (the Python API's models hold theirs)."""
    out = Path(out)
    _check_request(out, per_class, filter, features, truncation)
    if not model.get("num_classes"):
        raise UserError(f"{where}: an unconditional model cannot make labelled data; train one with --conditional")
    extractor = _classifier(where, model, features) if filter else None
    names = model["class_names"]
    folders = [class_folder(name, c) for c, name in enumerate(names)]
    if len(set(folders)) != len(folders):
        folders = [f"class{c}" for c in range(len(names))]
    rows, stats = [], {}
    with atomic_folder(out) as tmp:
        bar = tqdm(total=per_class * len(names), unit="img", desc="augment", dynamic_ncols=True)
        for c, name in enumerate(names):
            (tmp / folders[c]).mkdir()
            kept, drawn, passed = 0, 0, 0
            while kept < per_class:
                if drawn >= MAX_DRAWS_PER_IMAGE * per_class:
                    raise UserError(f"--filter: the classifier assigned only {kept} of {drawn} images of class {name!r} "
                                    "to that class; this generator does not make it well enough")
                # With the filter, draw a little more than is missing: most images pass.
                n = min(batch_size, per_class - kept if extractor is None else max(16, int(1.25 * (per_class - kept))))
                seeds = [seed + SEED_STRIDE * c + j for j in range(drawn, drawn + n)]
                images = generate(generator, latents(seeds, model["latent_dim"], truncation), torch.full((n,), c))
                drawn += n
                keep = torch.ones(n, dtype=torch.bool)
                if extractor is not None:
                    keep = extractor.predict_proba(images).argmax(dim=1) == c
                passed += int(keep.sum())
                for image, s in zip(images[keep][: per_class - kept], torch.tensor(seeds)[keep].tolist()):
                    file = f"{folders[c]}/seed{s:09d}.png"
                    to_pil(image).save(tmp / file, format="PNG")
                    rows.append((file, c, name, s))
                    kept += 1
                    bar.update(1)
            stats[name] = {"kept": kept, "drawn": drawn, "passed": passed}
        bar.close()
        with open(tmp / "manifest.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "label", "class_name", "seed"])
            writer.writerows(rows)
        model_dir = resolve_model(where)
        record = {
            "model": str(where), "model_folder": str(model_dir),
            "generator_sha256": _sha256(model_dir / "generator.safetensors"),
            "class_names": names, "class_folders": folders, "per_class": per_class, "images": len(rows),
            "seed": seed, "seed_rule": f"image j of class c uses seed {seed} + {SEED_STRIDE} * c + j (see manifest.csv)",
            "truncation": truncation,
            "filter": None if extractor is None else {
                "classifier": extractor.name, "rule": "kept when the classifier's most likely class is the intended one",
                "per_class": stats,  # drawn: generated; passed: assigned to their class; kept: written (<= passed)
                "acceptance": round(sum(s["passed"] for s in stats.values()) / sum(s["drawn"] for s in stats.values()), 4)},
            "ganforge": ganforge.__version__, "torch": str(torch.__version__),
        }  # fmt: skip
        (tmp / "augment.json").write_text(json.dumps(record, indent=2))
        _check_out(out)  # again: whatever appeared in --out meanwhile must not be swapped out and deleted
    return out
