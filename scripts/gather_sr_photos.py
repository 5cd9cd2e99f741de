"""Gather the super-resolution training photos: the embedded set's 18 plus the photographs inside Debian packages.

The embedded `photos` set (scikit-image, scikit-learn, matplotlib) holds only 18 training photos, and the shipped
SR models learnt them nearly by heart. Debian ships more real photographs: wallpapers (MATE, Plasma, Lomiri),
OpenCV's sample data, KDE's jigsaw puzzles (Palapeli), Scribus's templates and GCompris's photographs of animals,
monuments and musicians (WebP files inside Qt resource bundles, read by `rcc_resources`). This script fetches those packages
with apt (no other download), picks the photographs by name (drawings, renders, calibration boards, logos, blurred
shots, near-duplicates and photos that are mostly sky or bokeh left out, all chosen by looking at them) and
writes every photo as PNG into one folder that `ganforge train --task superres --data FOLDER` reads.

Photos larger than `--max-side` are shrunk (Lanczos) so that their long side is that: a 2560-pixel wallpaper is
mostly smooth bokeh at full size, and shrinking it concentrates its detail and washes out JPEG's blocks, so that
the network learns detail rather than compression. The four held-out photos of the embedded set (chelsea,
rocket, camera, flower) are none of these, so they stay held out.

    python scripts/gather_sr_photos.py data/sr-photos      # about 335 MB of packages fetched, 197 photos written
"""

import argparse
import functools
import io
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from PIL import Image

from ganforge.atomic import atomic_folder
from ganforge.data.photos import TRAIN_PHOTOS, _embedded_path

OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
MATE_NATURE = "usr/share/backgrounds/mate/nature"
PLASMA = "usr/share/wallpapers"
BACKGROUNDS = "usr/share/backgrounds"
GCOMPRIS = "usr/share/gcompris-qt/rcc"


def gcompris(activity: str, names: str) -> list[str]:
    """Paths of one GCompris activity's photos: its Qt resource bundle, then the path inside it."""
    return [f"{activity}.rcc/gcompris/src/activities/{activity}/resource/{name}.webp" for name in names.split()]


# (Debian package, folder inside it, file names); a name that is a folder (a Plasma wallpaper, a folder of sizes)
# gives its largest image, and a name through a `.rcc` file is a file inside that Qt resource bundle.
DEBIAN_PHOTOS = [
    ("opencv-doc", OPENCV_DATA, [
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
        "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg",
        "graf1.png", "graf3.png", "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg", "right.jpg",
        "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "sudoku.png"]),
    ("mate-backgrounds", MATE_NATURE, [
        "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg", "LadyBird.jpg",
        "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg"]),
    ("plasma-workspace-wallpapers", PLASMA, [
        "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite", "OneStandsOut",
        "Path", "summer_1am"]),
    ("lomiri-wallpapers-16.04", BACKGROUNDS, [
        "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg",
        "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg", "analogpattern_by_Peter_Nerlich.jpg",
        "friends_by_Aitzol_Berasategi.jpg", "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg"]),
    ("lomiri-wallpapers-20.04", BACKGROUNDS, ["Kleiber_by_Lukas_Baubkus.jpg"]),
    ("palapeli-data", "usr/share/palapeli/collection", [
        "castle-maintenon.jpg", "cincinnati-bridge.jpg", "citrus-fruits.jpg", "european-honey-bee.jpg",
        "panther-chameleon-female.jpg"]),
    ("scribus-template", "usr/share/scribus/templates", ["br2/nature.jpg", "menu2/pizza.jpg"]),
    ("gcompris-qt-data", GCOMPRIS, [  # the underwater, mostly blurred shots (clickgame) and the paintings left out
        *gcompris("explore_world_animals", "animals/bison animals/chameleon animals/crocodile animals/dragon "
                  "animals/giraffe animals/hedgehog animals/jaguar animals/kangaroo animals/koala animals/lemur "
                  "animals/moose animals/narwhal animals/panda animals/polar_bear animals/scarlet_macaw"),
        *gcompris("explore_farm_animals", "animals/cat animals/chicken animals/cow animals/dog animals/duck "
                  "animals/horse animals/owl animals/pig animals/sheep"),
        *gcompris("explore_monuments", "usa/canyondeChelly usa/castillodeSanMarcos usa/castleClinton usa/fortSumter "
                  "usa/georgeWashingtonBirthplace usa/lincolnMemorial usa/mountRushmore usa/navajo usa/statueofLiberty "
                  "egypt/bentPyramid egypt/greatPyramidOfGiza egypt/meidumPyramid egypt/redPyramid india/ajantaCave "
                  "india/charminar india/gatewayofIndia india/goldenTemple india/greatStupa india/hawaMahal "
                  "india/konarkSunTemple india/mysorePalace india/qutubMinar india/rangGhar india/victoriaMemorial "
                  "france/arlesAmphitheater france/chateaudeChambord france/chateaudeChenonceau "
                  "france/citedeCarcassonne france/eiffelTower france/montStMichel france/palaisdesPapes "
                  "france/pontduGard france/reimsCathedral france/rocamadour germany/aulaPalatina "
                  "germany/berlinCathedral germany/brandenburgGate germany/neuschwansteinCastle germany/schwerinPalace "
                  "germany/trierImperialBaths germany/wormsCathedral wonders/chichenItza wonders/christTheRedeemer "
                  "wonders/colosseum wonders/greatWallofChina wonders/machuPicchu wonders/petra wonders/tajMahal"),
        *gcompris("erase", "alpaca bee butterfly calf camels caterpillar chamaeleon cheetah crab flying_fox gibbon "
                  "giraffe goat gorilla gosling heron horse kingfisher kitten long_nosed_monkey macaque meerkats "
                  "northern_harrier nubian_ibex penguin pika red_panda rhinoceros spoonbills squirrel swans toucan"),
        *gcompris("explore_world_music", "music/africa music/america music/australia music/ireland music/italy "
                  "music/japan music/mexico music/orchestra")]),
]
PACKAGES = [package for package, _, _ in DEBIAN_PHOTOS]


def fetch_packages(names: list[str], into: Path) -> None:
    """Download the .deb files with apt (no install, no root needed to unpack) and unpack each into `into`."""
    subprocess.run(["apt-get", "download", *names], cwd=into, check=True)
    for deb in into.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(into / "root")], check=True)


@functools.cache  # a bundle holds many of the photos: read it once
def rcc_resources(bundle: Path) -> dict[str, bytes]:
    """Every file inside a Qt resource bundle (.rcc), by its path: Qt's documented binary layout (a header, a tree
    of nodes, a name table in UTF-16, data blocks that may be zlib-compressed), so no Qt is needed to read it."""
    raw = bundle.read_bytes()
    if raw[:4] != b"qres":
        raise ValueError(f"{bundle}: not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">4I", raw[4:20])
    node_size = 14 if version == 1 else 22  # from version 2 on, each node ends with an 8-byte modification time

    def name(offset: int) -> str:
        length = struct.unpack(">H", raw[names + offset:names + offset + 2])[0]
        return raw[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    files, pending = {}, [(0, "")]
    while pending:
        index, prefix = pending.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", raw[node:node + 6])
        path = f"{prefix}{name(name_offset)}" if index else ""
        if flags & 2:  # a directory: its children are consecutive nodes
            count, first = struct.unpack(">II", raw[node + 6:node + 14])
            pending += [(child, f"{path}/" if index else "") for child in range(first, first + count)]
            continue
        offset = data + struct.unpack(">I", raw[node + 10:node + 14])[0]
        blob = raw[offset + 4:offset + 4 + struct.unpack(">I", raw[offset:offset + 4])[0]]
        if flags & 4:
            raise ValueError(f"{bundle}: {path} is zstd-compressed, which this reader does not handle")
        files[path] = zlib.decompress(blob[4:]) if flags & 1 else blob  # qCompress: a 4-byte size, then zlib
    return files


def pixel_count(path: Path) -> int:
    with Image.open(path) as image:  # reads the header only
        return image.size[0] * image.size[1]


def largest_size(wallpaper: Path) -> Path:
    """The largest image of a Plasma wallpaper's folder of sizes."""
    return max((wallpaper / "contents" / "images").iterdir(), key=pixel_count)


def photo_source(folder: Path, name: str) -> tuple[Path | io.BytesIO, str]:
    """The image a `DEBIAN_PHOTOS` name stands for, and the stem of the file it is written to: a file, the
    largest size of a Plasma wallpaper's folder, or a file inside a Qt resource bundle (whose stem names the
    bundle too: two GCompris activities have a giraffe)."""
    if ".rcc/" in name:
        bundle, inner = name.split(".rcc/")
        return io.BytesIO(rcc_resources(folder / f"{bundle}.rcc")[inner]), f"{bundle}-{Path(inner).stem}"
    source = folder / name
    return largest_size(source) if source.is_dir() else source, Path(name).stem


def shrunk(path: Path | io.BytesIO, max_side: int) -> Image.Image:
    """The photo as RGB or L, no longer side than `max_side`. Alpha is dropped, not flattened onto white as
    `ganforge.imageio.open_rgb_or_l` does: the shipped models trained on these files
    (flattening would change one of them, chicky_512, in 0.4% of its pixels)."""
    image = Image.open(path)
    image = image.convert("RGB") if image.mode not in ("RGB", "L") else image
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the photos into (must not exist)")
    parser.add_argument("--max-side", type=int, default=1024, help="shrink larger photos to this long side")
    parser.add_argument("--packages", nargs="+", choices=list(PACKAGES), default=list(PACKAGES), metavar="PACKAGE",
                        help="take the photos of these Debian packages only (an earlier recipe's set; default: all of "
                             "them: " + ", ".join(PACKAGES) + ")")
    args = parser.parse_args()
    if args.out.exists():
        print(f"{args.out}: already exists; give a new folder", file=sys.stderr)
        return 2
    chosen = [entry for entry in DEBIAN_PHOTOS if entry[0] in args.packages]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            fetch_packages([package for package, _, _ in chosen], work)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"apt-get download/dpkg-deb failed ({e}); this needs Debian's apt", file=sys.stderr)
            return 2
        with atomic_folder(args.out) as staging:  # all of the photos or none
            for package, name in TRAIN_PHOTOS:
                shutil.copy(_embedded_path(package, name), staging / f"{package}-{name}")
            for package, folder, names in chosen:
                for name in names:
                    source, stem = photo_source(work / "root" / folder, name)
                    shrunk(source, args.max_side).save(staging / f"{package}-{stem}.png")
    print(f"{len(list(args.out.iterdir()))} photos in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
