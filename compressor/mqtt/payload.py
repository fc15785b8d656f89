"""The bytes of one MQTT message or LoRaWAN uplink: a sequence header, then one image message.

Layout (specified in ``docs/format.md``, "MQTT / LoRaWAN payload")::

    header                      1..5 bytes: sequence number and name flag, prefix-coded (below)
    [name length u8, name UTF-8] only when the name flag is set
    message                     ``Encoder.compress``: 2-byte header + payload

The header's first byte says its length by its leading one bits, like UTF-8::

    0sssssss                         sequence 0..127, no name
    10nsssss  + 1 byte               sequence < 2**13, n = name flag
    110nssss  + 2 bytes              sequence < 2**20
    1110nsss  + 3 bytes              sequence < 2**27
    11110nss  + 4 bytes              sequence < 2**32
    111110rr  + the message, its first byte's version and mode bits replaced by rrrr:
                                     the *short form*, sequence modulo 64, no name
    111111xx                         reserved for a later layout ("upgrade")

The short form costs one byte whatever the sequence number: the 6-bit residue ``rrrrrr``
takes the header's two free bits and the four bits of the message's first byte that say
"version 1, entropy mode" (``0100``), which the reader puts back. Only such messages, unnamed,
may use it; the gateway extends the residue to the full number against the device's recorded
progress (:mod:`compressor.mqtt.short_sequences`). Readers older than the short form refuse it
as the reserved ``11111xxx`` form ("upgrade").

Why this shape:

* a LoRaWAN uplink at the slowest data rate carries 51 bytes and each byte costs airtime,
  so an unnamed image pays 1 byte of header for its first 128 sequence numbers and 2 bytes
  up to 8191 (a LEB128 varint with flag bits would pay 2 bytes from 32 on);
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
_RESERVED_FORM = 5  # five leading one bits: the short form, or a later layout
SHORT_WINDOW = 64  # the short form carries the sequence modulo this
_SHORT_PREFIX = 0xF8  # 111110rr
_SHORT_MESSAGE = 0x40  # the message's first byte, high nibble: version 1, mode 0 (entropy)


class Payload(NamedTuple):
    """One parsed payload: the device's sequence number, the optional file name, the image message.

    ``short``: the payload was in the short form, so ``sequence`` is only the number modulo
    :data:`SHORT_WINDOW`; the gateway extends it (:mod:`compressor.mqtt.short_sequences`).
    """

    sequence: int
    name: str | None
    message: bytes
    short: bool = False


def short_form_fits(message: bytes, name: str | None = None) -> bool:
    """Whether ``message`` (and no name) can travel in the 1-byte short form: version 1, entropy mode."""
    return name is None and len(message) >= MIN_MESSAGE_BYTES and message[0] & 0xF0 == _SHORT_MESSAGE


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


def header_size(sequence: int, name: str | None = None, short: bool = False) -> int:
    """Bytes that :func:`pack_payload` adds in front of the message for this sequence number and name."""
    if short:
        _checked_sequence(sequence)
        if name is not None:
            raise ValueError("the short form carries no name")
        return 1
    size = 1 + _extra_bytes(_checked_sequence(sequence), name is not None)
    return size + (1 + len(name.encode("utf-8")) if name is not None else 0)


def pack_payload(sequence: int, message: bytes, name: str | None = None, short: bool = False) -> bytes:
    """Header + optional name + ``message`` (one ``Encoder.compress`` message).

    ``short``: the 1-byte short form, ``sequence`` modulo :data:`SHORT_WINDOW` (see the module
    docstring); only for an unnamed version-1 entropy-mode message (:func:`short_form_fits`).
    """
    if not isinstance(message, (bytes, bytearray)) or len(message) < MIN_MESSAGE_BYTES:
        raise ValueError(f"message must be the bytes of one Encoder.compress message, got {message!r:.40}")
    if short:
        residue = _checked_sequence(sequence) % SHORT_WINDOW
        if not short_form_fits(message, name):
            raise ValueError("the short form carries only an unnamed version-1 entropy-mode message")
        return bytes((_SHORT_PREFIX | residue >> 4, (residue & 0xF) << 4 | message[0] & 0xF)) + bytes(message[1:])
    if name is not None and (problem := name_problem(name)):
        raise ValueError(f"name {name!r} {problem}")
    out = bytearray(_header(_checked_sequence(sequence), name is not None))
    if name is not None:
        raw = name.encode("utf-8")
        out += bytes((len(raw),)) + raw
    out += message
    if len(out) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(out)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    return bytes(out)


def unpack_payload(data: bytes) -> Payload:
    """Parse a :func:`pack_payload` payload. The message inside is checked later, by the decoder.

    Checks, in order: size budget, header (reserved form: "upgrade"; truncated, overlong,
    sequence too large), name, and a message of at least 2 bytes. A short-form payload gives
    its sequence modulo :data:`SHORT_WINDOW` and ``short=True``, and its message restored.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise CorruptCodeError(f"payload of {len(data)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    if data[:1] and data[0] & 0xFC == _SHORT_PREFIX:
        if len(data) < 1 + MIN_MESSAGE_BYTES:
            raise TruncatedCodeError(
                f"short-form payload of {len(data)} bytes; it is at least {1 + MIN_MESSAGE_BYTES} (header + message)"
            )
        residue = (data[0] & 0x3) << 4 | data[1] >> 4
        return Payload(residue, None, bytes((_SHORT_MESSAGE | data[1] & 0xF,)) + data[2:], True)
    sequence, named, pos = _read_header(data)
    name = None
    if named:
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


def _checked_sequence(sequence: int) -> int:
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence number must be an int in 0..{MAX_SEQUENCE}, got {sequence!r}")
    return sequence


def _bits(extra: int) -> int:
    """Sequence bits in a header with ``extra`` bytes after the first."""
    return 7 if extra == 0 else 6 + 7 * extra


def _extra_bytes(sequence: int, named: bool) -> int:
    """The shortest form: the only one a writer may use, and a reader accepts."""
    extra = 1 if named else 0
    while sequence >> _bits(extra):
        extra += 1
    return extra


def _header(sequence: int, named: bool) -> bytes:
    extra = _extra_bytes(sequence, named)
    if extra == 0:
        return bytes((sequence,))
    prefix = ((1 << extra) - 1) << (8 - extra)
    first = prefix | int(named) << (6 - extra) | sequence >> (8 * extra)
    return bytes((first,)) + (sequence & ((1 << (8 * extra)) - 1)).to_bytes(extra, "big")


def _read_header(data: bytes) -> tuple[int, bool, int]:
    """(sequence, named, header length)."""
    if not data:
        raise TruncatedCodeError("payload is empty: no sequence header")
    first = data[0]
    extra = 0
    while extra < _RESERVED_FORM and first & (0x80 >> extra):
        extra += 1
    if extra == _RESERVED_FORM:
        raise UnsupportedFormatVersionError(
            f"payload header {first:#04x} is a form this library does not know (a newer payload layout): "
            "upgrade compressor"
        )
    if extra == 0:
        return first, False, 1
    if len(data) < 1 + extra:
        raise TruncatedCodeError(f"payload of {len(data)} bytes ends inside its {1 + extra}-byte sequence header")
    named = bool(first >> (6 - extra) & 1)
    sequence = (first & ((1 << (6 - extra)) - 1)) << (8 * extra) | int.from_bytes(data[1 : 1 + extra], "big")
    if sequence > MAX_SEQUENCE:
        raise CorruptCodeError(f"payload sequence number {sequence} is over {MAX_SEQUENCE}: damaged data")
    if extra != _extra_bytes(sequence, named):
        raise CorruptCodeError(f"payload header is overlong for sequence {sequence}: damaged data")
    return sequence, named, 1 + extra
