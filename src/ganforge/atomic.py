"""Writing files and folders so that a crash (kill -9, power cut) leaves the old version or the new one.

A file is written under a temporary name, flushed to disk (fsync), renamed over the old one, and
the rename itself flushed (fsync of the folder): without the first fsync a power cut can leave a
renamed but empty file, without the second the rename may be lost. A folder whose files belong
together (a saved model: config and weights) is built beside it and swapped in whole.
Temporary names are hidden and carry the writer's pid: `.<name>.<pid>.tmp...`.
"""

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import sys
from pathlib import Path

TEMPORARY = re.compile(r"^\.(.*)\.(\d+)\.tmp")
ASIDE = ".tmp-old"  # suffix of an old folder that `atomic_folder` moved aside
FOLDER_HANDLES = os.open in os.supports_dir_fd  # not on Windows


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it; put back at once (this runs at import, before any thread)
    os.umask(mask)
    return mask


# What `open()` gives a new file (0o644 under the usual umask). Some writers create files owner-only
# (safetensors' save_file makes 0o600), which a model folder shared with a group or served by another
# user would then refuse; every file these helpers publish gets the mode a plain write would have.
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; it replaces `path` only when the block succeeds.

    The temporary name keeps `path`'s suffix, for writers that pick a format from it. `path`'s
    folder is created here, at the first write: commands only check that their outputs can be
    written (`imageio.check_writable`), so a command that fails early leaves no empty folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        fsync(tmp)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(folder: str | Path):
    """Yield an empty temporary folder beside `folder`; when the block succeeds it becomes `folder` in one step.

    On Linux the new folder and the old one are swapped with renameat2(RENAME_EXCHANGE), then the
    old one is deleted: a reader or a killed writer sees the old files or the new ones, never a mix.
    Where that call does not exist (other systems, file systems without it) the old folder is moved
    aside first: for an instant there is no folder at all, but still never a mixed one. A writer
    killed in that instant leaves the old folder under its `-old` name: `remove_leftovers` puts it back.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for path in tmp.rglob("*"):  # files, and sub-folders' entries
            if path.is_file():
                os.chmod(path, FILE_MODE)
            fsync(path)
        _fsync_folder(tmp)
        if not folder.exists():
            os.rename(tmp, folder)
        elif not _exchange(tmp, folder):  # on success `tmp` holds the old folder, deleted below
            aside = folder.with_name(f".{folder.name}.{os.getpid()}{ASIDE}")
            os.rename(folder, aside)
            try:
                os.rename(tmp, folder)
            except BaseException:
                os.rename(aside, folder)  # the old folder stays, as it does when the block fails
                raise
            shutil.rmtree(aside)
        _fsync_folder(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_together(folder: str | Path, names: list[str]) -> list[bytes]:
    """The contents of files `names` of `folder`, all from one version of it even while `atomic_folder` swaps it.

    The files are opened through one handle on the folder. If the version it holds is deleted before
    every file is open, the read starts again on the new version.
    """
    folder = Path(folder)
    if not FOLDER_HANDLES:
        return [(folder / name).read_bytes() for name in names]
    for attempt in range(3):
        files: list[int] = []
        try:
            handle = os.open(folder, os.O_RDONLY)  # missing for an instant while the fallback swaps it
            try:
                for name in names:
                    files.append(os.open(name, os.O_RDONLY, dir_fd=handle))
            finally:
                os.close(handle)
            contents = []
            for fd in files:
                with open(fd, "rb", closefd=False) as f:
                    contents.append(f.read())
            return contents
        except FileNotFoundError:
            if attempt == 2:
                raise
        finally:
            for fd in files:
                os.close(fd)


def remove_leftovers(folder: str | Path) -> None:
    """Delete the temporary files and folders that writers killed mid-write left in `folder`.

    Those of a process still running are kept: it may be writing them now. An old folder that
    `atomic_folder` moved aside is the committed version when its name is free (the writer was killed
    before the new one took it): it is renamed back, not deleted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        match = TEMPORARY.match(path.name)
        if not match or _running(int(match.group(2))):
            continue
        target = folder / match.group(1)
        if path.name.endswith(ASIDE) and not target.exists() and not target.is_symlink():
            os.rename(path, target)
            _fsync_folder(folder)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of an earlier process with this pid; this one is not writing now
    if os.name != "posix":
        return True  # no harmless way to ask; a hidden leftover is only wasted space
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def fsync(path: Path) -> None:
    """Flush a file's data (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (POSIX; Windows cannot open a folder, and NTFS logs renames)."""
    if os.name == "posix":
        fsync(folder)


AT_FDCWD, RENAME_EXCHANGE = -100, 2


@functools.cache
def _renameat2():
    """Linux's renameat2 from the C library (glibc 2.28+), or None."""
    if not sys.platform.startswith("linux"):
        return None
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step; False where the system or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # an old kernel, or a file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))
