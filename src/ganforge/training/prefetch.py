"""The next batch of a streamed training set, read in a background thread while the current step runs.

Reading a batch from an on-disk cache is positioned file reads, which release the GIL: one thread
reading update u + 1 while update u trains keeps the trainer from waiting on the disk once warm.
"""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch


class Prefetcher:
    """Pixels of D update u from `read(indices(u))`, where update u + 1 was already being read in the background.

    Updates follow one another, so the guess is right except after a rollback, when the update asked for is
    simply read then: which pixels an update gets never depends on what was prefetched. `indices` is called
    in the caller's thread only. Nothing is read for updates at or past `end`.
    """

    def __init__(self, read: Callable[[torch.Tensor], torch.Tensor], indices: Callable[[int], torch.Tensor], end: int):
        self.read, self.indices, self.end = read, indices, end
        self.thread: ThreadPoolExecutor | None = None
        self.ahead: tuple[int, Future] | None = None  # (update, its pixels being read)

    def batch(self, update: int) -> torch.Tensor:
        if self.ahead is not None and self.ahead[0] == update:
            pixels = self.ahead[1].result()
        else:
            pixels = self.read(self.indices(update))
        self.ahead = None
        if update + 1 < self.end:
            if self.thread is None:
                self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-prefetch")
            self.ahead = (update + 1, self.thread.submit(self.read, self.indices(update + 1)))
        return pixels

    def close(self) -> None:
        """Stop the thread (after the read under way); a later `batch` starts it again."""
        if self.thread is not None:
            self.thread.shutdown(wait=True, cancel_futures=True)
        self.thread, self.ahead = None, None
