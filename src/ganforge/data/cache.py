"""Decoded training images on disk, for folders too large to hold in memory.

A cache is a folder of three files:
- `images.u8`: every usable image, resized and centre-cropped exactly as the in-memory folder
  loader does, as uint8 rows of C x H x W bytes one after the other, so image i is read with one
  positioned read at i x C x H x W and never decoded again;
- `image-cache.json`, the manifest: format version, source folder, resolution, channels, class
  names, and for every source file its path, size and modification time (what tells a changed
  source), its SHA-256 (which bytes a row came from), and its row and label, or why it could not be
  decoded. It is the index from rows to files, and it is written last: a folder holds a complete
  cache only once it exists;
- while `prepare_cache` runs, a journal `.prepare.jsonl` and the rows so far `.images.u8.partial`.
  Rows are flushed to disk before the journal records them, so an interrupted prepare resumes
  where its journal ends, and a half-written cache is never read as a complete one.

Readers hold labels in memory and no pixels: `ImageCache.read` uses positioned reads into the
batch it returns, not a memory map whose touched pages would stay resident as an epoch goes on.
Crops (`ImageCache.crops`, for super-resolution and inpainting) are read the same way, each as the
rows it spans and nothing else: the pages a memory map's slice would touch.
"""

import contextlib
import errno
import hashlib
import json
import logging
import os
import signal
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError
from tqdm import tqdm

from ganforge import __version__
from ganforge.atomic import atomic_path, fsync
from ganforge.data.folder import check_image_shape, decode_image, find_images, folder_classes, is_grey, label_of
from ganforge.data.photos import MAX_PATCHES, crop_corners, crops_per_photo
from ganforge.errors import UserError
from ganforge.imageio import IMAGE_SUFFIXES, UNREADABLE_IMAGE, check_writable_folder

log = logging.getLogger("ganforge")
FORMAT, VERSION = "ganforge-image-cache", 1
MANIFEST, PIXELS = "image-cache.json", "images.u8"
JOURNAL, PARTIAL = ".prepare.jsonl", ".images.u8.partial"
BATCH_FILES = 32  # files per task of the process pool, and per journal line (what an interruption can lose)


def is_cache(spec: str | Path) -> bool:
    """Whether `spec` names a prepared image cache, complete or not."""
    folder = Path(spec)
    return (folder / MANIFEST).is_file() or (folder / JOURNAL).is_file()


# ---------------------------------------------------------------------------- source files
def source_files(root: Path, paths: list[Path]) -> list[dict]:
    """Path (relative to `root`), size and modification time of each file: what tells a changed source.

    A file that cannot be stat'ed (a broken link) gets -1 for both; decoding then counts it as bad.
    """
    files = []
    for p in paths:
        try:
            st = p.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        files.append({"path": p.relative_to(root).as_posix(), "size": size, "mtime_ns": mtime})
    return files


def source_changes(recorded: list[dict], current: list[dict]) -> str:
    """What differs between two lists of `source_files` ('' if nothing), naming the first few files."""
    old = {f["path"]: (f["size"], f["mtime_ns"]) for f in recorded}
    new = {f["path"]: (f["size"], f["mtime_ns"]) for f in current}
    groups = (("changed", [p for p in new if p in old and new[p] != old[p]]),
              ("added", [p for p in new if p not in old]), ("removed", [p for p in old if p not in new]))
    return "; ".join(f"{len(names)} {what}: {_first(names)}" for what, names in groups if names)


def _first(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


# ---------------------------------------------------------------------------- decoding (in worker processes)
def _decode_batch(paths: list[str], resolution: int, channels: int) -> list[tuple[str | None, bytes | None, str]]:
    """(SHA-256, pixels, error) of each file: each is read once, hashed, and decoded from those bytes."""
    results = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            results.append((None, None, str(e)))
            continue
        digest = hashlib.sha256(data).hexdigest()
        try:
            results.append((digest, decode_image(BytesIO(data), resolution, channels).tobytes(), ""))
        except UnidentifiedImageError:  # (its message names the in-memory file, not the path)
            results.append((digest, None, "not an image Pillow can read"))
        except UNREADABLE_IMAGE as e:
            results.append((digest, None, str(e) or type(e).__name__))
    return results


def _grey_batch(paths: list[str]) -> bool:
    return all(is_grey(Path(p)) for p in paths)


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops them after their current task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Workers:
    """`map` in order, over a pool of decoding processes, or in this process for one worker (no start-up cost).

    Workers start the platform's default way, as torch's DataLoader workers do (fork on Linux: no start-up
    import). They run Pillow, numpy and hashlib only, never torch, whose thread pools a forked child must not use.
    """

    def __init__(self, count: int):
        self.count = count
        self.pool = ProcessPoolExecutor(count, initializer=_ignore_interrupts) if count > 1 else None

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, func, batches: list, *args):
        """func(batch, *args) for each batch, in order; at most two tasks per worker wait, so results never pile up."""
        if self.pool is None:
            yield from (func(batch, *args) for batch in batches)
            return
        pending = deque()
        for batch in batches:
            pending.append(self.pool.submit(func, batch, *args))
            if len(pending) >= 2 * self.count:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# ---------------------------------------------------------------------------- prepare
@dataclass
class PrepareReport:
    """What `prepare_cache` did, for the one-line summary of `ganforge data prepare`."""

    folder: Path
    source: Path
    images: int
    shape: tuple[int, int, int]
    bad: list[str] = field(default_factory=list)  # "path (why)" of each file that could not be decoded
    reused: bool = False  # the cache was complete and its source unchanged: nothing was decoded
    resumed: int = 0  # files an interrupted prepare had already done
    changes: str = ""  # how the source differed from an earlier cache in the folder
    manifest: dict = field(default_factory=dict, repr=False)  # as written or found: `ImageCache.from_manifest` opens it

    def summary(self) -> str:
        what = f"{self.images} images {'x'.join(map(str, self.shape))} of {self.source}"  # C x H x W, as `train` logs
        if self.reused:
            return f"{self.folder}: up to date ({what}); nothing to decode"
        line = f"{self.folder}: {what} written"
        if self.bad:
            line += f", {len(self.bad)} bad file(s) skipped ({_first([b.split(' (')[0] for b in self.bad])})"
        if self.changes:
            line += f"; the source had changed ({self.changes})"
        if self.resumed:
            line += f"; resumed after {self.resumed} files done earlier"
        return line


def prepare_cache(source: str | Path, resolution: int, out: str | Path, workers: int | None = None,
                  channels: int | None = None, progress: bool = True, paths: list[Path] | None = None) -> PrepareReport:
    """Decode every image under `source` once, in `workers` processes (default: every core), into the cache `out`.

    A complete cache of the same source, resolution and channels is reused if no file changed (sizes and
    modification times), and made again if one did; an interrupted prepare continues. Unreadable files are
    skipped and counted; labels come from first-level sub-folders, as for the in-memory folder loader.
    `channels` None keeps an existing cache's channels, or takes them from the data (1 if every image is grey).
    `paths`: the source's images (`find_images`), when the caller has already searched it.
    """
    out = Path(out)
    check_image_shape(resolution, channels)
    workers = workers if workers is not None else available_cores()
    if workers < 1:
        raise UserError(f"--workers: must be at least 1, got {workers}")
    paths = find_images(Path(source), "SOURCE") if paths is None else paths
    if not paths:
        raise UserError(f"SOURCE: {source} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    check_writable_folder(out, "--out")
    files, root = source_files(Path(source), paths), Path(source).resolve()
    changes, channels, manifest = _check_existing(out, root, resolution, channels, files)
    if changes is None:
        (out / JOURNAL).unlink(missing_ok=True)  # stopped after its manifest, before deleting its journal
        return PrepareReport(out, root, manifest["count"], tuple(manifest["shape"]), reused=True, manifest=manifest)
    if changes:
        log.info("%s: the source %s changed since the cache was prepared (%s); preparing it again", out, root, changes)
        (out / MANIFEST).unlink()
    out.mkdir(parents=True, exist_ok=True)
    class_names = folder_classes(Path(source), paths)
    try:
        return _prepare(out, root, source, files, paths, class_names, resolution, channels, changes, workers, progress)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"--out: the disk holding {out} is full ({e.strerror}); free some space and run the same "
                        "command again: it continues where it stopped, and the folder is not a usable cache "
                        "until then") from None


def _prepare(out: Path, root: Path, source, files: list[dict], paths: list[Path], class_names: list[str],
             resolution: int, channels: int | None, changes: str, workers: int, progress: bool) -> PrepareReport:
    """The decoding and the commit of `prepare_cache`, once its checks have passed."""
    with _Workers(workers) as pool:
        if channels is None:
            channels = 1 if all(pool.map(_grey_batch, _batches([str(p) for p in paths]))) else 3
        plan = {"format": FORMAT, "version": VERSION, "source": str(root), "resolution": resolution, "channels": channels,
                "files": files}
        done = _resume(out, hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest(),
                       channels * resolution * resolution)
        entries = _decode_into(out, root, files, done, pool, resolution, channels, class_names, progress)
    rows = [e for e in entries if "row" in e]
    bad = [f"{e['path']} ({e['error']})" for e in entries if "row" not in e]
    if not rows:
        for name in (JOURNAL, PARTIAL):
            (out / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            out.rmdir()  # nothing was made: leave no empty folder
        raise UserError(f"SOURCE: {source} holds no readable image ({len(bad)} file(s) could not be decoded)")
    os.replace(out / PARTIAL, out / PIXELS)
    shape = [channels, resolution, resolution]
    manifest = {**{k: v for k, v in plan.items() if k != "files"}, "count": len(rows), "shape": shape,
                "class_names": class_names, "ganforge": __version__, "files": entries}
    with atomic_path(out / MANIFEST) as tmp:  # the commit: from here on the folder is a complete cache
        tmp.write_text(json.dumps(manifest))
    (out / JOURNAL).unlink()
    return PrepareReport(out, root, len(rows), tuple(shape), bad, resumed=len(done), changes=changes, manifest=manifest)


def available_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _batches(items: list) -> list[list]:
    return [items[i : i + BATCH_FILES] for i in range(0, len(items), BATCH_FILES)]


def _check_existing(out: Path, root: Path, resolution: int, channels: int | None, files: list[dict]):
    """(None, channels, its manifest) if `out` holds an up-to-date cache of this source; else (what changed, or '',
    channels, None).

    A folder holding anything but a cache of this source, resolution and channels is refused, so that
    prepare never overwrites what it did not write.
    """
    if not (out / MANIFEST).is_file():
        ours = any((out / name).exists() for name in (JOURNAL, PARTIAL, PIXELS))
        if out.is_dir() and not ours and any(out.iterdir()):
            raise UserError(f"--out: {out} is not empty and holds no image cache; choose a new or empty folder")
        return "", channels, None
    manifest = read_manifest(out, "--out", check_version=False)
    held = (manifest.get("source"), manifest.get("resolution"), manifest.get("channels"))
    asked = (str(root), resolution, held[2] if channels is None else channels)
    if asked != held:
        raise UserError(f"--out: {out} holds the cache of {held[0]} at {held[1]} px and {held[2]} channel(s), not of "
                        f"{asked[0]} at {resolution} px and {asked[2]}; choose another --out, or delete it")
    if manifest["version"] != VERSION:
        return f"the cache is of format version {manifest['version']}, this ganforge writes {VERSION}", asked[2], None
    if _pixel_bytes(out) != manifest["count"] * int(np.prod(manifest["shape"])):
        return f"its {PIXELS} is truncated or damaged", asked[2], None
    changes = source_changes(manifest["files"], files)
    return (changes, asked[2], None) if changes else (None, asked[2], manifest)


def _pixel_bytes(folder: Path) -> int:
    """The size of a cache's pixel file (0 if it is missing)."""
    pixels = folder / PIXELS
    return pixels.stat().st_size if pixels.is_file() else 0


def _resume(out: Path, plan: str, record: int) -> list[dict]:
    """The journal's entries of files already done under this plan (their rows kept), or [] after starting afresh.

    A last journal line cut short is dropped, and with it any rows written after the last full line.
    """
    journal, partial = out / JOURNAL, out / PARTIAL
    done = []
    if journal.is_file():
        lines = journal.read_text().splitlines()
        if lines and _json_or_none(lines[0]) == {"plan": plan}:
            for line in lines[1:]:
                batch = _json_or_none(line)
                if batch is None:
                    break
                done += batch
    if not partial.exists() and (out / PIXELS).exists() and done:
        os.replace(out / PIXELS, partial)  # finished, then stopped before the manifest: its rows are all there
    rows = sum("row" in e for e in done)
    if done and partial.exists() and partial.stat().st_size >= rows * record:
        os.truncate(partial, rows * record)
        with atomic_path(journal) as tmp:  # without a line cut short, if there was one
            tmp.write_text("".join(json.dumps(x) + "\n" for x in [{"plan": plan}, *_batches(done)]))
        return done
    (out / PIXELS).unlink(missing_ok=True)
    partial.write_bytes(b"")
    journal.write_text(json.dumps({"plan": plan}) + "\n")
    fsync(journal)
    return []


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _decode_into(out: Path, root: Path, files: list[dict], done: list[dict], pool: _Workers, resolution: int,
                 channels: int, class_names: list[str], progress: bool) -> list[dict]:
    """Decode the files after `done`, appending rows to the partial array and a line per batch to the journal."""
    class_index = {name: i for i, name in enumerate(class_names)}
    entries, rows = list(done), sum("row" in e for e in done)
    batches = _batches(files[len(done) :])
    paths = [[str(root / f["path"]) for f in batch] for batch in batches]
    bar = tqdm(total=len(files), initial=len(done), desc=f"preparing {out}", unit="img", disable=not progress,
               dynamic_ncols=True)
    with open(out / PARTIAL, "ab") as pixels, open(out / JOURNAL, "a") as journal, bar:
        for batch, results in zip(batches, pool.map(_decode_batch, paths, resolution, channels)):
            lines = []
            for f, (digest, data, error) in zip(batch, results):
                entry = {**f, "sha256": digest}
                if data is None:
                    entry["error"] = error
                else:
                    pixels.write(data)
                    entry.update(row=rows, label=label_of(root, root / f["path"], class_index))
                    rows += 1
                lines.append(entry)
            pixels.flush()
            os.fsync(pixels.fileno())  # the rows are on disk before the journal says they are
            _commit(journal, lines)
            entries += lines
            bar.update(len(batch))
    return entries


def _commit(journal, lines: list[dict]) -> None:
    """Record a batch as done: one journal line, flushed to disk."""
    journal.write(json.dumps(lines) + "\n")
    journal.flush()
    os.fsync(journal.fileno())


# ---------------------------------------------------------------------------- reading
def read_manifest(folder: Path, option: str = "--data", check_version: bool = True) -> dict:
    """The manifest of a complete cache, or a one-line UserError naming what is wrong with the folder."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        if (folder / JOURNAL).is_file():
            raise UserError(f"{option}: {folder} is an unfinished image cache (its `ganforge data prepare` was "
                            "interrupted); run that command again to finish it")
        raise UserError(f"{option}: {folder} is not an image cache (no {MANIFEST})")
    manifest = _json_or_none(path.read_text(errors="replace"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "version" not in manifest:
        raise UserError(f"{option}: {path} is not a ganforge image cache manifest")
    if check_version and manifest["version"] != VERSION:
        raise UserError(f"{option}: {folder} is an image cache of format version {manifest['version']}, and this "
                        f"ganforge reads version {VERSION}; prepare it again with `ganforge data prepare`")
    return manifest


def prepared_resolution(spec: str) -> int | None:
    """The resolution of the cache `spec`, or None if it is not one."""
    return read_manifest(Path(spec))["resolution"] if is_cache(spec) else None


class ImageCache:
    """A prepared cache, opened read-only: labels in memory, pixels read from disk batch by batch.

    It has what the trainer asks of a training set (`len`, `shape`, `read`) and what setup code asks
    of an ImageSet (`labels`, `class_names`, `channels`, `resolution`, `source`, `subset`).
    """

    def __init__(self, folder: Path, shape: tuple[int, int, int], rows: np.ndarray, labels: torch.Tensor,
                 class_names: list[str], source: str, file=None, lock=None):
        self.folder, self.rows, self.labels, self.class_names, self.source = folder, rows, labels, class_names, source
        self.record_shape = shape
        self.record = int(np.prod(shape))
        self.file = file or open(folder / PIXELS, "rb", buffering=0)
        self.lock = lock or threading.Lock()  # for systems without os.preadv, where a read is a seek then a read

    @classmethod
    def open(cls, folder: str | Path, source: str | None = None, option: str = "--data",
             files: list[dict] | None = None) -> "ImageCache":
        """Open the cache `folder` (`source`: how logs and saved configs name the data; default the folder).

        Refused in one line: an unfinished cache, another format version, a truncated pixel file, and a
        source folder changed since the cache was prepared. A source that no longer exists is only noted.
        `files`: the source's `source_files`, when the caller has them (else its folder is searched).
        """
        folder = Path(folder)
        manifest = read_manifest(folder, option)
        root, side = Path(manifest["source"]), manifest["shape"][-1]
        if root.is_dir():
            changes = source_changes(manifest["files"], source_files(root, find_images(root)) if files is None else files)
            if changes:
                raise UserError(f"{option}: {folder} was prepared from {root}, which has changed since ({changes}); "
                                f"update it with `ganforge data prepare {root} --resolution {side} --out {folder}`")
        else:
            log.warning("%s: its source %s is gone; training on the images as they were prepared", folder, root)
        return cls.from_manifest(folder, manifest, source, option)

    @classmethod
    def from_manifest(cls, folder: Path, manifest: dict, source: str | None = None,
                      option: str = "--data") -> "ImageCache":
        """The cache `folder` whose manifest is `manifest` (read and checked against its source already, or just
        written by `prepare_cache`); a truncated pixel file is refused in one line."""
        shape, count = tuple(manifest["shape"]), manifest["count"]
        size, expected = _pixel_bytes(folder), count * int(np.prod(shape))
        if size != expected:
            raise UserError(f"{option}: {folder / PIXELS} is truncated or damaged ({size} bytes where {count} images "
                            f"take {expected}); prepare the cache again")
        labels = torch.tensor([e["label"] for e in manifest["files"] if "row" in e], dtype=torch.int64)
        return cls(folder, shape, np.arange(count), labels, manifest["class_names"], source or str(folder))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.record_shape)

    @property
    def channels(self) -> int:
        return self.record_shape[0]

    @property
    def resolution(self) -> int:
        return self.record_shape[-1]

    def subset(self, indices: torch.Tensor) -> "ImageCache":
        """The images at `indices`, in that order (sharing this cache's open file)."""
        return ImageCache(self.folder, self.record_shape, self.rows[indices.numpy()], self.labels[indices],
                          self.class_names, self.source, self.file, self.lock)  # one file, one lock

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        """The images at `indices` as uint8 (N, C, H, W): one positioned read per image, straight into the batch."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        batch = np.empty((len(rows), *self.record_shape), dtype=np.uint8)
        flat = batch.reshape(len(rows), self.record)
        for i, row in enumerate(rows):
            if self._read_at(memoryview(flat[i]), int(row) * self.record) != self.record:
                raise UserError(f"--data: {self.folder / PIXELS} ended early (truncated while training?)")
        return torch.from_numpy(batch)

    def crops(self, size: int, max_patches: int = MAX_PATCHES) -> "CachedCrops":
        """`extract_patches`' `size` x `size` crops of these images, in this order, read from disk crop by crop."""
        if size > self.resolution:
            raise UserError(f"--patch-size: {self.folder} holds {self.resolution}x{self.resolution} images, smaller than "
                            f"the {size}x{size} crops; use a smaller --patch-size, or prepare the cache with "
                            f"--resolution {size} or more")
        limit = crops_per_photo(len(self), max_patches)
        corners = [[(i, y, x) for y, x in crop_corners(self.resolution, self.resolution, size, limit, seed=i)]
                   for i in range(len(self))]
        return CachedCrops(self, size, np.array([c for image in corners for c in image], dtype=np.int64).reshape(-1, 3))

    def _read_at(self, buffer: memoryview, offset: int) -> int:
        if hasattr(os, "preadv"):
            return os.preadv(self.file.fileno(), [buffer], offset)
        with self.lock:
            self.file.seek(offset)
            return self.file.readinto(buffer)


class CachedCrops:
    """Square crops of a cache's images, each read from disk alone: what `extract_patches` makes in memory.

    A crop at (y, x) of side `size` is read as rows y..y+size of each channel of its image (one positioned
    read per channel, `size` x resolution bytes), never the whole image. It has what the trainer asks of a
    training set (`len`, `shape`, `read`).
    """

    def __init__(self, cache: ImageCache, size: int, items: np.ndarray):
        self.cache, self.size, self.items = cache, size, items  # items: (image index in `cache`, y, x) per crop

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self), self.cache.channels, self.size, self.size

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        """The crops at `indices` as uint8 (N, C, size, size)."""
        cache, size = self.cache, self.size
        side, channels = cache.resolution, cache.channels
        batch = np.empty((len(indices), channels, size, size), dtype=np.uint8)
        rows = np.empty((channels, size, side), dtype=np.uint8)  # the rows a crop spans, in each channel
        for out, (image, y, x) in zip(batch, self.items[np.asarray(indices, dtype=np.int64)]):
            start = int(cache.rows[image]) * cache.record + int(y) * side
            for c in range(channels):
                if cache._read_at(memoryview(rows[c]).cast("B"), start + c * side * side) != size * side:
                    raise UserError(f"--data: {cache.folder / PIXELS} ended early (truncated while training?)")
            out[:] = rows[:, :, x : x + size]
        return torch.from_numpy(batch)
