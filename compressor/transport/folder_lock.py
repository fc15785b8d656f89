"""One gateway per output folder: an exclusive ``flock`` on ``OUT/.lock`` for the gateway's lifetime.

Two gateways writing one folder would each keep their own copy of a session's progress and
overwrite each other's ``session.json`` (last writer wins), so an image acknowledged by one
could vanish from the session of the other (for MQTT, two subscribers would also share one
broker client id). The lock is advisory but every ``compressor receive`` and ``compressor
subscribe`` takes it, and the kernel drops it when the process dies, so a crash never leaves a
stale lock behind. The file keeps the holder's pid for the error message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from compressor.errors import FolderInUseError, OutputError

LOCK_FILE = ".lock"


class FolderLock:
    """``with FolderLock(out):`` -- held until the block ends (or the process exits)."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        # Not followed: a ``.lock`` that links elsewhere would have its target truncated and
        # overwritten with our pid. Not waited on: a FIFO there would block the open.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise
            fd = None
        if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            fd = None
        if fd is None:
            raise OutputError(
                f"{self.path} is not a regular file (a link, pipe or folder): remove it; it holds the gateway's lock"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise FolderInUseError(
                f"{self.path.parent} is in use by another gateway (pid {holder}); "
                "give each receive or subscribe its own -o folder"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
