"""Stream per-image codes from a camera to a gateway over TCP: ``compressor send`` / ``compressor receive``.

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
import json
import select
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor.atomic import atomic_write_json
from compressor.errors import CompressorError, RefusedError, TransportError
from compressor.images import read_image, write_png

PROTOCOL_VERSION = 1
MAGIC = b"LZT"
DEFAULT_PORT = 7467
HELLO, WELCOME, DATA, ACK, ERROR = 1, 2, 3, 4, 5
KINDS = {HELLO: "HELLO", WELCOME: "WELCOME", DATA: "DATA", ACK: "ACK", ERROR: "ERROR"}
MAX_BODY = 1 << 20
MAX_NAME_BYTES = 251  # NAME + ".png" fits the 255-byte file-name limit
NO_SEQ = 0xFFFFFFFF
DIGEST_SIZE = 16
STATE_FILE = "session.json"
INCOMPLETE_EXIT = 3

_HEAD = struct.Struct(">BI")  # kind, body length
_U32 = struct.Struct(">I")


class _Closed(TransportError):
    """The peer closed the connection (EOF)."""


# --- frames ------------------------------------------------------------------------------
def frame(kind: int, body: bytes = b"") -> bytes:
    """``kind u8 | length u32 | body | CRC-32 u32`` (big-endian; the CRC covers kind, length and body)."""
    if kind not in KINDS or len(body) > MAX_BODY:
        raise ValueError(f"bad frame: kind {kind}, {len(body)} bytes")
    head = _HEAD.pack(kind, len(body))
    return head + body + _U32.pack(zlib.crc32(head + body))


class FrameReader:
    """Cuts a byte stream into frames; refuses unknown kinds and oversize lengths before buffering them."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> tuple[int, bytes] | None:
        if len(self._buf) < _HEAD.size:
            return None
        kind, n = _HEAD.unpack_from(self._buf)
        if kind not in KINDS or n > MAX_BODY:
            raise TransportError(f"not a transport frame (kind {kind}, length {n}): wrong port or damaged link")
        end = _HEAD.size + n + 4
        if len(self._buf) < end:
            return None
        if zlib.crc32(self._buf[: end - 4]) != _U32.unpack_from(self._buf, end - 4)[0]:
            raise TransportError(f"{KINDS[kind]} frame check failed: damaged link")
        body = bytes(self._buf[_HEAD.size : end - 4])
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
            raise _Closed("connection closed by the peer")
        reader.feed(data)


def _name_bytes(name: str) -> bytes:
    raw = name.encode("utf-8") if isinstance(name, str) else b""
    if not 1 <= len(raw) <= MAX_NAME_BYTES or any(c in raw for c in b"/\\\0") or raw in (b".", b".."):
        raise ValueError(f"name {name!r}: need 1..{MAX_NAME_BYTES} bytes of UTF-8 without '/', '\\', NUL, '.', '..'")
    return raw


def _with_name(raw: bytes) -> bytes:
    return bytes((len(raw),)) + raw


def _split_name(body: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(body) or pos + 1 + body[pos] > len(body):
        raise TransportError("frame ends inside a name")
    raw = body[pos + 1 : pos + 1 + body[pos]]
    try:
        name = raw.decode("utf-8")
        _name_bytes(name)
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
        head = MAGIC + bytes((PROTOCOL_VERSION,)) + self.model_id + self.digest + _U32.pack(self.count)
        return head + _with_name(_name_bytes(self.session))

    @classmethod
    def unpack(cls, body: bytes) -> Hello:
        fixed = len(MAGIC) + 1 + 8 + DIGEST_SIZE + 4
        if body[:3] != MAGIC:
            raise TransportError("the peer does not speak this protocol (no LZT magic)")
        if len(body) < fixed:
            raise TransportError("HELLO frame too short")
        if body[3] != PROTOCOL_VERSION:
            raise RefusedError(f"protocol version {body[3]}; this gateway speaks {PROTOCOL_VERSION}: upgrade one side")
        session, end = _split_name(body, fixed)
        if end != len(body):
            raise TransportError("HELLO frame has trailing bytes")
        return cls(body[4:12], body[12 : 12 + DIGEST_SIZE], _U32.unpack_from(body, fixed - 4)[0], session)


def session_digest(model_id: bytes, names: Sequence[str], messages: Sequence[bytes]) -> bytes:
    """SHA-256 (first 16 bytes) of everything a session carries, so a resume cannot mix two batches."""
    h = hashlib.sha256(model_id + _U32.pack(len(messages)))
    for name, msg in zip(names, messages):
        raw = _name_bytes(name)
        h.update(_with_name(raw) + _U32.pack(len(msg)) + msg)
    return h.digest()[:DIGEST_SIZE]


def _error_body(seq: int, reason: str) -> bytes:
    return _U32.pack(seq) + reason.encode("utf-8")[:4000]


def _unpack_error(body: bytes) -> tuple[int | None, str]:
    seq = _U32.unpack_from(body)[0] if len(body) >= 4 else NO_SEQ
    return (None if seq == NO_SEQ else seq), body[4:].decode("utf-8", "replace")


def _abort(sock: socket.socket) -> None:
    """Close with RST: data still queued for a dead link must not arrive after a resume."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# --- camera side -------------------------------------------------------------------------
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
    ``(count + 1) * (retries + 1)`` attempts.
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
    result: SendResult = field(init=False)

    def __post_init__(self):
        if len(self.names) != len(self.messages):
            raise ValueError(f"{len(self.names)} names for {len(self.messages)} messages")
        if len({n.casefold() for n in self.names}) != len(self.names):
            raise ValueError("names must be unique (they become file names on the gateway)")
        if not (1 <= self.window and self.retries >= 0 and self.ack_timeout > 0 and self.connect_timeout > 0):
            raise ValueError("window must be >= 1, retries >= 0, timeouts > 0")
        self._names = [_name_bytes(n) for n in self.names]
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
            _abort(sock)
            raise
        sock.close()

    def _talk(self, sock: socket.socket) -> None:
        reader = FrameReader()
        sock.settimeout(self.ack_timeout)
        sock.sendall(frame(HELLO, self._hello))
        kind, body = read_frame(sock, reader, self.ack_timeout)
        if kind == ERROR:
            raise RefusedError(_unpack_error(body)[1])
        if kind != WELCOME or len(body) != 4:
            raise TransportError(f"expected WELCOME, got {KINDS[kind]}")
        resume = _U32.unpack(body)[0]
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
                sock.sendall(frame(DATA, _U32.pack(sent) + _with_name(self._names[sent]) + self.messages[sent]))
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
                if kind == ERROR:
                    seq, reason = _unpack_error(body)
                    raise RefusedError(f"image {seq}: {reason}" if seq is not None else reason)
                if kind != ACK or len(body) != 4:
                    raise TransportError(f"expected ACK, got {KINDS[kind]}")
                acked = _U32.unpack(body)[0]
                if not self.result.acknowledged <= acked <= sent:
                    raise TransportError(f"ACK {acked} outside {self.result.acknowledged}..{sent}")
                if acked > self.result.acknowledged:
                    self.result.acknowledged, waiting_since = acked, time.monotonic()


# --- gateway side ------------------------------------------------------------------------
class _Session:
    """One camera session on the gateway: its folder, progress, and the connection that owns it."""

    def __init__(self, folder: Path, state: dict):
        self.folder, self.state = folder, state
        self.lock = threading.Lock()
        self.owner: object | None = None
        self.conn: socket.socket | None = None

    @property
    def next_seq(self) -> int:
        return self.state["next_seq"]


def _load_state(path: Path) -> dict:
    """A session's progress as a previous run of the gateway left it."""
    try:
        state = json.loads(path.read_text())
        ok = isinstance(state["next_seq"], int) and isinstance(state["count"], int) and isinstance(state["digest"], str)
    except (ValueError, KeyError, TypeError) as e:
        ok, state = False, str(e)
    if not ok or not 0 <= state["next_seq"] <= state["count"]:
        raise RefusedError(f"{path} is damaged; move it away to start that session over")
    return state


class Receiver:
    """Decodes DATA frames into ``OUT/SESSION/NAME.png``, in sequence order, each file written once.

    ``decode(message) -> uint8 (H, W)``; ``log(event: dict)`` reports what happened (one
    JSON line per event on the command line).
    """

    def __init__(self, out: Path, model_id: bytes, decode: Callable[[bytes], object], log=lambda event: None):
        self.out, self.model_id, self.decode, self.log = Path(out), model_id, decode, log
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()  # the sessions dict, and the decoder (runtimes are not thread-safe)
        self.completed = threading.Event()

    def open(self, hello: Hello) -> _Session:
        if hello.model_id != self.model_id:
            raise RefusedError(
                f"codes are for model {hello.model_id.hex()}, this gateway decodes {self.model_id.hex()}: "
                "give both sides the same bundle"
            )
        with self._lock:
            session = self._sessions.get(hello.session)
            if session is None:
                folder = self.out / hello.session
                state_path = folder / STATE_FILE
                if state_path.is_file():
                    state = _load_state(state_path)
                else:
                    state = {"session": hello.session, "model_id": hello.model_id.hex(), "digest": hello.digest.hex()}
                    state.update(count=hello.count, next_seq=0)
                session = self._sessions[hello.session] = _Session(folder, state)
        if session.state["digest"] != hello.digest.hex() or session.state["count"] != hello.count:
            raise RefusedError(
                f"session {hello.session!r} in {self.out} holds other images ({session.state['count']}, digest "
                f"{session.state['digest']}); send these under another --session"
            )
        return session

    def take_over(self, session: _Session, owner: object, conn: socket.socket) -> int:
        """Make ``owner`` the session's only writer; the previous connection, if any, is cut."""
        with session.lock:
            old, session.owner, session.conn = session.conn, owner, conn
            if old is not None:
                try:
                    old.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return session.next_seq

    def accept(self, session: _Session, owner: object, seq: int, name: str, message: bytes) -> int | None:
        """Write image ``seq`` unless already written; returns the cumulative ACK, or None if superseded."""
        with session.lock:
            if session.owner is not owner:
                return None
            if seq < session.next_seq:
                self.log({"event": "duplicate", "session": session.state["session"], "seq": seq})
                return session.next_seq
            if seq != session.next_seq:
                raise RefusedError(f"expected image {session.next_seq}, got {seq}")
            if seq >= session.state["count"]:
                raise RefusedError(f"image {seq} is past the announced count {session.state['count']}")
            with self._lock:
                try:
                    pixels = self.decode(message)
                except CompressorError as e:  # damaged, another model, a lossless check that failed
                    raise RefusedError(f"cannot decode: {e}") from None
            session.folder.mkdir(parents=True, exist_ok=True)
            path = session.folder / f"{name}.png"
            event = "written"
            if path.exists():  # left by a crash after the write, before session.json; or a clash
                if not np.array_equal(read_image(path), pixels):
                    raise RefusedError(f"{path} exists with other content; names must be unique in a session")
                event = "already-on-disk"
            else:
                write_png(path, pixels)
            session.state["next_seq"] = seq + 1
            atomic_write_json(session.folder / STATE_FILE, session.state)
            self.log({"event": event, "session": session.state["session"], "seq": seq, "file": str(path)})
            if session.next_seq == session.state["count"]:
                self.log({"event": "complete", "session": session.state["session"], "count": session.next_seq})
            return session.next_seq

    def handle(self, conn: socket.socket, peer, timeout: float) -> None:
        """Serve one connection until it ends, is superseded, or is idle for ``timeout`` seconds."""
        owner, reader, session = object(), FrameReader(), None
        try:
            kind, body = read_frame(conn, reader, timeout)
            if kind != HELLO:
                raise TransportError(f"expected HELLO, got {KINDS[kind]}")
            hello = Hello.unpack(body)
            session = self.open(hello)
            resume = self.take_over(session, owner, conn)
            self.log({"event": "session", "session": hello.session, "peer": str(peer[0]), "resume": resume})
            conn.sendall(frame(WELCOME, _U32.pack(resume)))
            if resume == hello.count:  # sent again after it was complete: nothing to write
                self.completed.set()
            while True:
                kind, body = read_frame(conn, reader, timeout)
                if kind != DATA or len(body) < 5:
                    raise TransportError(f"expected DATA, got {KINDS[kind]}")
                seq = _U32.unpack_from(body)[0]
                name, pos = _split_name(body, 4)
                try:
                    ack = self.accept(session, owner, seq, name, body[pos:])
                except RefusedError as e:
                    conn.sendall(frame(ERROR, _error_body(seq, str(e))))
                    self.log({"event": "refused", "session": hello.session, "seq": seq, "reason": str(e)})
                    return
                if ack is None:
                    return
                conn.sendall(frame(ACK, _U32.pack(ack)))
                if ack == hello.count:  # only now: --once must not exit before the last ACK is sent
                    self.completed.set()
        except RefusedError as e:
            self.log({"event": "refused", "peer": str(peer[0]), "reason": str(e)})
            try:
                conn.sendall(frame(ERROR, _error_body(NO_SEQ, str(e))))
            except OSError:
                pass
        except _Closed:
            self.log({"event": "closed", "peer": str(peer[0])})
        except (TransportError, OSError) as e:
            self.log({"event": "disconnected", "peer": str(peer[0]), "reason": f"{type(e).__name__}: {e}"})


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


def serve(
    receiver: Receiver,
    host: str,
    port: int,
    *,
    once: bool = False,
    timeout: float = 60.0,
    max_idle: float | None = None,
    on_listening: Callable[[tuple], None] = lambda address: None,
) -> bool:
    """Accept cameras until stopped; with ``once``, until one session is complete.

    ``timeout``: a connection silent this long is closed. ``max_idle``: stop when no
    connection has been open for this long (None: never). Returns whether a session completed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    activity = {"last": time.monotonic(), "open": 0}
    lock = threading.Lock()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            with lock:
                activity["open"] += 1
            try:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                receiver.handle(self.request, self.client_address, timeout)
            finally:
                with lock:
                    activity["open"] -= 1
                    activity["last"] = time.monotonic()

    server_class = type("Server", (_Server,), {"address_family": family})
    with server_class((host, port), Handler) as server:
        server.timeout = 0.2
        on_listening(server.server_address)
        while not (once and receiver.completed.is_set()):
            with lock:
                idle = activity["open"] == 0 and time.monotonic() - activity["last"] > (max_idle or 0)
            if max_idle is not None and idle:
                break
            server.handle_request()
    return receiver.completed.is_set()


def image_decoder(decoder, *, binarize: bool = True) -> Callable[[bytes], np.ndarray]:
    """``message -> uint8 (H, W)`` with a :class:`compressor.Decoder`: 0/255, or grey levels."""
    from compressor.images import to_uint8

    def decode(message: bytes) -> np.ndarray:
        image = decoder.decompress([message], binarize=binarize)[0]  # lossless codes come back exact, uint8
        return image if image.dtype == np.uint8 else to_uint8(image)

    return decode


# --- command line ------------------------------------------------------------------------
def parse_address(text: str, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, or ``:PORT`` / ``PORT`` when a default host is given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    return host, int(port)


def add_commands(sub) -> None:
    """Add the send and receive subparsers to ``sub``."""
    from compressor.cli import _device_options
    from compressor.codec import MODES

    s = sub.add_parser("send", help="encode images and stream them to a gateway ('compressor receive')")
    s.add_argument("images", nargs="+", help="image files, folders of images, or .npy/.npz arrays")
    s.add_argument("--to", required=True, help="gateway address HOST:PORT")
    _device_options(s, "encoder")
    rate = s.add_mutually_exclusive_group()
    rate.add_argument("--step", type=float, help="quantization step (one of the bundle's steps)")
    rate.add_argument("--quality", type=int, help="1..16, higher keeps more detail")
    rate.add_argument("--target-bytes", type=int, help="per image: the finest step whose message fits")
    s.add_argument("--mode", choices=MODES, default="entropy")
    s.add_argument("--session", help="session name: the gateway's folder (default: a digest of the images)")
    s.add_argument("--window", type=int, default=32, help="images in flight before an ACK (default: %(default)s)")
    s.add_argument("--interval", type=float, default=0.0, help="seconds between images (default: %(default)s)")
    s.add_argument("--ack-timeout", type=float, default=5.0, help="reconnect after this long without an ACK")
    s.add_argument("--connect-timeout", type=float, default=5.0)
    s.add_argument("--retries", type=int, default=5, help="failed connections in a row before giving up")
    s.add_argument("--report", help="also write the JSON summary here (atomically), with unacknowledged names")
    s.set_defaults(handler=_send)

    r = sub.add_parser("receive", help="accept images from cameras ('compressor send'), write PNGs")
    r.add_argument("-o", "--out", required=True, help="folder; each session gets OUT/SESSION/ (created if missing)")
    r.add_argument("--listen", default=f"0.0.0.0:{DEFAULT_PORT}", help="HOST:PORT (default: %(default)s)")
    _device_options(r, "decoder")
    r.add_argument("--probabilities", action="store_true", help="write grey-level probabilities, not 0/255")
    r.add_argument("--once", action="store_true", help="exit after one session is complete")
    r.add_argument("--timeout", type=float, default=60.0, help="close a connection silent this long")
    r.add_argument("--max-idle", type=float, help="exit when no camera has connected for this long")
    r.set_defaults(handler=_receive)


def _send(args) -> int:
    from compressor.codec import Encoder
    from compressor.images import read_images

    images, names = read_images(args.images)
    enc = Encoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    messages = enc.compress(
        images, step=args.step, quality=args.quality, target_bytes=args.target_bytes, mode=args.mode
    )
    sender = Sender(
        parse_address(args.to),
        messages,
        names,
        model_id=enc.coding.model_id,
        session=args.session,
        window=args.window,
        interval=args.interval,
        ack_timeout=args.ack_timeout,
        connect_timeout=args.connect_timeout,
        retries=args.retries,
        log=lambda msg: print(f"compressor send: {msg}", file=sys.stderr, flush=True),
    )
    result = sender.run()
    summary = {**result.summary(), "to": args.to, "bytes": sum(map(len, messages))}
    if args.report:
        atomic_write_json(args.report, {**summary, "unacknowledged_names": [names[i] for i in result.unacknowledged]})
    print(json.dumps(summary), flush=True)
    if result.complete:
        return 0
    last = f"..{result.count - 1}" if result.count - result.acknowledged > 1 else ""
    print(
        f"compressor send: {result.count - result.acknowledged} of {result.count} images NOT acknowledged: "
        f"sequence numbers {result.acknowledged}{last} (run the same command again to resume)",
        file=sys.stderr,
    )
    return INCOMPLETE_EXIT


def _receive(args) -> int:
    from compressor.codec import Decoder

    dec = Decoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    printer = threading.Lock()

    def log(event: dict) -> None:
        with printer:
            print(json.dumps(event), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    receiver = Receiver(out, dec.coding.model_id, image_decoder(dec, binarize=not args.probabilities), log)
    host, port = parse_address(args.listen, default_host="0.0.0.0")

    def listening(address) -> None:
        log({"event": "listening", "host": address[0], "port": address[1], "runtime": dec.runtime})

    try:
        done = serve(
            receiver, host, port, once=args.once, timeout=args.timeout, max_idle=args.max_idle, on_listening=listening
        )
    except KeyboardInterrupt:  # the usual way to stop a gateway by hand; every ACK sent is on disk
        return 130
    return 0 if done or not args.once else INCOMPLETE_EXIT
