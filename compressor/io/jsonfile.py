"""Read a JSON document within budgets: bytes, nesting depth, no NaN/Infinity, no duplicate keys.

Manifests and coding tables come from a bundle that may have been copied over an untrusted
link, so their parser must cost a bounded amount and fail with one clear error. Python's
``json`` recurses once per nesting level (a 100,000-deep ``[[[...]]]`` raises
``RecursionError``), accepts ``NaN`` and duplicate keys (the last one silently wins). Here
the depth is measured on the raw bytes *before* parsing, ``NaN``/``Infinity`` and duplicate
keys are refused, and every failure raises the caller's error class (``ManifestError`` for
bundles) naming the file.
"""

from __future__ import annotations

import json
import os
import re
import stat

import numpy as np

from compressor import limits

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_OPEN = np.frombuffer(b"[{", np.uint8)
_CLOSE = np.frombuffer(b"]}", np.uint8)


def read_limited(path: str | os.PathLike[str], *, max_bytes: int, error: type[Exception], what: str) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``), or ``error``."""
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore the flag.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise error(f"{name} is not a regular file; the {what} must be a plain file")
            if st.st_size > max_bytes:
                raise error(f"{name} is {st.st_size} bytes; a {what} may be at most {max_bytes}")
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"cannot read {what} {name}: {e.strerror or e}") from e
    if len(data) > max_bytes:
        raise error(f"{name} grew past {max_bytes} bytes while being read")
    return data


def depth(raw: bytes) -> int:
    """Deepest nesting of arrays/objects in ``raw`` (strings skipped), without parsing it."""
    skeleton = np.frombuffer(_STRING.sub(b'""', raw), np.uint8)
    steps = np.isin(skeleton, _OPEN).astype(np.int32) - np.isin(skeleton, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max()) if len(steps) else 0


def parse(
    raw: bytes,
    *,
    error: type[Exception],
    where: str,
    max_bytes: int = limits.MAX_JSON_BYTES,
    max_depth: int = limits.MAX_JSON_DEPTH,
):
    """Parse ``raw`` as UTF-8 JSON within the budgets, or raise ``error`` naming ``where``."""
    if len(raw) > max_bytes:
        raise error(f"{where} is {len(raw)} bytes; a JSON document may be at most {max_bytes}")
    nesting = depth(raw)
    if nesting > max_depth:
        raise error(f"{where} nests {nesting} levels deep; at most {max_depth} are allowed: not a valid file")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except _Refused as e:
        raise error(f"{where}: {e}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise error(f"{where} is not valid JSON: {e}") from None


def load(path: str | os.PathLike[str], *, error: type[Exception], what: str, max_bytes: int = limits.MAX_JSON_BYTES):
    """:func:`read_limited` then :func:`parse`."""
    raw = read_limited(path, max_bytes=max_bytes, error=error, what=what)
    return parse(raw, error=error, where=os.fspath(path), max_bytes=max_bytes)


class _Refused(ValueError):
    pass


def _no_constant(name: str):
    raise _Refused(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Refused(f"key {dup!r} appears twice in one object")
    return out
