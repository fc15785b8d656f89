"""Byte formats: the self-contained per-image message and the multi-image stream.

The byte-by-byte specification is ``docs/format.md``; this module is its only
implementation. Both formats name the model they were made with -- a message
through its keyed check byte (one byte, so it cannot tell "other model" from "damaged"), a
stream through the full 8-byte model id -- because a code decoded with the wrong
model yields a plausible but wrong image, which is worse than an error.

Parsing never trusts a number read from the input to size an allocation, and
checks run in an order that gives the most useful error: length, magic, version
(so a newer file says "upgrade" rather than "damaged"), checksum, then model.
Arguments that are the caller's own mistakes (a bad mode name, a 7-byte model id)
raise ``ValueError``; bad *bytes* raise a :class:`~compressor.errors.CodeError`.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from compressor import names as name_rules
from compressor.errors import (
    CorruptCodeError,
    LimitError,
    ModelMismatchError,
    TruncatedCodeError,
    UnsupportedFormatVersionError,
)

FORMAT_VERSION = 1
MODEL_ID_SIZE = 8
MODES = {"entropy": 0, "raw": 1, "lossless": 2, "residual": 3}
"""Mode name -> 2-bit code (the one home of the mode names). Readers older than the residual
mode refuse 3 as damaged."""
MAX_STEPS = 16
STREAM_MAGIC = b"\x89LZC"

_MODE_NAMES = {code: name for name, code in MODES.items()}
_FLAG_NAMES = 0x01
_FLAG_JOINT = 0x02  # one entropy-coded block for all images, no per-image lengths
_MAX_VARINT_BYTES = 4  # values < 2**28: no stream of ours comes near
_VARINT_LIMIT = 1 << (7 * _MAX_VARINT_BYTES)
_STREAM_FIXED = 4 + 4 + MODEL_ID_SIZE  # magic, version, flags, mode, step, model id
_STREAM_MIN = _STREAM_FIXED + 1 + 4  # + count (>= 1 byte) + CRC-32


def message_check(model_id: bytes, head: int, payload: bytes) -> int:
    """One check byte: BLAKE2s keyed with the model id over ``byte 0 || payload``.

    A keyed hash rather than a CRC: a CRC is linear, so for 1 in 256 *pairs* of models
    it would accept every message of the other model. With a keyed hash each message of
    another model (or each damaged message) passes with probability 1/256 on its own.
    """
    h = keyed_check(model_id, head).copy()
    h.update(payload)
    return h.digest()[0]


@functools.lru_cache(maxsize=256)
def keyed_check(model_id: bytes, head: int):
    """BLAKE2s keyed with ``model_id`` that has hashed ``byte 0`` already: copy it per message,
    update the copy with the payload, and its digest is :func:`message_check`'s byte."""
    return hashlib.blake2s(bytes((head,)), digest_size=1, key=model_id)


def _check_model_id(model_id: bytes) -> bytes:
    if not isinstance(model_id, (bytes, bytearray)) or len(model_id) != MODEL_ID_SIZE:
        raise ValueError(f"model id must be {MODEL_ID_SIZE} bytes, got {model_id!r}")
    return bytes(model_id)


def _as_bytes(data: bytes, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, got {type(data).__name__}")
    return bytes(data)


def _check_mode_step(mode: str, step_index: int) -> tuple[int, int]:
    """Return ``(mode code, step index as int)`` or raise ValueError."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    try:
        step = operator.index(step_index)
    except TypeError:
        step = -1
    if isinstance(step_index, bool) or not 0 <= step < MAX_STEPS:
        raise ValueError(f"step index must be an int in 0..{MAX_STEPS - 1}, got {step_index!r}")
    return MODES[mode], step


def _check_version(version: int, what: str) -> None:
    if version > FORMAT_VERSION:
        raise UnsupportedFormatVersionError(
            f"this {what} uses format version {version}; this library reads version "
            f"{FORMAT_VERSION}. Upgrade compressor to decode it."
        )
    if version < 1:
        raise CorruptCodeError(f"this {what} claims format version {version}: damaged data")


# --- per-image message ---------------------------------------------------------------
class Header(NamedTuple):
    version: int
    mode: str
    step_index: int


def pack_message(model_id: bytes, mode: str, step_index: int, payload: bytes) -> bytes:
    """Frame one image's payload: 2-byte header (version/mode/step, check byte) + payload.

    The check byte is keyed with ``model_id`` so a message made for another model fails
    it with probability 255/256, independently for each message (docs/format.md).
    """
    return message_packer(model_id, mode, step_index)(_as_bytes(payload, "payload"))


def message_head(mode: str, step_index: int) -> int:
    """A message's first byte: this format's version, ``mode`` and ``step_index`` (docs/format.md)."""
    mode_code, step = _check_mode_step(mode, step_index)
    return (FORMAT_VERSION << 6) | (mode_code << 4) | step


def message_packer(model_id: bytes, mode: str, step_index: int) -> Callable[[bytes], bytes]:
    """:func:`pack_message` for many payloads of one model, mode and step: the arguments are
    checked once, and the returned function takes ``bytes`` payloads only."""
    model_id = _check_model_id(model_id)
    head = message_head(mode, step_index)
    keyed, first = keyed_check(model_id, head), bytes((head,))

    def pack(payload: bytes) -> bytes:
        h = keyed.copy()
        h.update(payload)
        return first + h.digest() + payload

    return pack


def unpack_message(model_id: bytes, data: bytes) -> tuple[Header, bytes]:
    """Check and strip the header of a :func:`pack_message` message.

    Raises ``TruncatedCodeError`` (under 2 bytes), ``UnsupportedFormatVersionError``,
    ``CorruptCodeError`` (version 0, mode 3) or ``ModelMismatchError`` (check byte differs:
    another model's code, or damaged). The step index is not checked against the
    bundle here: the caller knows how many steps it has.
    """
    return message_reader(model_id)(data)


def message_reader(model_id: bytes) -> Callable[[bytes], tuple[Header, bytes]]:
    """:func:`unpack_message` for many messages of one model, the model id checked once."""
    model_id = _check_model_id(model_id)

    def unpack(data: bytes) -> tuple[Header, bytes]:
        if type(data) is not bytes:
            data = _as_bytes(data, "message")
        if len(data) < 2:
            raise TruncatedCodeError(f"a message is at least 2 bytes (its header); got {len(data)}")
        head = data[0]
        if head >> 6 != FORMAT_VERSION:
            _check_version(head >> 6, "message")
        payload = data[2:]
        h = keyed_check(model_id, head).copy()
        h.update(payload)
        if h.digest()[0] != data[1]:
            raise ModelMismatchError(
                f"message check failed: it was made for another model, or damaged "
                f"(this model is {model_id.hex()}); decode it with the bundle that made it"
            )
        return Header(head >> 6, _MODE_NAMES[(head >> 4) & 0x3], head & 0xF), payload

    return unpack


# --- multi-image stream --------------------------------------------------------------
@dataclass(frozen=True)
class Stream:
    """A decoded stream container: one model, mode and step for all payloads.

    ``payloads`` are bare (no per-message header); ``names`` is ``None`` when the
    stream stores none, else one name per payload.
    """

    model_id: bytes
    mode: str
    step_index: int
    payloads: tuple[bytes, ...]
    names: tuple[str, ...] | None = None
    joint_count: int | None = None  # set for a joint stream: ``payloads`` is one block for that many images

    @property
    def count(self) -> int:
        return self.joint_count if self.joint_count is not None else len(self.payloads)


class PackedStream(bytes):
    """The bytes :func:`pack_stream` wrote, plus the sizes its writer already knows.

    A plain ``bytes`` in every other respect (equal to, hashed and written like one), so a
    caller reports ``count`` images and ``payload_bytes`` (payloads or joint block, without
    header, lengths, names and CRC) without parsing its own output again.
    """

    count: int
    payload_bytes: int

    def __new__(cls, data: bytes, count: int, payload_bytes: int) -> PackedStream:
        self = super().__new__(cls, data)
        self.count, self.payload_bytes = count, payload_bytes
        return self


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """LEB128 at ``pos``: at most 4 bytes, no overlong form (a final 0x00 byte)."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= end:
            raise TruncatedCodeError("stream ends inside its header")
        b = data[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i:
                raise CorruptCodeError("stream header has an overlong number: damaged data")
            return value, pos + i + 1
    raise CorruptCodeError("stream header has an impossibly large number: damaged data")


def pack_stream(
    model_id: bytes,
    mode: str,
    step_index: int,
    payloads: Sequence[bytes],
    names: Sequence[str] | None = None,
    *,
    joint_count: int | None = None,
) -> PackedStream:
    """Concatenate many images' payloads into one container (see docs/format.md).

    With ``joint_count``, ``payloads`` is a single block coding that many images
    (:func:`compressor.coding.entropy.encode_joint`) and no per-image lengths are written.
    """
    model_id = _check_model_id(model_id)
    mode_code, step_index = _check_mode_step(mode, step_index)
    payloads = [_as_bytes(p, "payload") for p in payloads]
    if len(payloads) >= _VARINT_LIMIT or any(len(p) >= _VARINT_LIMIT for p in payloads):
        raise ValueError("a stream holds fewer than 2**28 payloads of under 2**28 bytes")
    if joint_count is not None and (len(payloads) != 1 or not 1 <= joint_count < _VARINT_LIMIT):
        raise ValueError("a joint stream has exactly one block and a count of 1..2**28-1 images")
    count = len(payloads) if joint_count is None else joint_count
    flags = (_FLAG_NAMES if names is not None else 0) | (_FLAG_JOINT if joint_count is not None else 0)
    parts = [
        STREAM_MAGIC,
        bytes((FORMAT_VERSION, flags, mode_code, step_index)),
        model_id,
        _varint(count),
    ]
    if joint_count is None:
        parts += [_varint(len(p)) for p in payloads]
    if names is not None:
        if len(names) != count:
            raise ValueError(f"{len(names)} names for {count} images")
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"names must be str, got {name!r}")
            raw = name.encode("utf-8", errors="strict")
            problem = name_rules.problem(raw)
            if problem:
                raise ValueError(f"name {name!r} {problem}")
            parts += [_varint(len(raw)), raw]
    parts += payloads
    body = b"".join(parts)
    return PackedStream(body + zlib.crc32(body).to_bytes(4, "little"), count, sum(map(len, payloads)))


class _Layout(NamedTuple):
    lengths: list[int]
    names: list[bytes] | None
    payload_start: int
    end: int  # where the payloads end (the CRC follows)
    joint_count: int | None


def _parse_layout(data: bytes, limit: int) -> _Layout:
    """Walk the variable part of the header, reading no further than ``limit``."""
    has_names = data[5] & _FLAG_NAMES
    joint = data[5] & _FLAG_JOINT
    count, pos = _read_varint(data, _STREAM_FIXED, limit)
    if not joint and count > limit - pos:  # every length takes a byte: refuse before allocating
        raise TruncatedCodeError(f"stream announces {count} images but is too short")
    if joint and has_names and count > limit - pos:  # every name takes 2+ bytes
        raise TruncatedCodeError(f"stream announces {count} names but is too short")
    lengths = []
    for _ in range(0 if joint else count):
        n, pos = _read_varint(data, pos, limit)
        lengths.append(n)
    names = None
    if has_names:
        names = []
        for _ in range(count):
            n, pos = _read_varint(data, pos, limit)
            if n > limit - pos:
                raise TruncatedCodeError("stream ends inside its names")
            names.append(data[pos : pos + n])
            pos += n
    if joint:
        return _Layout([limit - pos], names, pos, limit, count)
    return _Layout(lengths, names, pos, pos + sum(lengths), None)


def declared_count(data: bytes) -> int:
    """The image count a stream's header declares, read before anything else is parsed (for
    reports about hostile streams). Bytes that are no stream raise as in :func:`unpack_stream`;
    the rest of the stream is not checked here. Budgets are held by :func:`unpack_stream`."""
    data = _as_bytes(data, "stream")
    if data[:4] != STREAM_MAGIC[: len(data)]:
        raise CorruptCodeError("not a compressor stream (wrong magic bytes)")
    if len(data) < _STREAM_MIN:
        raise TruncatedCodeError(f"a stream is at least {_STREAM_MIN} bytes; got {len(data)}: truncated")
    return _read_varint(data, _STREAM_FIXED, len(data))[0]


def unpack_stream(data: bytes, expected_model_id: bytes | None = None, *, max_images: int | None = None) -> Stream:
    """Parse and verify a :func:`pack_stream` container.

    Raises ``CorruptCodeError`` (not a stream, checksum mismatch, bad fields),
    ``TruncatedCodeError`` (shorter than its header announces),
    ``UnsupportedFormatVersionError``, or ``ModelMismatchError`` when
    ``expected_model_id`` is given and differs. ``max_images`` is the caller's budget (the
    one place it is held, for ``decode`` and ``info`` alike): a stream declaring more images
    raises ``LimitError`` after every format rule (S1-S14) and before any payload is decoded.
    Parsing up to there is bounded by the stream's length, whatever count it declares.
    """
    if expected_model_id is not None:
        expected_model_id = _check_model_id(expected_model_id)
    data = _as_bytes(data, "stream")
    if data[:4] != STREAM_MAGIC[: len(data)]:
        raise CorruptCodeError("not a compressor stream (wrong magic bytes)")
    if len(data) > 4:
        _check_version(data[4], "stream")
    if len(data) < _STREAM_MIN:
        raise TruncatedCodeError(f"a stream is at least {_STREAM_MIN} bytes; got {len(data)}: truncated")
    body_end = len(data) - 4
    if zlib.crc32(data[:body_end]) != int.from_bytes(data[body_end:], "little"):
        try:
            layout = _parse_layout(data, len(data))
            announced = len(data) if layout.joint_count is not None else layout.end + 4
        except TruncatedCodeError:
            announced = len(data) + 1
        except CorruptCodeError:
            announced = len(data)
        if announced > len(data):
            raise TruncatedCodeError("stream ends before the data its header announces: truncated")
        raise CorruptCodeError("stream checksum mismatch: damaged data")
    try:
        layout = _parse_layout(data, body_end)
    except TruncatedCodeError:  # the checksum vouches for the length: the header is wrong
        raise CorruptCodeError("stream header announces more data than it holds: damaged data") from None
    if layout.end != body_end:
        raise CorruptCodeError("stream length disagrees with its header: damaged data")
    flags, mode_code, step_index = data[5], data[6], data[7]
    if flags & ~(_FLAG_NAMES | _FLAG_JOINT):
        raise CorruptCodeError(f"stream has unknown flags {flags:#04x}: damaged data")
    if mode_code not in _MODE_NAMES:
        raise CorruptCodeError(f"stream mode {mode_code} is invalid: damaged data")
    if step_index >= MAX_STEPS:
        raise CorruptCodeError(f"stream step index {step_index} is invalid: damaged data")
    model_id = data[8 : 8 + MODEL_ID_SIZE]
    if expected_model_id is not None and model_id != expected_model_id:
        raise ModelMismatchError(
            f"stream was made with model {model_id.hex()}, but this decoder has model "
            f"{expected_model_id.hex()}; decode it with the matching bundle"
        )
    names = None
    if layout.names is not None:
        for raw in layout.names:
            problem = name_rules.problem(raw)
            if problem:
                raise CorruptCodeError(f"stream name {raw!r} {problem}: damaged data")
        names = tuple(raw.decode("utf-8") for raw in layout.names)
    count = layout.joint_count if layout.joint_count is not None else len(layout.lengths)
    if max_images is not None and count > max_images:
        raise LimitError(
            f"the stream declares {count} images; the limit is {max_images} (raise it with max_images= or --max-images)"
        )
    payloads = []
    pos = layout.payload_start
    for n in layout.lengths:
        payloads.append(data[pos : pos + n])
        pos += n
    return Stream(model_id, _MODE_NAMES[mode_code], step_index, tuple(payloads), names, layout.joint_count)
