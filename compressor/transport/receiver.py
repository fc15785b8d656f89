"""The gateway side of the TCP transport: decode, write atomically, record progress, then ACK."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from compressor.errors import CompressorError, RefusedError, TransportError
from compressor.io.atomic import atomic_write_json
from compressor.io.files import read_image, write_png
from compressor.transport.protocol import (
    ACK,
    DATA,
    ERROR,
    HELLO,
    KINDS,
    NO_SEQ,
    STATE_FILE,
    U32,
    WELCOME,
    Closed,
    FrameReader,
    Hello,
    error_body,
    frame,
    read_frame,
    split_name,
)


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
            conn.sendall(frame(WELCOME, U32.pack(resume)))
            if resume == hello.count:  # sent again after it was complete: nothing to write
                self.completed.set()
            while True:
                kind, body = read_frame(conn, reader, timeout)
                if kind != DATA or len(body) < 5:
                    raise TransportError(f"expected DATA, got {KINDS[kind]}")
                seq = U32.unpack_from(body)[0]
                name, pos = split_name(body, 4)
                try:
                    ack = self.accept(session, owner, seq, name, body[pos:])
                except RefusedError as e:
                    conn.sendall(frame(ERROR, error_body(seq, str(e))))
                    self.log({"event": "refused", "session": hello.session, "seq": seq, "reason": str(e)})
                    return
                if ack is None:
                    return
                conn.sendall(frame(ACK, U32.pack(ack)))
                if ack == hello.count:  # only now: --once must not exit before the last ACK is sent
                    self.completed.set()
        except RefusedError as e:
            self.log({"event": "refused", "peer": str(peer[0]), "reason": str(e)})
            try:
                conn.sendall(frame(ERROR, error_body(NO_SEQ, str(e))))
            except OSError:
                pass
        except Closed:
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
    from compressor.io.arrays import to_uint8

    def decode(message: bytes) -> np.ndarray:
        image = decoder.decompress([message], binarize=binarize)[0]  # lossless codes come back exact, uint8
        return image if image.dtype == np.uint8 else to_uint8(image)

    return decode
