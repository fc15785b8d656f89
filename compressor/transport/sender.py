"""The camera side of the TCP transport: send messages in a window, resume from the gateway's ACKs."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from compressor.errors import AuthenticationError, RefusedError, TransportError
from compressor.names import file_key
from compressor.transport import auth
from compressor.transport.protocol import (
    ACK,
    DATA,
    ERROR,
    HELLO,
    KINDS,
    RETRY_SEQ,
    U32,
    WELCOME,
    FrameReader,
    Hello,
    abort,
    frame,
    name_bytes,
    read_frame,
    session_digest,
    unpack_error,
    with_name,
)


@dataclass
class SendResult:
    """Where a send ended. ``acknowledged``: images 0..acknowledged-1 are on the gateway's disk."""

    session: str
    count: int
    acknowledged: int = 0
    connections: int = 0
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.acknowledged == self.count

    @property
    def unacknowledged(self) -> list[int]:
        return list(range(self.acknowledged, self.count))

    def summary(self) -> dict:
        rest = [[self.acknowledged, self.count - 1]] if not self.complete else []
        return {
            "session": self.session,
            "count": self.count,
            "acknowledged": self.acknowledged,
            "unacknowledged": rest,  # inclusive ranges of sequence numbers
            "connections": self.connections,
            "error": self.error,
        }


@dataclass
class Sender:
    """Sends ``messages`` (one per image, from ``Encoder.compress``) to a gateway, resuming after cuts.

    ``window``: frames in flight before waiting for an ACK. ``interval``: seconds between
    frames (a camera's frame period; 0 = as fast as the link takes them). ``ack_timeout``:
    a connection with frames in flight and no ACK for this long is dropped and reopened.
    ``retries``: failed connections in a row (no new ACK) before giving up; the count
    restarts whenever an attempt gets a new ACK, so the total is bounded by
    ``(count + 1) * (retries + 1)`` attempts. ``key`` (optional, from ``--key-file``):
    authenticate every frame (:mod:`compressor.transport.auth`); the gateway must hold it too.
    """

    address: tuple[str, int]
    messages: Sequence[bytes]
    names: Sequence[str]
    model_id: bytes
    session: str | None = None
    window: int = 32
    interval: float = 0.0
    ack_timeout: float = 5.0
    connect_timeout: float = 5.0
    retries: int = 5
    backoff: float = 0.5
    log: Callable[[str], None] = lambda msg: None
    key: bytes | None = None
    result: SendResult = field(init=False)

    def __post_init__(self):
        if len(self.names) != len(self.messages):
            raise ValueError(f"{len(self.names)} names for {len(self.messages)} messages")
        if len({file_key(n) for n in self.names}) != len(self.names):
            raise ValueError("names must be unique (they become file names on the gateway)")
        if not (1 <= self.window and self.retries >= 0 and self.ack_timeout > 0 and self.connect_timeout > 0):
            raise ValueError("window must be >= 1, retries >= 0, timeouts > 0")
        self._names = [name_bytes(n) for n in self.names]
        self.digest = session_digest(self.model_id, self.names, self.messages)
        self.session = self.session or self.digest.hex()[:16]
        self._hello = Hello(self.model_id, self.digest, len(self.messages), self.session).pack()
        self.result = SendResult(self.session, len(self.messages))

    def run(self) -> SendResult:
        """Send until every image is acknowledged, the peer refuses, or ``retries`` attempts in a row fail."""
        failures, best = 0, self.result.acknowledged
        while not self.result.complete:
            try:
                self._attempt()
            except RefusedError as e:
                self.result.error = str(e)
                self.log(f"gateway refused: {e}")
                break
            except (TransportError, OSError) as e:
                self.result.error = f"{type(e).__name__}: {e}"
                self.log(f"attempt failed with {self.result.acknowledged}/{self.result.count} acknowledged: {e}")
            if self.result.complete:
                break
            failures = 0 if self.result.acknowledged > best else failures + 1  # only new ground resets it
            best = max(best, self.result.acknowledged)
            if failures > self.retries:
                break
            time.sleep(min(self.backoff * 2 ** max(failures - 1, 0), 5.0))
        if self.result.complete:
            self.result.error = None
        return self.result

    def _attempt(self) -> None:
        sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        self.result.connections += 1
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._talk(sock)
        except BaseException:
            abort(sock)
            raise
        sock.close()

    def _talk(self, sock: socket.socket) -> None:
        reader, channel = FrameReader(), None
        sock.settimeout(self.ack_timeout)
        hello = self._hello
        if self.key is not None:
            nonce = auth.new_nonce()
            hello += nonce
            hello += auth.hello_tag(self.key, HELLO, hello)
        sock.sendall(frame(HELLO, hello))
        kind, body = read_frame(sock, reader, self.ack_timeout)
        if kind == ERROR:  # before WELCOME an ERROR carries no tag: the gateway may not know us yet
            seq, reason = unpack_error(body)
            if seq == RETRY_SEQ:
                raise TransportError(f"gateway busy: {reason}")
            raise RefusedError(reason)
        if kind != WELCOME:
            raise TransportError(f"expected WELCOME, got {KINDS[kind]}")
        if self.key is not None:
            if len(body) != 4 + auth.NONCE_SIZE + auth.TAG_SIZE:
                raise AuthenticationError("WELCOME carries no gateway nonce: the gateway does not use --key-file")
            channel = auth.Channel(self.key, nonce, body[4 : 4 + auth.NONCE_SIZE], auth.TO_GATEWAY)
            body = channel.open(kind, body)[:4]
        if len(body) != 4:
            raise TransportError("WELCOME frame has the wrong length")
        resume = U32.unpack(body)[0]
        if resume > self.result.count:
            raise TransportError(f"gateway resumes at {resume}, past the last image")
        if resume < self.result.acknowledged:
            self.log(f"gateway lost images {resume}..{self.result.acknowledged - 1} it had acknowledged; resending")
        elif resume > self.result.acknowledged:
            self.log(f"gateway already has images up to {resume - 1}; resuming there")
        self.result.acknowledged = sent = resume
        waiting_since, last_send = time.monotonic(), -float("inf")
        while not self.result.complete:
            now = time.monotonic()
            while sent < self.result.count and sent - self.result.acknowledged < self.window:
                if now - last_send < self.interval:
                    break
                if sent == self.result.acknowledged:
                    waiting_since = now
                body = U32.pack(sent) + with_name(self._names[sent]) + self.messages[sent]
                sock.sendall(frame(DATA, channel.seal(DATA, body) if channel is not None else body))
                sent, last_send = sent + 1, now
            outstanding = sent > self.result.acknowledged
            wait = self.ack_timeout - (now - waiting_since) if outstanding else self.ack_timeout
            if outstanding and wait <= 0:
                raise TransportError(f"no acknowledgement for {self.ack_timeout:g} s")
            if sent < self.result.count and sent - self.result.acknowledged < self.window:
                wait = min(wait, max(0.0, self.interval - (now - last_send)))
            if not select.select([sock], [], [], wait)[0]:
                continue
            data = sock.recv(65536)
            if not data:
                raise TransportError("connection closed by the gateway")
            reader.feed(data)
            while (got := reader.next()) is not None:
                kind, body = got
                if channel is not None:
                    body = channel.open(kind, body)
                if kind == ERROR:
                    seq, reason = unpack_error(body)
                    raise RefusedError(f"image {seq}: {reason}" if seq is not None else reason)
                if kind != ACK or len(body) != 4:
                    raise TransportError(f"expected ACK, got {KINDS[kind]}")
                acked = U32.unpack(body)[0]
                if not self.result.acknowledged <= acked <= sent:
                    raise TransportError(f"ACK {acked} outside {self.result.acknowledged}..{sent}")
                if acked > self.result.acknowledged:
                    self.result.acknowledged, waiting_since = acked, time.monotonic()
