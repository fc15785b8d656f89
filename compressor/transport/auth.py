"""The optional shared key of the transport (``--key-file``): HMAC-SHA256 tags on every frame.

Without a key any host that reaches the gateway's port can open a session and have images
written. With a key (the same file on the camera and the gateway) only a peer holding it can:

* the camera's HELLO carries a fresh 16-byte nonce and a tag under the key, so a peer without
  the key is refused before any session is touched; the gateway remembers recent nonces, so a
  recorded HELLO cannot be replayed to take a session over;
* the gateway's WELCOME carries its own nonce; from then on both sides tag every frame with a
  per-connection key ``K = HMAC(key, "LZT1 session" || camera nonce || gateway nonce)`` over a
  direction byte and a frame counter, so frames cannot be forged, replayed from another
  connection, reordered or dropped unnoticed.

Tags are the last 16 bytes of a frame's body; the frame itself (kind, length, CRC-32) is
unchanged, so a gateway without a key answers a keyed camera with a readable ERROR.
Byte layout: docs/transport.md.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import secrets
import threading

from compressor.errors import AuthenticationError, TransportError
from compressor.io.regular import NotRegularFile, open_regular

TAG_SIZE = 16
NONCE_SIZE = 16
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 4096
TO_GATEWAY, TO_CAMERA = b"G", b"C"


def read_key(path: str | os.PathLike[str]) -> bytes:
    """The key in ``path``: a regular file of 16..4096 bytes (e.g. ``head -c 32 /dev/urandom > key``)."""
    name = os.fspath(path)
    unfit = f"key file {name} must be a regular file of at most {MAX_KEY_BYTES} bytes"
    try:
        f, st = open_regular(path)
        with f:
            if st.st_size > MAX_KEY_BYTES:
                raise TransportError(unfit)
            key = f.read(MAX_KEY_BYTES + 1).strip()
    except NotRegularFile:
        raise TransportError(unfit) from None
    except OSError as e:
        raise TransportError(f"cannot read key file {name}: {e.strerror or e}") from e
    if len(key) < MIN_KEY_BYTES:
        raise TransportError(
            f"key file {name} holds {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes "
            "(head -c 32 /dev/urandom > KEYFILE)"
        )
    return key


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def hello_tag(key: bytes, kind: int, body: bytes) -> bytes:
    """The tag of a HELLO body (which ends with the camera's nonce), under the shared key itself."""
    return hmac.new(key, b"LZT1 hello" + bytes((kind,)) + body, hashlib.sha256).digest()[:TAG_SIZE]


def split_tag(body: bytes) -> tuple[bytes, bytes]:
    if len(body) < TAG_SIZE:
        raise AuthenticationError("frame carries no authentication tag: the peer does not use the same --key-file")
    return body[:-TAG_SIZE], body[-TAG_SIZE:]


class Channel:
    """Tags for one connection, after the nonces were exchanged. ``me``: the direction this side sends."""

    def __init__(self, key: bytes, camera_nonce: bytes, gateway_nonce: bytes, me: bytes):
        self._k = hmac.new(key, b"LZT1 session" + camera_nonce + gateway_nonce, hashlib.sha256).digest()
        self._me, self._peer = me, (TO_CAMERA if me == TO_GATEWAY else TO_GATEWAY)
        self._sent = self._received = 0

    def _tag(self, direction: bytes, counter: int, kind: int, body: bytes) -> bytes:
        msg = direction + counter.to_bytes(8, "big") + bytes((kind,)) + body
        return hmac.new(self._k, msg, hashlib.sha256).digest()[:TAG_SIZE]

    def seal(self, kind: int, body: bytes) -> bytes:
        """``body`` with its tag appended (the next frame this side sends)."""
        tag = self._tag(self._me, self._sent, kind, body)
        self._sent += 1
        return body + tag

    def open(self, kind: int, body: bytes) -> bytes:
        """``body`` without its tag, or ``AuthenticationError`` (forged, replayed, reordered or damaged)."""
        plain, tag = split_tag(body)
        if not hmac.compare_digest(tag, self._tag(self._peer, self._received, kind, plain)):
            raise AuthenticationError("a frame failed authentication: wrong key, or the link was tampered with")
        self._received += 1
        return plain


class NonceCache:
    """Recently seen camera nonces (bounded), so a recorded HELLO cannot be replayed."""

    def __init__(self, size: int = 65536):
        self._seen: set[bytes] = set()
        self._order: collections.deque[bytes] = collections.deque()
        self._size = size
        self._lock = threading.Lock()

    def fresh(self, nonce: bytes) -> bool:
        """Record ``nonce``; False if it was seen before."""
        with self._lock:
            if nonce in self._seen:
                return False
            self._seen.add(nonce)
            self._order.append(nonce)
            if len(self._order) > self._size:
                self._seen.discard(self._order.popleft())
            return True
