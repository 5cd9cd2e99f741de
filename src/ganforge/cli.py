"""The `ganforge` command: argument parsing only; each subcommand calls one API function."""

import argparse
import dataclasses
import logging
import sys
import warnings
from pathlib import Path

from ganforge import __version__
from ganforge.config import GROUPS, RUN, TrainConfig, field_kind, flag, load_yaml
from ganforge.errors import UserError
from ganforge.nets.sr import ENSEMBLE_SIZES


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, in the help section its metadata names, so an option is spelled in one place only."""
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    for f in dataclasses.fields(TrainConfig):
        kind, group = field_kind(f), groups[f.metadata["group"]]
        default = "" if f.metadata["base"] is None else f" (default: {f.metadata['base']}" + "".join(
            f"; {value} for --task {task}" for task, value in (f.metadata["by_task"] or {}).items()) + (
            "" if f.metadata["private"] is None else f"; {f.metadata['private']} with --dp-epsilon") + ")"
        if kind is bool:
            group.add_argument(f"--{flag(f.name)}", dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{f.metadata['help']}{default}")
            continue
        group.add_argument(f"--{flag(f.name)}", dest=f.name, type=kind, default=None,
                           choices=f.metadata.get("choices"), help=f"{f.metadata['help']}{default}")
    groups[RUN].add_argument("--config", help="YAML file of options (command-line flags override it)")
    groups[RUN].add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")


def _train(args) -> None:
    from ganforge.training.distributed import main_process_from_env
    from ganforge.training.run import train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = {k: v for k, v in vars(args).items() if k in names and v is not None}
    base = load_yaml(args.config) if args.config else {}
    cfg = TrainConfig.from_dict({**base, **flags}, args.config or "options")
    # What --config sets is given as much as a flag: a resumed run applies the same rules to both.
    given = {name: getattr(cfg, name) for name in {**base, **flags}}
    out = train(cfg, resume=args.resume, given=given)
    if main_process_from_env():  # under torchrun, one line for the run, not one per process
        print(f"run saved in {out}  (samples: {out}/samples/latest.png, model: {out}/model)")


def _model_location(args) -> str:
    """The generator a `sample` or `interpolate` call names: a run directory or `--model`."""
    if (args.model or args.run) is None:
        raise UserError(f"{args.command}: name a run directory or --model")
    return args.model or args.run


def _sample(args) -> None:
    from ganforge.pipelines.sampling import sample

    print(sample(_model_location(args), args.out, n=args.n, seed=args.seed, device=args.device, class_name=args.class_name,
                 truncation=args.truncation))


def _interpolate(args) -> None:
    from ganforge.pipelines.sampling import interpolate
    from ganforge.seeding import parse_seeds

    print(interpolate(_model_location(args), parse_seeds(args.seeds), args.out, frames=args.frames, device=args.device,
                      class_name=args.class_name, truncation=args.truncation))


def _augment(args) -> None:
    from ganforge.pipelines.synthetic_data import augment

    out = augment(_model_location(args), args.out, per_class=args.per_class, seed=args.seed, filter=args.filter,
                  features=args.features, device=args.device, truncation=args.truncation)
    print(f"synthetic data set in {out} (manifest: {out}/manifest.csv, provenance: {out}/augment.json)")


def _evaluate(args) -> None:
    from ganforge.saved_model import model_task

    task = model_task(args.run)
    if task == "inpaint":
        from ganforge.pipelines.inpaint_evaluation import evaluate_inpaint, format_inpaint_report

        print(format_inpaint_report(evaluate_inpaint(args.run, args.data, args.out, args.device)))
        return
    if task == "superres":
        from ganforge.pipelines.superres_evaluation import evaluate_superres, format_superres_report

        print(format_superres_report(evaluate_superres(args.run, args.data, args.out, args.device)))
        return
    from ganforge.pipelines.evaluation import evaluate, format_report, parse_metrics

    report = evaluate(args.run, data=args.data, metrics=parse_metrics(args.metrics), n=args.n, features=args.features,
                      inception_weights=args.inception_weights, out=args.out, seed=args.seed, device=args.device)
    print(format_report(report))


def _upscale(args) -> None:
    from ganforge.pipelines.upscaling import upscale

    out = upscale(args.input, args.out, scale=args.scale, model=args.model, variant=args.variant, tile=args.tile,
                  device=args.device, overwrite=args.overwrite, self_ensemble=args.self_ensemble)
    print(f"saved {out}")


def _inpaint(args) -> None:
    from ganforge.pipelines.inpainting import inpaint

    out = inpaint(args.input, args.out, mask=args.mask, boxes=args.box, model=args.model, overwrite=args.overwrite,
                  device=args.device, work_size=args.work_size, texture=args.texture)
    print(f"saved {out}")


STYLIZE_OPTIMISATION = ("size", "strength", "preserve_colour", "steps", "seed", "features")  # defaults: stylize()'s


def _stylize(args) -> None:
    given = {name: getattr(args, name) for name in STYLIZE_OPTIMISATION if getattr(args, name) is not None}
    if args.model is not None:
        from ganforge.pipelines.fast_stylize import fast_stylize

        if args.style is not None or given:
            wrong = "--style" if args.style is not None else f"--{flag(next(iter(given)))}"
            raise UserError(f"{wrong}: the fast network of --model learned its style and settings; give one or the other")
        out = fast_stylize(args.input, args.model, args.out, overwrite=args.overwrite, device=args.device)
    else:
        from ganforge.pipelines.stylize import stylize

        if args.style is None:
            raise UserError("--style: name a style image (or --model, a fast network trained with --task style)")
        out = stylize(args.input, args.style, args.out, **given, overwrite=args.overwrite, device=args.device)
    print(f"saved {out}")


def _translate(args) -> None:
    from ganforge.pipelines.translation import translate

    out = translate(args.run, args.input, args.out, direction=args.direction, overwrite=args.overwrite,
                    device=args.device)
    print(f"saved {out}")


def _export(args) -> None:
    from ganforge.api import Translator, load

    model = load(args.model, device="cpu")
    if args.direction is not None and not isinstance(model, Translator):
        raise UserError(f"--direction: {args.model} is not a translator; only `train --task translate` models have two")
    options = {"direction": args.direction or "a2b"} if isinstance(model, Translator) else {}
    out = model.export(args.out or f"{Path(args.model).name}.onnx", format=args.format, overwrite=args.overwrite,
                       **options)
    print(f"saved {out} (what its inputs and outputs mean: {out}.json)")


def _studio(args) -> None:
    from ganforge.studio import launch

    launch(host=args.host, port=args.port, runs=args.runs, device=None if args.device == "auto" else args.device)


def _data_prepare(args) -> None:
    from ganforge.data.cache import prepare_cache

    print(prepare_cache(args.source, args.resolution, args.out, workers=args.workers, channels=args.channels).summary())


def _features_train(args) -> None:
    from ganforge.pipelines.evaluation import train_features

    features = train_features(args.data, args.out, args.resolution, args.channels, args.steps, args.seed, args.max_images)
    print(f"{features.name} saved in {args.out}")


EXAMPLES = """examples:
  ganforge train --data mnist5k --out runs/mnist5k
      train a DCGAN on the embedded 5000 MNIST digits
  ganforge sample --model mnist5k --n 64 --out digits.png
      a grid of 64 digits from the shipped mnist5k generator
  ganforge upscale photo.jpg --scale 4
      photo_x4.png, four times wider and taller, with the shipped super-resolution model
  ganforge stylize photo.jpg --style painting.jpg --out painted.png
      the photo painted in the style of painting.jpg (no model, nothing downloaded)
  ganforge stylize photo.jpg --model runs/style --out painted.png
      the same in one pass, with a network trained by `ganforge train --task style`
  ganforge translate runs/p2m photo.jpg --direction a2b --out painted.png
      through a CycleGAN trained by `ganforge train --task translate --data ./photos --data-b ./paintings`
  ganforge export mnist5k --format onnx --out mnist5k.onnx
      the generator as ONNX, for onnxruntime and other runtimes (mnist5k.onnx.json says what goes in and out)
  ganforge studio
      a web page for every task at http://127.0.0.1:7860
  ganforge data prepare ./photos --resolution 256 --out data/photos256
      decode a large folder once into a cache that `ganforge train --data data/photos256` streams from
"""
# What a Ctrl-C leaves behind differs by command; each says so in its own words.
INTERRUPTED = {
    "train": "the run can continue from its last checkpoint with --resume",
    "sample": "every image already written is complete; none is half-written",
    "interpolate": "nothing was written",
    "augment": "nothing was written (the data set appears only once it is complete)",
    "evaluate": "no report was written",
    "upscale": "every output already written is complete; run the same command again to do the rest",
    "inpaint": "every output already written is complete; run the same command again to do the rest",
    "stylize": "every output already written is complete; run the same command again to do the rest",
    "translate": "every output already written is complete; run the same command again to do the rest",
    "features": "nothing was written",
    "export": "nothing was written",
    "studio": "the studio has stopped; a training run it started goes on in its own process",
    "data": "the images decoded so far are kept; run the same command again to finish",
}


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """What every command that writes one output per input image takes: --overwrite and --device."""
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _add_truncation_option(p: argparse.ArgumentParser) -> None:
    """--truncation of the commands that draw latents: sample, interpolate, augment."""
    p.add_argument("--truncation", type=float, default=1.0,
                   help="the truncation trick: z from a normal truncated to [-2, 2], times this (0-1; 1: none; "
                        "0.7 trades variety for cleaner images)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganforge", description="Train GANs on images, then make pictures with them.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ganforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a GAN on an embedded set or a folder of images")
    _add_train_options(p)
    p.set_defaults(func=_train)

    for name, func, helptext in (("sample", _sample, "sample images from a trained generator"),
                                 ("interpolate", _interpolate, "walk through latent space between seeds")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run", nargs="?", help="run directory or exported model folder")
        p.add_argument("--model", help="a shipped model's name (e.g. mnist5k) or a model folder")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
        _add_truncation_option(p)
        p.add_argument("--class", dest="class_name", metavar="CLASS",
                       help="class-conditional models: the class, by name or index" +
                       (" (default: a grid with one row per class)" if name == "sample" else ""))
        p.set_defaults(func=func)
        if name == "sample":
            p.add_argument("--n", type=int, default=64, help="number of images")
            p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
            p.add_argument("--out", default="samples.png", help="an image file for a grid, or a folder for one PNG each")
        else:
            p.add_argument("--seeds", default="0,1,2,3", help="seeds to walk through, e.g. 1,2,3,4 or 0-7")
            p.add_argument("--frames", type=int, default=8, help="frames between consecutive seeds")
            p.add_argument("--out", default="interpolation.png", help=".png grid (a row per leg) or .gif")
    p = sub.add_parser("augment", help="write a labelled synthetic data set from a class-conditional generator")
    p.add_argument("run", nargs="?", help="run directory or exported model folder")
    p.add_argument("--model", help="a shipped model's name (e.g. mnist5k-conditional) or a model folder")
    p.add_argument("--per-class", type=int, required=True, help="images per class")
    p.add_argument("--out", required=True, help="new (or empty) folder: CLASS/*.png, manifest.csv (file,label,class_name,seed), augment.json")
    p.add_argument("--seed", type=int, default=0, help="image j of class c uses seed + 1000000 c + j")
    p.add_argument("--filter", action="store_true",
                   help="keep only images the domain classifier assigns to their intended class (more are drawn to make up)")
    p.add_argument("--features", help="the domain classifier for --filter (from `ganforge features train`; "
                   "default: trained once on the model's training data and cached)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _add_truncation_option(p)
    p.set_defaults(func=_augment)

    p = sub.add_parser("evaluate", help="FID, KID, precision/recall, density/coverage and a memorisation audit; "
                                        "PSNR/SSIM against bicubic for super-resolution; hole PSNR/SSIM/L1 against "
                                        "the classical fills for inpainting")
    p.add_argument("run", help="run directory, exported model folder or shipped model name")
    p.add_argument("--data", help="real images to compare with (default: the run's --data; its held-out split if it has one); "
                                  "for super-resolution and inpainting, images (an embedded set, a folder or one image) "
                                  "to score on")
    p.add_argument("--metrics", help="comma list of fid, kid, pr, dc (coverage), memorization (default: all; "
                                    "memorization only where the run holds images out)")
    p.add_argument("--n", type=int, help="generated images (default: as many as the reference set, at most 5000)")
    p.add_argument("--features", help="a domain feature network folder (from `ganforge features train`)")
    p.add_argument("--inception-weights", help="local file of the FID Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth)")
    p.add_argument("--out", help="JSON report (default: RUN/evaluation.json)")
    p.add_argument("--seed", type=int, default=0, help="generated image i uses seed + i")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("upscale", help="upscale an image or a folder of images x2 or x4 (super-resolution)")
    p.add_argument("input", help="an image file or a folder of images (searched recursively)")
    p.add_argument("--scale", type=int, choices=[2, 4], help="x2 or x4 (default: the model's; 4 for the shipped models)")
    p.add_argument("--out", help="output image, or folder for a folder input (default: NAME_xS.png / FOLDER_xS)")
    p.add_argument("--model", help="a super-resolution run directory, model folder or shipped name (default: shipped)")
    p.add_argument("--variant", choices=["fidelity", "gan"],
                   help="fidelity (default): the L1 model, faithful; gan: the adversarially fine-tuned model, sharper")
    p.add_argument("--tile", type=int, default=256, help="input tile side: bounds memory; any value gives the same image")
    p.add_argument("--self-ensemble", type=int, default=1, choices=ENSEMBLE_SIZES,
                   help="run the model on this many flips/rotations of the image and average them (EDSR+): "
                        "a little more PSNR for that many times the time (default 1: off)")
    _add_output_options(p)
    p.set_defaults(func=_upscale)

    p = sub.add_parser("inpaint", help="fill holes in an image or a folder of images (inpainting)")
    p.add_argument("input", help="an image file or a folder of images (searched recursively)")
    p.add_argument("--mask", help="mask image (non-zero pixels are holes; the image's size), or for a folder input a "
                                  "folder of masks matched by file stem")
    p.add_argument("--box", action="append", metavar="X,Y,W,H",
                   help="a rectangular hole in pixels, instead of --mask (repeat for more)")
    p.add_argument("--out", help="output image, or folder for a folder input (default: NAME_filled.png / FOLDER_filled)")
    p.add_argument("--model", help="an inpainting run directory, model folder or shipped name "
                                   "(default: inpaint-photos; inpaint-digits for MNIST-like digits)")
    p.add_argument("--work-size", type=int, default=512,
                   help="the largest window the model fills at full size; larger ones are filled at this size and "
                        "scaled back (bounds memory)")
    p.add_argument("--texture", action="store_true",
                   help="quilt the detail of the image's known pixels (fur, grass, grain) into each smooth fill, at "
                        "full resolution; slower, and it can copy a thin line or edge along with the texture")
    _add_output_options(p)
    p.set_defaults(func=_inpaint)

    p = sub.add_parser("stylize", help="paint an image, or a folder of images, in the style of another image "
                                       "(optimisation, Gatys et al.; no model needed), or with a fast style network "
                                       "(--model)")
    p.add_argument("input", help="an image file or a folder of images (searched recursively)")
    p.add_argument("--style", help="the style image (a painting, a texture); or --model")
    p.add_argument("--model", help="a fast style network (a run of `train --task style` or its model folder) instead "
                                   "of --style: one pass at the image's own size, tile by tile; the options below "
                                   "up to --features are the optimisation's and are refused with it")
    p.add_argument("--out", help="output image, or folder for a folder input (default: NAME_styled.png / FOLDER_styled)")
    p.add_argument("--size", type=int,
                   help="longest side of the result in pixels, at most 2048 (default: 512; smaller images keep "
                        "their size); time and memory grow with its square")
    p.add_argument("--strength", type=float,
                   help="weight of the style against the content (default: 1.0; 0 gives the content back)")
    p.add_argument("--preserve-colour", action="store_true", default=None,
                   help="transfer the style's luminance only and keep the content's colours")
    p.add_argument("--steps", type=int, help="L-BFGS loss evaluations per image (default: 100)")
    p.add_argument("--seed", type=int, help="seed of the noise the optimisation starts with (default: 0)")
    p.add_argument("--features", metavar="FILE",
                   help="a local torchvision VGG19 weights file (.pth or .safetensors) for Gatys' features "
                        "(default: the built-in random network, nothing downloaded)")
    _add_output_options(p)
    p.set_defaults(func=_stylize)

    p = sub.add_parser("translate", help="translate an image, or a folder of images, between the two collections "
                                         "of a CycleGAN (`train --task translate`)")
    p.add_argument("run", help="a translation run directory or its model folder")
    p.add_argument("input", help="an image file or a folder of images (searched recursively)")
    p.add_argument("--direction", default="a2b", help="a2b (default): from --data's collection to --data-b's; b2a: back")
    p.add_argument("--out", help="output image, or folder for a folder input (default: NAME_a2b.png / FOLDER_a2b)")
    _add_output_options(p)
    p.set_defaults(func=_translate)

    p = sub.add_parser("export", help="write a model's network as an ONNX file, with a JSON sidecar of what its "
                                      "inputs and outputs mean (needs `pip install ganforge[onnx]`)")
    p.add_argument("model", help="a shipped model's name, a run directory or a model folder")
    p.add_argument("--format", default="onnx", help="onnx (the only one)")
    p.add_argument("--out", help="the .onnx file (default: MODEL.onnx here); the sidecar is OUT.json")
    p.add_argument("--direction", choices=["a2b", "b2a"], help="translators: which generator (default: a2b)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT and its sidecar")
    p.set_defaults(func=_export)

    p = sub.add_parser("studio", help="a web page for every task: generate, upscale, augment, inpaint, stylize, "
                                      "translate and train (needs `pip install ganforge[studio]`)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--runs", default="runs", help="the folder of runs whose models the studio offers and where its "
                                                  "training tab writes new runs (default: runs)")
    p.add_argument("--device", default="auto", help="where the models run: auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=_studio)

    p = sub.add_parser("data", help="prepare training data")
    dsub = p.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("prepare", help="decode a folder of images once, resized and cropped, into an on-disk cache "
                                        "that `train --data FOLDER` streams from (for sets too large for memory)")
    p.add_argument("source", help="a folder of images (searched recursively; first-level sub-folders are classes)")
    p.add_argument("--resolution", type=int, required=True,
                   help="image size, as `train --resolution`: each image is resized (short side) and centre-cropped to "
                        "this square; --task superres and inpaint cut their --patch-size crops from it")
    p.add_argument("--out", required=True, help="the cache folder (new, empty, or a cache of the same source to update)")
    p.add_argument("--workers", type=int, help="decoding processes (default: one per core)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="1 or 3 (default: from the data, as `train --channels`)")
    p.set_defaults(func=_data_prepare)

    p = sub.add_parser("features", help="feature networks for the metrics")
    fsub = p.add_subparsers(dest="features_command", required=True)
    p = fsub.add_parser("train", help="train a domain feature network on real images (a classifier where labels exist)")
    p.add_argument("--data", required=True, help="embedded set or folder")
    p.add_argument("--out", required=True, help="folder for config.json and weights.safetensors")
    p.add_argument("--resolution", type=int)
    p.add_argument("--channels", type=int)
    p.add_argument("--max-images", type=int, help="train on the same seeded subset as `train --max-images`")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_features_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"ganforge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganforge {args.command}: interrupted; {INTERRUPTED[args.command]}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
