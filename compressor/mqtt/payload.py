"""The bytes of one MQTT message or LoRaWAN uplink: a sequence header, then one image message.

Layout (specified in ``docs/format.md``, "MQTT / LoRaWAN payload")::

    header varint  = sequence << 2 | flags      (unsigned LEB128, canonical, at most 5 bytes)
    [name length u8, name UTF-8]                 (only when flag bit 0 is set)
    message                                      (``Encoder.compress``: 2-byte header + payload)

Why this shape:

* a LoRaWAN uplink at the slowest data rate carries 51 bytes and each byte costs airtime,
  so the header is one varint: 1 byte for sequence numbers 0..31, 2 bytes up to 4095,
  3 bytes up to 524287;
* the sequence number (per device) is what the gateway deduplicates on: MQTT QoS 1 is
  at-least-once, and a network server may forward an uplink twice;
* the name is optional: over MQTT it keeps the camera's file name, over LoRa it would
  cost more airtime than the image, so the gateway names the file after the sequence;
* the message is exactly the self-contained per-image message of ``docs/format.md``, with
  its own version, step and keyed model check: nothing about the model is repeated here.

Pure functions: no client library, no I/O. Bad bytes raise
:class:`~compressor.errors.CorruptCodeError` / :class:`~compressor.errors.TruncatedCodeError`
with a message that says what is wrong; caller mistakes raise ``ValueError``.
"""

from __future__ import annotations

from typing import NamedTuple

from compressor.errors import CorruptCodeError, TruncatedCodeError, UnsupportedFormatVersionError

MAX_SEQUENCE = (1 << 32) - 1
MAX_NAME_BYTES = 251  # NAME + ".png" fits the usual 255-byte file-name limit
MAX_PAYLOAD_BYTES = 64 * 1024  # far above any image message; refuses floods before any parsing
MIN_MESSAGE_BYTES = 2  # the message header (docs/format.md, "Message")
FLAG_NAME = 0x1
FLAG_RESERVED = 0x2  # must be 0 in layout 1; a later layout may set it to announce more fields
_FLAG_BITS = 2
_MAX_HEADER_BYTES = 5  # (2**32 - 1) << 2 needs 34 bits: five 7-bit groups


class Payload(NamedTuple):
    """One parsed payload: the device's sequence number, the optional file name, the image message."""

    sequence: int
    name: str | None
    message: bytes


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot become ``NAME.png`` in a gateway folder, or None if it can.

    Stricter than a stream's names (``docs/format.md``): no leading dot, because the gateway
    keeps its own hidden temporary files and its progress file beside the images.
    """
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not encodable as UTF-8"
    if not 1 <= len(raw) <= MAX_NAME_BYTES:
        return f"must be 1..{MAX_NAME_BYTES} bytes of UTF-8, got {len(raw)}"
    if any(c in b"/\\" or c < 0x20 or c == 0x7F for c in raw) or raw.startswith(b"."):
        return "must not contain '/', '\\' or control characters, nor start with '.'"
    return None


def header_size(sequence: int, name: str | None = None) -> int:
    """Bytes that :func:`pack_payload` adds in front of the message for this sequence number and name."""
    size = len(_varint(_header_value(sequence, name is not None)))
    return size + (1 + len(name.encode("utf-8")) if name is not None else 0)


def pack_payload(sequence: int, message: bytes, name: str | None = None) -> bytes:
    """Header + optional name + ``message`` (one ``Encoder.compress`` message)."""
    if not isinstance(message, (bytes, bytearray)) or len(message) < MIN_MESSAGE_BYTES:
        raise ValueError(f"message must be the bytes of one Encoder.compress message, got {message!r:.40}")
    if name is not None and (problem := name_problem(name)):
        raise ValueError(f"name {name!r} {problem}")
    out = bytearray(_varint(_header_value(sequence, name is not None)))
    if name is not None:
        raw = name.encode("utf-8")
        out += bytes((len(raw),)) + raw
    out += message
    if len(out) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(out)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    return bytes(out)


def unpack_payload(data: bytes) -> Payload:
    """Parse a :func:`pack_payload` payload. The message inside is checked later, by the decoder.

    Checks, in order: size budget, header varint (truncated, overlong, too large), reserved
    flag (a newer layout says "upgrade"), name, and a message of at least 2 bytes.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise CorruptCodeError(f"payload of {len(data)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    value, pos = _read_varint(data)
    if value & FLAG_RESERVED:
        raise UnsupportedFormatVersionError(
            "payload sets a flag this library does not know (a newer payload layout): upgrade compressor"
        )
    sequence = value >> _FLAG_BITS
    if sequence > MAX_SEQUENCE:
        raise CorruptCodeError(f"payload sequence number {sequence} is over {MAX_SEQUENCE}: damaged data")
    name = None
    if value & FLAG_NAME:
        if pos >= len(data):
            raise TruncatedCodeError(f"payload {sequence} ends before its name length")
        end = pos + 1 + data[pos]
        if end > len(data):
            raise TruncatedCodeError(f"payload {sequence} ends inside its name")
        try:
            name = data[pos + 1 : end].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptCodeError(f"payload {sequence}: name is not UTF-8: damaged data") from None
        if problem := name_problem(name):
            raise CorruptCodeError(f"payload {sequence}: name {name!r} {problem}")
        pos = end
    if len(data) - pos < MIN_MESSAGE_BYTES:
        raise TruncatedCodeError(
            f"payload {sequence} holds {len(data) - pos} message bytes; "
            f"an image message is at least {MIN_MESSAGE_BYTES}"
        )
    return Payload(sequence, name, data[pos:])


def _header_value(sequence: int, named: bool) -> int:
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence number must be an int in 0..{MAX_SEQUENCE}, got {sequence!r}")
    return sequence << _FLAG_BITS | (FLAG_NAME if named else 0)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes) -> tuple[int, int]:
    value = 0
    for i in range(min(len(data), _MAX_HEADER_BYTES)):
        b = data[i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i:
                raise CorruptCodeError("payload header is an overlong number: damaged data")
            return value, i + 1
    if len(data) < _MAX_HEADER_BYTES:
        raise TruncatedCodeError(f"payload of {len(data)} bytes ends inside its sequence header")
    raise CorruptCodeError("payload header is longer than 5 bytes: damaged data or not a compressor payload")
