"""Writing files so that a crash never leaves a half-written one in place of a good one."""

import contextlib
import os
from pathlib import Path


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
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
