"""Write files so that readers see either the old content or the new, never half of it.

A crash, a full disk or a killed process in the middle of writing a PNG, a code file or a
manifest must not leave a truncated file that a later run trusts. Each writer here puts the
bytes in a temporary file in the *same* directory (so the final rename stays on one
filesystem), flushes and fsyncs it, then ``os.replace``-s it onto the target, which is atomic
on POSIX and Windows. On any failure the temporary file is removed and the target is untouched.

Parent directories are *not* created: a missing directory is usually a typo in a path, and
silently creating it hides the mistake. It raises :class:`FileNotFoundError`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from compressor.errors import OutputError

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "staged_files",
]

_TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, overwrite: bool = True
) -> None:
    """Replace ``path`` with ``data`` atomically.

    With ``overwrite=False`` the final step is a hard link that fails when ``path`` exists
    (``FileExistsError``), so even two writers racing for one name never replace each other.

    Raises:
        TypeError: ``data`` is not bytes-like (checked before anything touches the disk).
        FileNotFoundError: the directory of ``path`` does not exist.
        OSError: writing, syncing or renaming failed; the old file (if any) is intact and
            no temporary file is left behind.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write_bytes needs bytes, got {type(data).__name__}; encode text first")
    with _atomic_file(path, overwrite=overwrite) as f:
        f.write(data)


@contextlib.contextmanager
def staged_files(
    directory: str | os.PathLike[str], *, overwrite: bool = True
) -> Iterator[Callable[[str, bytes], None]]:
    """``add(name, data)`` for files of ``directory`` that appear only when the block ends.

    For output that is checked while it is made (decode verifies each image's pixels as it
    decodes them): an error in the last image must not leave the first ones written. Each file
    goes to a temporary file at once (memory stays that of one file); if the block raises,
    every temporary file is removed and no name appears. When it ends without an error, the
    file system is synced once (``syncfs``; per-file fsync where that is missing), each
    temporary file is linked (or renamed, with ``overwrite``) onto its name, and the directory
    is synced once: decoding thousands of images costs two syncs instead of thousands (37 s ->
    seconds on a disk where an fsync takes ~5 ms). A folder, device or pipe in the way of any
    name is refused (by ``add``, and again before publishing) before a file appears; if a name
    exists and ``overwrite`` is false (``FileExistsError``) or anything else fails while
    publishing, the files before it are in place, it and the ones after are not, and no
    temporary file is left.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot write into {directory}: the folder does not exist", directory)
    temps: list[tuple[str, str]] = []

    def add(name: str, data: bytes) -> None:
        target = os.path.join(directory, name)
        _check_replaceable(target)
        fd, temp = _create_temp(directory, name)
        temps.append((temp, target))
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    try:
        yield add
        _sync_all(directory, [t for t, _ in temps])
        for _, target in temps:  # again: a device or folder may have appeared while the block ran
            _check_replaceable(target)
        while temps:
            temp, target = temps[0]
            if overwrite:
                os.replace(temp, target)
            else:
                os.link(temp, target)
                os.unlink(temp)
            temps.pop(0)
    finally:
        for temp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        _fsync_directory(directory)


def _sync_all(directory: str, paths: list[str]) -> None:
    """Make the data of ``paths`` durable: one ``syncfs`` of their file system, else fsync each."""
    syncfs = _syncfs()
    if syncfs is not None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _syncfs():
    """libc's ``syncfs`` (Linux), or None."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", overwrite: bool = True
) -> None:
    """Replace ``path`` with ``text`` atomically; no newline translation (what you pass is what lands).

    Raises ``TypeError`` if ``text`` is not a ``str``, otherwise as :func:`atomic_write_bytes`.
    """
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text needs str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, sorted keys, trailing newline) atomically.

    Sorted keys and a fixed indent make the file byte-for-byte reproducible, so hashes and
    diffs of manifests are stable. NaN/inf are refused (``ValueError``) because they are not
    valid JSON and other readers would reject the file; unserialisable objects raise
    ``TypeError``. Both happen before anything is written.
    """
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    atomic_write_text(path, text)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` in pieces: it appears, complete, only when the block ends.

    For output too large to hold in memory (a Parquet file written row group by row group).
    The same rules as :func:`atomic_write_bytes`: the temporary file sits beside ``path``; if
    the block raises (or the process dies) ``path`` is untouched and the temporary file is
    removed (or, after a kill, left as a hidden ``.NAME.*.tmp``, never as ``path``).
    """
    with _atomic_file(path, overwrite=True) as f:
        yield f


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike[str], *, overwrite: bool) -> Iterator[BinaryIO]:
    """The one recipe behind :func:`atomic_write_bytes` and :func:`atomic_open`: a temporary file
    beside ``path``, flushed and fsynced, then renamed (or, without ``overwrite``, hard-linked)
    onto it, and the directory synced; on any failure the temporary file is removed and ``path``
    is untouched."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write {target}: folder {directory} does not exist (create it first)", directory
        )
    _check_replaceable(target)
    fd, temp = _create_temp(directory, os.path.basename(target))
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(temp, target)
        else:
            os.link(temp, target)
            os.unlink(temp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def _check_replaceable(target: str) -> None:
    """Refuse to rename a file over a folder, device, FIFO or socket, before any file is written.

    ``os.replace`` would swap the node itself for a regular file: ``-o /dev/null`` run as root
    replaced the system's /dev/null (and left a temporary file in /dev). A regular file, a
    symbolic link (the link is replaced, not what it points to) or nothing at all is fine.
    """
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):  # os.replace would fail too, but naming the temporary file, after earlier files
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of an output file", target)
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OutputError(f"{target} is a device, pipe or socket, not a file; name a regular file to write")


def _create_temp(directory: str, basename: str) -> tuple[int, str]:
    """Create a fresh hidden temp file next to the target, with a name of at most 51 bytes.

    ``os.open`` with mode 0o666 (not ``tempfile.mkstemp``'s 0o600) so the final file gets the
    usual umask-derived permissions, like any file created with ``open(path, "w")``.
    """
    # The target's name is cut to 32 bytes here: a temp name must fit the file-system limit
    # whenever the target's own name does (255 bytes), whatever that name is.
    stem = basename.encode("utf-8")[:32].decode("utf-8", "ignore")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = os.path.join(directory, f".{stem}.{secrets.token_hex(6)}{_TEMP_SUFFIX}")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself (POSIX); best effort, as Windows cannot open directories."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
