"""Image names: the one home of the rules that streams, the transport and the CLI apply.

A name travels with an image (in a stream or a transport frame) and becomes a file name on
the receiving device (``NAME.png``), so it must be a safe single path component there:
1..255 bytes of UTF-8 (what the byte formats can carry), no ``/``, ``\\`` or NUL, not ``.``
or ``..``. Writers are stricter than readers: a name whose output file ``NAME.png`` would
pass the usual 255-byte file-name limit is refused when it is *made* (at most 251 bytes), so
a code we write can always be written out on the other side.
"""

from __future__ import annotations

import unicodedata

from compressor.errors import InvalidNameError

#: What the stream format and the transport frames can carry.
FORMAT_MAX_BYTES = 255
#: What encoders accept: ``NAME + ".png"`` fits a 255-byte file name.
MAX_NAME_BYTES = FORMAT_MAX_BYTES - len(".png")
OUTPUT_SUFFIX = ".png"


def problem(raw: bytes, max_bytes: int = FORMAT_MAX_BYTES) -> str | None:
    """Why ``raw`` (UTF-8 bytes) cannot be an image name, or ``None`` if it can."""
    if not 1 <= len(raw) <= max_bytes:
        return f"must be 1..{max_bytes} bytes of UTF-8, got {len(raw)}"
    if b"/" in raw or b"\\" in raw or b"\0" in raw or raw in (b".", b".."):
        return "must not contain '/', '\\' or NUL, nor be '.' or '..'"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    return None


def encode(name: str, max_bytes: int = MAX_NAME_BYTES) -> bytes:
    """The UTF-8 bytes of a name we are about to send or store; ``InvalidNameError`` if unusable."""
    raw = name.encode("utf-8", "surrogatepass") if isinstance(name, str) else b""
    why = problem(raw, max_bytes) if isinstance(name, str) else "must be a str"
    if why:
        raise InvalidNameError(f"image name {name!r} {why}; rename the image or pass --no-names")
    return raw


def file_key(name: str) -> str:
    """What two names share when they would be one file on some file system: compared
    case-insensitively (macOS, Windows) and by Unicode canonical equivalence (macOS: ``é`` as
    one code point or as ``e`` + combining accent is one file name there)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def check_unique(names, sources=None, error=InvalidNameError) -> None:
    """Refuse two names that would be one output file (:func:`file_key`). ``sources``
    (optional) say where each name came from."""
    seen: dict[str, str] = {}
    for i, name in enumerate(names):
        key = file_key(name)
        where = sources[i] if sources is not None else repr(name)
        if key in seen:
            raise error(
                f"two images would have the same name {name!r}: {seen[key]} and {where}; one output file would "
                "replace the other: rename one, or pass --no-names to number the images instead"
            )
        seen[key] = where


def numbered(stem: str, count: int) -> list[str]:
    """Names for ``count`` unnamed images: ``stem-000``, ``stem-001``, ... zero-padded so they sort."""
    width = max(3, len(str(count - 1)))
    return [f"{stem}-{i:0{width}d}" for i in range(count)]


class Numbering:
    """Names unique as files (:func:`file_key`), handed out one at a time: a repeat gets ``-1``,
    ``-2``, ... in order of arrival, skipping every name taken so far and every ``reserved`` one.
    For outputs named as they come (a dataset job's folder) and, with every name reserved, for a
    whole list at once (:func:`unique_names`). Linear however many times a name repeats."""

    def __init__(self, reserved=()):
        self._reserved = {file_key(name) for name in reserved}
        self._used: set[str] = set()
        self._next: dict[str, int] = {}  # per name: the numbers below are taken

    def take(self, name: str) -> str:
        candidate, key = name, file_key(name)
        if key in self._used:
            k = self._next.get(key, 1)
            while (numbered := file_key(f"{name}-{k}")) in self._used or numbered in self._reserved:
                k += 1
            self._next[key] = k + 1
            candidate, key = f"{name}-{k}", numbered
        self._used.add(key)
        return candidate


def unique_names(names: list[str]) -> list[str]:
    """Make names unique as files (:func:`file_key`) by a fixed rule, for sources where duplicates
    are expected (dataset folder trees): a repeat gets ``-1``, ``-2``, ... in input order, avoiding
    every name given."""
    numbering = Numbering(reserved=names)
    return [numbering.take(name) for name in names]
