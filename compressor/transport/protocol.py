"""Frames and sessions of the camera -> gateway TCP protocol (docs/transport.md).

The sender (sender.py, ``compressor send``) and the receiver (receiver.py, ``compressor receive``)
build on what is defined here.

The byte-level protocol is ``docs/transport.md``. In short: the camera opens a *session*
(model id, a digest of everything it will send, the image count), the gateway answers with
the first sequence number it still needs, and the camera sends one DATA frame per image
message (``Encoder.compress``), at most ``window`` ahead of the last acknowledgement. The
gateway decodes each message, writes its PNG atomically, records the session's progress in
``OUT/SESSION/session.json``, and only then acknowledges (cumulatively).

Why this shape:

* an ACK means "on the gateway's disk", so after a cut the camera can trust the gateway's
  resume point, and images acknowledged before a cut are never sent or written again;
* the gateway's progress survives its own restart (session.json), and it never overwrites a
  file, so nothing is written twice even if the camera retries for a long time;
* when the camera gives up (bounded retries), the unacknowledged sequence numbers are exactly
  ``[acknowledged, count)``: ACKs are cumulative and the gateway writes in sequence order.

Nothing here needs TensorFlow; the decoder and encoder are the device-side ones.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from compressor import names as name_rules
from compressor.errors import RefusedError, TransportError
from compressor.wire import MODEL_ID_SIZE

PROTOCOL_VERSION = 1
MAGIC = b"LZT"
DEFAULT_PORT = 7467
HELLO, WELCOME, DATA, ACK, ERROR = 1, 2, 3, 4, 5
KINDS = {HELLO: "HELLO", WELCOME: "WELCOME", DATA: "DATA", ACK: "ACK", ERROR: "ERROR"}
MAX_BODY = 1 << 20
MAX_NAME_BYTES = name_rules.MAX_NAME_BYTES
NO_SEQ = 0xFFFFFFFF
#: Sequence number of an ERROR that a later attempt may overcome (the gateway is busy).
RETRY_SEQ = 0xFFFFFFFE
DIGEST_SIZE = 16
STATE_FILE = "session.json"
INCOMPLETE_EXIT = 3

HEAD = struct.Struct(">BI")  # kind, body length
U32 = struct.Struct(">I")


class Closed(TransportError):
    """The peer closed the connection (EOF)."""


# --- frames ------------------------------------------------------------------------------
def frame(kind: int, body: bytes = b"") -> bytes:
    """``kind u8 | length u32 | body | CRC-32 u32`` (big-endian; the CRC covers kind, length and body)."""
    if kind not in KINDS or len(body) > MAX_BODY:
        raise ValueError(f"bad frame: kind {kind}, {len(body)} bytes")
    head = HEAD.pack(kind, len(body))
    return head + body + U32.pack(zlib.crc32(head + body))


class FrameReader:
    """Cuts a byte stream into frames; refuses unknown kinds and oversize lengths before buffering them."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> tuple[int, bytes] | None:
        if len(self._buf) < HEAD.size:
            return None
        kind, n = HEAD.unpack_from(self._buf)
        if kind not in KINDS or n > MAX_BODY:
            raise TransportError(f"not a transport frame (kind {kind}, length {n}): wrong port or damaged link")
        end = HEAD.size + n + 4
        if len(self._buf) < end:
            return None
        if zlib.crc32(self._buf[: end - 4]) != U32.unpack_from(self._buf, end - 4)[0]:
            raise TransportError(f"{KINDS[kind]} frame check failed: damaged link")
        body = bytes(self._buf[HEAD.size : end - 4])
        del self._buf[:end]
        return kind, body


def read_frame(sock: socket.socket, reader: FrameReader, timeout: float) -> tuple[int, bytes]:
    """The next frame, waiting at most ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    while True:
        got = reader.next()
        if got is not None:
            return got
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError(f"nothing from the peer for {timeout:g} s")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            raise Closed("connection closed by the peer")
        reader.feed(data)


def name_bytes(name: str) -> bytes:
    """A name as it goes into a frame (the rules of :mod:`compressor.names`)."""
    return name_rules.encode(name)


def with_name(raw: bytes) -> bytes:
    return bytes((len(raw),)) + raw


def split_name(body: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(body) or pos + 1 + body[pos] > len(body):
        raise TransportError("frame ends inside a name")
    raw = body[pos + 1 : pos + 1 + body[pos]]
    try:
        name = raw.decode("utf-8")
        name_bytes(name)
    except (UnicodeDecodeError, ValueError) as e:
        raise TransportError(f"bad name in frame: {e}") from None
    return name, pos + 1 + len(raw)


@dataclass(frozen=True)
class Hello:
    """What a camera announces: enough for the gateway to resume, or to refuse a mismatch."""

    model_id: bytes
    digest: bytes
    count: int
    session: str

    def pack(self) -> bytes:
        head = MAGIC + bytes((PROTOCOL_VERSION,)) + self.model_id + self.digest + U32.pack(self.count)
        return head + with_name(name_bytes(self.session))

    @classmethod
    def unpack(cls, body: bytes) -> Hello:
        fixed = len(MAGIC) + 1 + MODEL_ID_SIZE + DIGEST_SIZE + 4
        if body[:3] != MAGIC:
            raise TransportError("the peer does not speak this protocol (no LZT magic)")
        if len(body) < fixed:
            raise TransportError("HELLO frame too short")
        if body[3] != PROTOCOL_VERSION:
            raise RefusedError(f"protocol version {body[3]}; this gateway speaks {PROTOCOL_VERSION}: upgrade one side")
        session, end = split_name(body, fixed)
        if end != len(body):
            raise RefusedError(
                f"HELLO has {len(body) - end} bytes more than this gateway expects: if the camera uses "
                "--key-file, start the gateway with the same --key-file"
            )
        mid = 4 + MODEL_ID_SIZE
        return cls(body[4:mid], body[mid : mid + DIGEST_SIZE], U32.unpack_from(body, fixed - 4)[0], session)


def session_digest(model_id: bytes, names: Sequence[str], messages: Sequence[bytes]) -> bytes:
    """SHA-256 (first 16 bytes) of everything a session carries, so a resume cannot mix two batches."""
    h = hashlib.sha256(model_id + U32.pack(len(messages)))
    for name, msg in zip(names, messages):
        raw = name_bytes(name)
        h.update(with_name(raw) + U32.pack(len(msg)) + msg)
    return h.digest()[:DIGEST_SIZE]


def error_body(seq: int, reason: str) -> bytes:
    return U32.pack(seq) + reason.encode("utf-8")[:4000]


def unpack_error(body: bytes) -> tuple[int | None, str]:
    seq = U32.unpack_from(body)[0] if len(body) >= 4 else NO_SEQ
    return (None if seq == NO_SEQ else seq), body[4:].decode("utf-8", "replace")


def abort(sock: socket.socket) -> None:
    """Close with RST: data still queued for a dead link must not arrive after a resume."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
