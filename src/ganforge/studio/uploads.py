"""What the studio accepts from a browser: images and zips of images, checked before anything is decoded or written.

A web page is open to anyone who can reach it, so every upload is treated as hostile: its size
on disk is capped, an image's pixel count is read from its header and refused above the cap
before a single pixel is decoded (a decompression bomb, a few kB of PNG that would decode to
gigabytes, never reaches the decoder), and only formats ganforge reads as images are taken. A
zip is read from its directory alone: every member must be a plain image file at a relative
path inside the archive (no `..`, no absolute path, no link), and the members' sizes, count and
pixels are capped before one is extracted. Violations are a `UserError` with one line that says
what was refused, which the studio shows on the page.
"""

import io
import stat
import zipfile
from pathlib import Path, PurePosixPath

from PIL import Image

from ganforge.errors import UserError
from ganforge.imageio import IMAGE_SUFFIXES, UNREADABLE_IMAGE
from ganforge.pipelines.image_files import open_image

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # one uploaded file; Gradio refuses larger ones before they are stored
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 4096 * 4096  # an image to work on; PIL.Image.MAX_IMAGE_PIXELS is set to this in the studio's process
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_BYTES = 500 * 1024 * 1024  # uncompressed, all members together
IMAGE_FORMATS = {"PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF"}  # Pillow's names of what ganforge reads as images
MAX_ZIP_RATIO = 200  # uncompressed / compressed size of one member: beyond it, a zip bomb


def checked_image(path: str | Path | None, what: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The uploaded image at `path`, decoded only after `check_upload` passed it."""
    if path is None:
        raise UserError(f"{what}: upload an image first")
    check_upload(Path(path), what, max_pixels)
    try:
        return open_image(Path(path))
    except UNREADABLE_IMAGE as e:
        raise UserError(f"{what}: not a readable image ({e})") from None


def check_upload(source: Path | bytes, what: str = "image", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Refuse an uploaded image (a file, or its bytes) over the size cap, not an image ganforge reads, or with more
    pixels than `max_pixels` by its header; nothing is decoded. Returns its (width, height)."""
    size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise UserError(f"{what}: refused, the file is {size / 2**20:.1f} MB; the studio takes images up to "
                        f"{MAX_IMAGE_BYTES // 2**20} MB")
    return check_pixels(io.BytesIO(source) if isinstance(source, bytes) else source, what, max_pixels)


def check_pixels(source, what: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Refuse an image file (a path or an open binary file) that is not an image ganforge reads, or whose header
    says it has more than `max_pixels` pixels; nothing is decoded. Returns its (width, height)."""
    try:
        with Image.open(source) as im:  # reads the header only
            width, height, fmt = im.width, im.height, im.format
    except Image.DecompressionBombError:
        raise UserError(f"{what}: refused, the image declares more pixels than the studio decodes "
                        f"({max_pixels / 1e6:.1f} megapixels)") from None
    except UNREADABLE_IMAGE:
        raise UserError(f"{what}: not an image (PNG, JPEG, WebP, BMP, GIF or TIFF)") from None
    if fmt not in IMAGE_FORMATS:
        raise UserError(f"{what}: {fmt} images are not taken; use PNG, JPEG, WebP, BMP, GIF or TIFF")
    if width * height > max_pixels:
        raise UserError(f"{what}: refused, {width}x{height} is {width * height / 1e6:.1f} megapixels; the studio "
                        f"takes at most {max_pixels / 1e6:.1f} here")
    return width, height


def extract_images(archive: str | Path | None, dest: Path) -> int:
    """Extract a zip of images into the new folder `dest` after checking every member (see the module's docstring);
    returns the number of images. Folders inside the zip are kept (they are the classes of a conditional run)."""
    if archive is None:
        raise UserError("zip: upload a zip of images first")
    archive = Path(archive)
    if archive.stat().st_size > MAX_UPLOAD_BYTES:
        raise UserError(f"zip: larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"zip: not a readable zip file ({e})") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not _ignored(m.filename)]
        _check_members(members)
        for member in members:
            with zf.open(member) as f:
                check_pixels(f, f"zip: {member.filename}")
        dest.mkdir(parents=True)
        for member in members:
            target = dest.joinpath(*PurePosixPath(member.filename).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as out:
                remaining = member.file_size  # the directory's sizes were checked: never write more than they say
                while remaining > 0 and (block := src.read(min(remaining, 1 << 20))):
                    out.write(block)
                    remaining -= len(block)
    return len(members)


def _ignored(name: str) -> bool:
    """Files that archivers add beside the user's (macOS resource forks and Finder's notes)."""
    parts = PurePosixPath(name).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1] == ".DS_Store")


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    if not members:
        raise UserError("zip: holds no files")
    if len(members) > MAX_ZIP_MEMBERS:
        raise UserError(f"zip: {len(members)} files; the studio takes at most {MAX_ZIP_MEMBERS}")
    total = 0
    for m in members:
        path = PurePosixPath(m.filename.replace("\\", "/"))
        if m.filename.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
            raise UserError(f"zip: refused, {m.filename!r} points outside the archive")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise UserError(f"zip: refused, {m.filename!r} is a link")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"zip: {m.filename!r} is not an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if m.file_size > MAX_IMAGE_BYTES:
            raise UserError(f"zip: {m.filename!r} is {m.file_size / 2**20:.0f} MB; at most "
                            f"{MAX_IMAGE_BYTES // 2**20} MB an image")
        if m.file_size > MAX_ZIP_RATIO * max(m.compress_size, 1) and m.file_size > 1 << 20:
            raise UserError(f"zip: refused, {m.filename!r} expands {m.file_size // max(m.compress_size, 1)} times "
                            "(a zip bomb?)")
        total += m.file_size
    if total > MAX_ZIP_BYTES:
        raise UserError(f"zip: {total / 2**20:.0f} MB of images uncompressed; at most {MAX_ZIP_BYTES // 2**20} MB")


def safe_name(text: str, default: str) -> str:
    """A run's folder name from what the user typed: letters, digits, '-' and '_' only (never a path)."""
    name = "".join(c for c in text.strip() if c.isascii() and (c.isalnum() or c in "-_"))[:64]
    return name or default

