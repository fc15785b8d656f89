"""The gateway side of the TCP transport: decode, write atomically, record progress, then ACK.

The session folder's files and progress record (``session.json``) are kept by
:class:`~compressor.io.gateway_store.GatewayFolder`, the same store the MQTT gateway uses.
"""

from __future__ import annotations

import hmac
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from compressor.errors import AuthenticationError, CompressorError, RefusedError, TransportError
from compressor.io.gateway_store import CLASH, GatewayFolder
from compressor.transport import auth
from compressor.transport.protocol import (
    ACK,
    DATA,
    ERROR,
    HELLO,
    KINDS,
    NO_SEQ,
    RETRY_SEQ,
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

#: Seconds a new connection has to send its HELLO (whatever ``timeout`` says).
HELLO_TIMEOUT = 10.0
#: Connections served at once. One more closes the oldest connection still waiting to send its
#: HELLO, if there is one (see :func:`serve`); else it is answered with a retryable ERROR and closed.
MAX_CONNECTIONS = 16
#: Sessions kept in memory; beyond this, those without a connection are forgotten (not their files).
MAX_SESSIONS_IN_MEMORY = 1024


class _Session:
    """One camera session on the gateway: its folder, progress, and the connection that owns it."""

    def __init__(self, store: GatewayFolder, state: dict):
        self.store, self.folder, self.state = store, store.folder, state
        self.lock = threading.Lock()
        self.owner: object | None = None
        self.conn: socket.socket | None = None

    @property
    def next_seq(self) -> int:
        return self.state["next_seq"]


def _session_store(folder: Path) -> GatewayFolder:
    return GatewayFolder(folder, STATE_FILE, error=RefusedError, what="session state")


def _load_state(store: GatewayFolder) -> dict:
    """A session's progress as a previous run of the gateway left it."""
    try:
        state = store.load(max_bytes=1 << 16)
        ok = type(state["next_seq"]) is int and type(state["count"]) is int  # not bool: JSON true is no count
        ok = ok and isinstance(state["digest"], str) and isinstance(state["session"], str)  # logged with each image
    except (RefusedError, KeyError, TypeError) as e:
        ok, state = False, str(e)
    if not ok or not 0 <= state["next_seq"] <= state["count"]:
        raise RefusedError(f"{store.progress_path} is damaged; move it away to start that session over")
    return state


class Receiver:
    """Decodes DATA frames into ``OUT/SESSION/NAME.png``, in sequence order, each file written once.

    ``decode(message) -> uint8 (H, W)``; ``log(event: dict)`` reports what happened (one
    JSON line per event on the command line).

    ``key`` (optional, from ``--key-file``): only cameras holding the same key are served
    (:mod:`compressor.transport.auth`).
    """

    def __init__(
        self,
        out: Path,
        model_id: bytes,
        decode: Callable[[bytes], object],
        log=lambda event: None,
        *,
        key: bytes | None = None,
    ):
        self.out, self.model_id, self.decode, self.log = Path(out), model_id, decode, log
        self.key = key
        self._nonces = auth.NonceCache()
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()  # the sessions dict; taken before a session's own lock
        self._decode_lock = threading.Lock()  # runtimes are not thread-safe
        self.completed = threading.Event()

    def hello(self, body: bytes) -> tuple[Hello, bytes | None]:
        """The HELLO in ``body`` and, with a key, the camera's nonce, once its tag is checked."""
        if self.key is None:
            return Hello.unpack(body), None
        plain, tag = auth.split_tag(body)
        if len(plain) <= auth.NONCE_SIZE or not hmac.compare_digest(tag, auth.hello_tag(self.key, HELLO, plain)):
            raise AuthenticationError(
                "HELLO failed authentication: this gateway needs the camera to use the same --key-file"
            )
        nonce = plain[-auth.NONCE_SIZE :]
        if not self._nonces.fresh(nonce):
            raise AuthenticationError("HELLO was replayed (its nonce was seen before)")
        return Hello.unpack(plain[: -auth.NONCE_SIZE]), nonce

    def open(self, hello: Hello, owner: object, conn: socket.socket) -> tuple[_Session, int]:
        """The session ``hello`` names, now owned by ``owner`` (see :meth:`take_over`), and its resume point.

        Looking the session up and taking it over happen under one lock, so no two objects ever
        stand for one session folder. Sessions nobody owns are dropped from memory once there
        are more than ``MAX_SESSIONS_IN_MEMORY`` (their progress is on disk in session.json).
        """
        with self._lock:
            session = self._find(hello)
            resume = self.take_over(session, owner, conn)
            if len(self._sessions) > MAX_SESSIONS_IN_MEMORY:
                for name in [n for n, s in self._sessions.items() if s.owner is None]:
                    del self._sessions[name]
            return session, resume

    def _find(self, hello: Hello) -> _Session:
        if hello.model_id != self.model_id:
            raise RefusedError(
                f"codes are for model {hello.model_id.hex()}, this gateway decodes {self.model_id.hex()}: "
                "give both sides the same bundle"
            )
        if hello.count == 0:
            raise RefusedError("a session of 0 images: nothing to send")
        if hello.session.startswith("."):
            raise RefusedError(f"session name {hello.session!r} starts with '.', which the gateway keeps for itself")
        session = self._sessions.get(hello.session)
        if session is not None and session.owner is None and self._unclaimed(session, hello):
            session = None  # announced by a peer that left before writing anything: free again
        if session is None:
            store = _session_store(self.out / hello.session)
            if store.progress_path.is_file():
                state = _load_state(store)
            else:
                state = {"session": hello.session, "model_id": hello.model_id.hex(), "digest": hello.digest.hex()}
                state.update(count=hello.count, next_seq=0)
            session = self._sessions[hello.session] = _Session(store, state)
        if session.state["digest"] != hello.digest.hex() or session.state["count"] != hello.count:
            raise RefusedError(
                f"session {hello.session!r} in {self.out} holds other images ({session.state['count']}, digest "
                f"{session.state['digest']}); send these under another --session"
            )
        return session

    @staticmethod
    def _unclaimed(session: _Session, hello: Hello) -> bool:
        differs = session.state["digest"] != hello.digest.hex() or session.state["count"] != hello.count
        return differs and session.next_seq == 0 and not session.store.progress_path.exists()

    def release(self, session: _Session, owner: object) -> None:
        """``owner``'s connection ended: the session has no writer until the next HELLO."""
        with session.lock:
            if session.owner is owner:
                session.owner, session.conn = None, None

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
            with self._decode_lock:
                try:
                    pixels = self.decode(message)
                except CompressorError as e:  # damaged, another model, a lossless check that failed
                    raise RefusedError(f"cannot decode: {e}") from None
            try:
                session.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RefusedError(f"the gateway cannot create the session folder: {e.strerror or e}") from None
            try:
                event, path = session.store.place(name, pixels)
            except OSError as e:  # full disk, permissions, a name too long for this file system
                raise RefusedError(f"the gateway cannot write {name}.png: {e.strerror or e}") from None
            if event == CLASH:  # left by a crash after the write, before session.json, is already-on-disk
                raise RefusedError(f"{path} exists with other content; names must be unique in a session")
            session.state["next_seq"] = seq + 1
            try:
                session.store.save(session.state)
            except OSError as e:
                session.state["next_seq"] = seq
                raise RefusedError(f"the gateway cannot record progress: {e.strerror or e}") from None
            self.log({"event": event, "session": session.state["session"], "seq": seq, "file": str(path)})
            if session.next_seq == session.state["count"]:
                self.log({"event": "complete", "session": session.state["session"], "count": session.next_seq})
            return session.next_seq

    def handle(self, conn: socket.socket, peer, timeout: float, on_hello: Callable[[], None] = lambda: None) -> None:
        """Serve one connection until it ends, is superseded, or is idle for ``timeout`` seconds.

        Every refusal (bad or unauthenticated frames, a session or image the gateway will not
        take, a file it cannot write, idleness) is answered with an ERROR frame before closing.
        ``on_hello`` is called once the peer's HELLO has been read (and, with a key, authenticated).
        """
        owner, reader, session, channel = object(), FrameReader(), None, None
        seq, where = NO_SEQ, {"peer": str(peer[0])}

        def send(kind: int, body: bytes) -> None:
            conn.sendall(frame(kind, channel.seal(kind, body) if channel is not None else body))

        try:
            kind, body = read_frame(conn, reader, min(timeout, HELLO_TIMEOUT))
            if kind != HELLO:
                raise TransportError(f"expected HELLO, got {KINDS[kind]}")
            hello, camera_nonce = self.hello(body)
            on_hello()
            where["session"] = hello.session
            session, resume = self.open(hello, owner, conn)
            self.log({"event": "session", "session": hello.session, "peer": str(peer[0]), "resume": resume})
            welcome = U32.pack(resume)
            if camera_nonce is not None:
                gateway_nonce = auth.new_nonce()
                channel = auth.Channel(self.key, camera_nonce, gateway_nonce, auth.TO_CAMERA)
                welcome += gateway_nonce
            send(WELCOME, welcome)
            if resume == hello.count:  # sent again after it was complete: nothing to write
                self.completed.set()
            while True:
                kind, body = read_frame(conn, reader, timeout)
                if channel is not None:
                    body = channel.open(kind, body)
                if kind != DATA:
                    raise TransportError(f"expected DATA, got {KINDS[kind]}")
                if len(body) < 5:
                    raise TransportError(f"DATA frame of {len(body)} bytes, too short for a sequence number and a name")
                seq = U32.unpack_from(body)[0]
                name, pos = split_name(body, 4)
                ack = self.accept(session, owner, seq, name, body[pos:])
                if ack is None:
                    return
                seq = NO_SEQ
                send(ACK, U32.pack(ack))
                if ack == hello.count:  # only now: --once must not exit before the last ACK is sent
                    self.completed.set()
        except Closed:
            self.log({"event": "closed", **where})
        except (CompressorError, OSError) as e:
            refused = isinstance(e, (RefusedError, AuthenticationError))
            event = {"event": "refused" if refused else "disconnected", **where}
            if seq != NO_SEQ:
                event["seq"] = seq
            self.log({**event, "reason": str(e) if refused else f"{type(e).__name__}: {e}"})
            try:  # best effort: the link may be what failed
                conn.settimeout(1.0)
                send(ERROR, error_body(seq, str(e)))
            except (OSError, ValueError):
                pass
        finally:
            if session is not None:
                self.release(session, owner)


def refuse_busy(conn: socket.socket, limit: int) -> None:
    """Answer a connection over the limit with a retryable ERROR, then close it."""
    try:
        conn.settimeout(1.0)
    except OSError:
        pass
    _tell_to_retry(conn, f"the gateway serves {limit} connections at once; try again shortly", socket.SHUT_WR)
    conn.close()


def _tell_to_retry(conn: socket.socket, reason: str, how: int) -> None:
    """Best effort: a retryable ERROR frame (a fresh connection's buffer has room for it), then
    ``shutdown(how)``; the peer may be gone already."""
    try:
        conn.sendall(frame(ERROR, error_body(RETRY_SEQ, reason)))
    except OSError:
        pass
    try:
        conn.shutdown(how)
    except OSError:
        pass


def _peer(conn: socket.socket) -> str:
    try:
        return str(conn.getpeername()[0])
    except OSError:
        return "?"


def _evict(conn: socket.socket, limit: int) -> None:
    """Tell a connection that never said HELLO to retry, and end it: its own thread, blocked
    reading, sees the end of the stream and exits. The socket stays that thread's to close."""
    reason = f"the gateway serves {limit} connections at once and this one sent no HELLO; try again"
    _tell_to_retry(conn, reason, socket.SHUT_RDWR)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # a burst of connections is accepted (and, over the cap, told to retry)
    block_on_close = False


def serve(
    receiver: Receiver,
    host: str,
    port: int,
    *,
    once: bool = False,
    timeout: float = 60.0,
    max_idle: float | None = None,
    max_connections: int = MAX_CONNECTIONS,
    on_listening: Callable[[tuple], None] = lambda address: None,
    stop: threading.Event | None = None,
) -> bool:
    """Accept cameras until stopped; with ``once``, until one session is complete.

    ``timeout``: a connection silent this long is closed (a new one has at most
    ``HELLO_TIMEOUT`` seconds for its HELLO). ``max_connections``: connections served at once,
    so idle or hostile peers cost bounded threads and memory. One more closes the oldest
    connection that has not yet sent its HELLO (told to retry, with a retryable ERROR) and takes
    its place; only when every connection has said HELLO is the new one told to retry instead.
    Why: a camera sends its HELLO at once, so silent connections, which cost an attacker nothing,
    must not hold the slots for ``HELLO_TIMEOUT`` each and lock every camera out (16 silent
    connections did, renewed every 10 s). ``max_idle``: stop when no connection has been open for this
    long (None: never). ``stop``: set by a caller that runs the gateway in a thread (an application,
    the tests) to end it within one poll (0.2 s) instead of waiting for ``max_idle``. Returns
    whether a session completed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    activity = {"last": time.monotonic(), "open": 0}
    waiting: dict[socket.socket, None] = {}  # connections yet to send their HELLO, oldest first
    lock = threading.Lock()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            def said_hello() -> None:
                with lock:
                    waiting.pop(self.request, None)

            try:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                receiver.handle(self.request, self.client_address, timeout, on_hello=said_hello)
            finally:
                with lock:
                    waiting.pop(self.request, None)
                    activity["open"] -= 1
                    activity["last"] = time.monotonic()

    class Server(_Server):
        address_family = family

        def process_request(self, request, client_address):
            victim = None
            with lock:
                full = activity["open"] >= max_connections
                # An evicted connection's thread ends within moments; until then it still counts,
                # so the threads stay under twice the cap however fast connections come.
                if full and waiting and activity["open"] < 2 * max_connections:
                    victim = next(iter(waiting))
                    del waiting[victim]
                if not full or victim is not None:
                    activity["open"] += 1
                    waiting[request] = None
            if victim is not None:
                receiver.log(
                    {
                        "event": "evicted",
                        "peer": _peer(victim),
                        "reason": "no HELLO yet; slot given to a new connection",
                    }
                )
                _evict(victim, max_connections)
            elif full:
                receiver.log({"event": "busy", "peer": str(client_address[0]), "open": max_connections})
                refuse_busy(request, max_connections)
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                with lock:
                    waiting.pop(request, None)
                    activity["open"] -= 1
                raise

    try:
        server = Server((host, port), Handler)
    except OSError as e:  # port in use, no permission for a low port, an address not on this host
        raise TransportError(
            f"cannot listen on {host}:{port}: {e.strerror or e} (another gateway there? choose --listen HOST:PORT)"
        ) from e
    with server:
        server.timeout = 0.2
        on_listening(server.server_address)
        while not (once and receiver.completed.is_set()) and not (stop is not None and stop.is_set()):
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
