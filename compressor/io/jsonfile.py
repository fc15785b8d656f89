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
import math
import os
import re

import numpy as np

from compressor import limits
from compressor.io.regular import NotRegularFile, open_regular

# A string, its closing quote optional: a match that has started never fails, so the scan is one
# pass. With the quote required, each escaped quote after an unterminated string restarted a
# scan to the end: quadratic, ~40 s for an 80 kB manifest and far past a 64 kB MQTT uplink.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.S)
_OPEN = np.frombuffer(b"[{", np.uint8)
_CLOSE = np.frombuffer(b"]}", np.uint8)


def read_limited(path: str | os.PathLike[str], *, max_bytes: int, error: type[Exception], what: str) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``), or ``error``."""
    name = os.fspath(path)
    try:
        f, st = open_regular(path)
        with f:
            if st.st_size > max_bytes:
                raise error(f"{name} is {st.st_size} bytes; a {what} may be at most {max_bytes}")
            data = f.read(max_bytes + 1)
    except NotRegularFile:
        raise error(f"{name} is not a regular file; the {what} must be a plain file") from None
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


class TooLarge(ValueError):
    """The document is over its byte budget (``size`` > ``limit``)."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"{size} bytes is over the {limit}-byte limit")
        self.size, self.limit = size, limit


class TooDeep(ValueError):
    """The document nests deeper than its budget (``depth`` > ``limit``)."""

    def __init__(self, depth: int, limit: int):
        super().__init__(f"nested {depth} deep, more than {limit}")
        self.depth, self.limit = depth, limit


class Refused(ValueError):
    """Valid to Python's ``json`` but not to us: NaN/Infinity, or a key twice in one object."""


def loads(raw: bytes, *, max_bytes: int, max_depth: int):
    """The strict, bounded parse behind :func:`parse`, for callers with their own error wording.

    Raises :class:`TooLarge`, :class:`TooDeep`, :class:`Refused`, ``UnicodeDecodeError`` or
    another ``ValueError`` (not JSON); ``RecursionError`` cannot happen below a sane ``max_depth``.
    """
    if len(raw) > max_bytes:
        raise TooLarge(len(raw), max_bytes)
    nesting = depth(raw)
    if nesting > max_depth:
        raise TooDeep(nesting, max_depth)
    return json.loads(
        raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique_keys
    )


def parse(
    raw: bytes,
    *,
    error: type[Exception],
    where: str,
    max_bytes: int = limits.MAX_JSON_BYTES,
    max_depth: int = limits.MAX_JSON_DEPTH,
):
    """Parse ``raw`` as UTF-8 JSON within the budgets, or raise ``error`` naming ``where``."""
    try:
        return loads(raw, max_bytes=max_bytes, max_depth=max_depth)
    except TooLarge as e:
        raise error(f"{where} is {e.size} bytes; a JSON document may be at most {e.limit}") from None
    except TooDeep as e:
        raise error(f"{where} nests {e.depth} levels deep; at most {e.limit} are allowed: not a valid file") from None
    except Refused as e:
        raise error(f"{where}: {e}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise error(f"{where} is not valid JSON: {e}") from None


def load(path: str | os.PathLike[str], *, error: type[Exception], what: str, max_bytes: int = limits.MAX_JSON_BYTES):
    """:func:`read_limited` then :func:`parse`."""
    raw = read_limited(path, max_bytes=max_bytes, error=error, what=what)
    return parse(raw, error=error, where=os.fspath(path), max_bytes=max_bytes)


def _no_constant(name: str):
    raise Refused(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    """A JSON number: ``1e999`` is valid JSON that Python reads as ``inf``, the NaN/Infinity refused above."""
    value = float(text)
    if not math.isfinite(value):
        raise Refused(f"{text[:40]} is too large for a number")
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise Refused(f"key {dup!r} appears twice in one object")
    return out
