"""Open a file for reading only if it is a regular file: the one place that applies this rule.

Why: every path the device side reads may come from an untrusted caller. A FIFO blocks the
open (and every read) until a writer comes, a device such as ``/dev/zero`` never ends, and a
folder has no bytes to read; so each reader must refuse them before reading. Each caller words
the refusal with its own error class, so this module raises :class:`NotRegularFile`, which is
deliberately not an ``OSError``: a caller's ``except OSError`` ("cannot read ...") cannot catch it.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

__all__ = ["NotRegularFile", "open_regular"]

# O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer (Windows has neither).
# O_BINARY: without it Windows opens the descriptor in text mode, turning \r\n into \n.
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class NotRegularFile(Exception):
    """The path names a folder, a device, a FIFO or a socket; ``is_dir`` tells a folder apart."""

    def __init__(self, path: str | os.PathLike[str], mode: int):
        super().__init__(f"{os.fspath(path)} is not a regular file")
        self.mode = mode
        self.is_dir = stat.S_ISDIR(mode)


def open_regular(path: str | os.PathLike[str]) -> tuple[BinaryIO, os.stat_result]:
    """``path`` opened for binary reading, and its ``fstat``; or :class:`NotRegularFile`.

    The check is made on the opened descriptor, so the file cannot be swapped for a FIFO
    between the check and the read. Other failures (missing, no permission) raise ``OSError``.
    """
    try:
        fd = os.open(path, _FLAGS)
    except IsADirectoryError:
        raise NotRegularFile(path, stat.S_IFDIR) from None
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(path, st.st_mode)
    return os.fdopen(fd, "rb"), st
