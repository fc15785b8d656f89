"""Transport peers that misbehave (issue 11): without the key, with a forged or replayed frame, an
empty session, a squatted session name, too many or silent connections, a second receiver on
one folder. Each is refused with an ERROR frame the camera can print, and nothing is written.

Frame and tag arithmetic is checked without a model; the gateway tests run the session's real
model on loopback (slow).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from compressor.errors import AuthenticationError, FolderInUseError, TransportError
from compressor.transport import auth
from compressor.transport.folder_lock import FolderLock
from compressor.transport.protocol import (
    DATA,
    ERROR,
    HELLO,
    RETRY_SEQ,
    U32,
    WELCOME,
    FrameReader,
    Hello,
    frame,
    read_frame,
    session_digest,
    unpack_error,
    with_name,
)
from compressor.transport.receiver import Receiver, image_decoder, serve
from compressor.transport.sender import Sender
from tests.support import ROOT, run_cli, snapshot

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
FAST = {"ack_timeout": 2.0, "connect_timeout": 2.0, "backoff": 0.05, "retries": 1}


# --- without a model ---------------------------------------------------------------------------
def _pair():
    cn, gn = auth.new_nonce(), auth.new_nonce()
    return auth.Channel(KEY, cn, gn, auth.TO_GATEWAY), auth.Channel(KEY, cn, gn, auth.TO_CAMERA)


def test_tagged_frames_open_in_order_on_the_other_side():
    camera, gateway = _pair()
    for i in range(3):
        assert gateway.open(DATA, camera.seal(DATA, b"image %d" % i)) == b"image %d" % i
    assert camera.open(WELCOME, gateway.seal(WELCOME, b"ack")) == b"ack"


@pytest.mark.parametrize("attack", ["tamper", "replay", "reorder", "drop", "reflect", "other connection"])
def test_a_forged_replayed_reordered_or_reflected_frame_fails_authentication(attack):
    camera, gateway = _pair()
    first, second = camera.seal(DATA, b"one"), camera.seal(DATA, b"two")
    if attack == "tamper":
        frames = [first[:-20] + b"X" + first[-19:]]
    elif attack == "replay":
        gateway.open(DATA, first)
        frames = [first]
    elif attack in ("reorder", "drop"):
        frames = [second]
    elif attack == "reflect":  # a frame the gateway sent, fed back to it
        frames = [gateway.seal(DATA, b"one")]
    else:
        frames = [_pair()[0].seal(DATA, b"one")]
    with pytest.raises(AuthenticationError):
        for f in frames:
            gateway.open(DATA, f)


def test_a_recorded_nonce_is_not_fresh_twice_and_the_memory_is_bounded():
    cache = auth.NonceCache(size=3)
    nonces = [auth.new_nonce() for _ in range(5)]
    assert all(cache.fresh(n) for n in nonces)
    assert not cache.fresh(nonces[-1])
    assert cache.fresh(nonces[0])  # forgotten: the cache holds only the last 3


def test_a_short_or_special_key_file_is_refused(tmp_path):
    (tmp_path / "short").write_bytes(b"secret\n")
    with pytest.raises(TransportError, match="holds 6 bytes; use at least 16"):
        auth.read_key(tmp_path / "short")
    with pytest.raises(TransportError, match="regular file"):
        auth.read_key("/dev/zero")
    (tmp_path / "ok").write_bytes(KEY + b"\n")
    assert auth.read_key(tmp_path / "ok") == KEY


def test_a_second_lock_on_one_folder_is_refused_naming_the_holder(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(FolderInUseError, match=rf"in use by another gateway \(pid {os.getpid()}\)"):
            FolderLock(tmp_path).acquire()
        code = f"from compressor.transport.folder_lock import FolderLock\nFolderLock({str(tmp_path)!r}).acquire()"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert "FolderInUseError" in done.stderr
    FolderLock(tmp_path).acquire()  # released: free again


@pytest.mark.parametrize("kind", ["link", "fifo", "folder"])
def test_a_lock_file_that_is_a_link_pipe_or_folder_is_refused_and_a_links_target_left_alone(tmp_path, kind):
    from compressor.errors import OutputError

    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "out").mkdir()
    lock = tmp_path / "out" / ".lock"
    {"link": lambda: lock.symlink_to(victim), "fifo": lambda: os.mkfifo(lock), "folder": lock.mkdir}[kind]()
    with pytest.raises(OutputError, match="not a regular file .* remove it"):
        FolderLock(tmp_path / "out").acquire()
    assert victim.read_text() == "precious"


class _StandIn:
    """A Receiver on one end of a socket pair, decoding with a stand-in: frames without a model."""

    MODEL = bytes(range(8))

    def __init__(self, out):
        import numpy as np

        self.events = []
        self.receiver = Receiver(out, self.MODEL, lambda m: np.zeros((4, 4), np.uint8), self.events.append)
        self.camera, gateway_end = socket.socketpair()
        self.thread = threading.Thread(target=self.receiver.handle, args=(gateway_end, ("peer", 0), 5.0), daemon=True)
        self.thread.start()

    def exchange(self, *frames) -> list[tuple[int, bytes]]:
        """Send ``frames``; the frames answered until the gateway's ERROR (or its close)."""
        for f in frames:
            self.camera.sendall(f)
        got, reader = [], FrameReader()
        while not got or got[-1][0] != ERROR:
            got.append(read_frame(self.camera, reader, 5.0))
        self.thread.join(5)
        return got


def _stand_in_hello(session: str, count: int = 2) -> bytes:
    return frame(HELLO, Hello(_StandIn.MODEL, bytes(16), count, session).pack())


def test_a_data_frame_too_short_to_hold_a_number_and_a_name_is_refused_saying_so(tmp_path):
    got = _StandIn(tmp_path).exchange(_stand_in_hello("s"), frame(DATA, b"\0\0"))
    assert got[0][0] == WELCOME
    reason = unpack_error(got[-1][1])[1]
    assert "DATA frame of 2 bytes, too short" in reason and "expected DATA, got DATA" not in reason


@pytest.mark.parametrize(
    "damage", [{"session": None}, {"next_seq": True}, {"count": 2.0}, {"digest": 5}], ids=lambda d: next(iter(d))
)
def test_a_session_record_with_a_missing_or_mistyped_field_is_refused_with_the_fix(tmp_path, damage):
    import json

    (tmp_path / "s").mkdir()
    record = {"session": "s", "next_seq": 0, "count": 2, "digest": bytes(16).hex(), **damage}
    (tmp_path / "s" / "session.json").write_text(json.dumps({k: v for k, v in record.items() if v is not None}))
    got = _StandIn(tmp_path).exchange(_stand_in_hello("s"))  # refused at once, before any image
    assert [kind for kind, _ in got] == [ERROR]
    assert "session.json is damaged; move it away" in unpack_error(got[0][1])[1]


# --- gateway with the real model ----------------------------------------------------------------
@pytest.fixture(scope="module")
def codes(bundle_dir):
    from compressor import Decoder, Encoder
    from export import datasets

    images = datasets.load("mnist5k").test[:6, ..., 0]
    enc = Encoder.load(bundle_dir / "encoder", runtime="litert")
    return {
        "messages": enc.compress(images),
        "names": [f"digit{i}" for i in range(6)],
        "model_id": enc.coding.model_id,
        "decoder": Decoder.load(bundle_dir / "decoder", runtime="litert"),
    }


class Gateway:
    """``serve`` on 127.0.0.1 from a thread, recording events."""

    def __init__(self, out, codes, *, key=None, timeout=10.0, once=True, **kw):
        self.events, self.ready, self.out, self.stopped = [], threading.Event(), out, threading.Event()
        self.receiver = Receiver(out, codes["model_id"], image_decoder(codes["decoder"]), self.events.append, key=key)
        args = {"once": once, "timeout": timeout, "max_idle": 20, "on_listening": self._listening, **kw}
        args["stop"] = self.stopped  # a once=False gateway would otherwise serve on until 20 s idle
        self.thread = threading.Thread(target=serve, args=(self.receiver, "127.0.0.1", 0), kwargs=args, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _listening(self, address):
        self.address = address
        self.ready.set()

    def stop(self):
        self.stopped.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the gateway did not stop"

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.events if e["event"] in ("refused", "disconnected")]


@pytest.fixture
def gateway(tmp_path, codes, request):
    made = []

    def start(**kw):
        made.append(Gateway(tmp_path / "gw", codes, **kw))
        return made[-1]

    yield start
    for g in made:
        g.stop()


def _send(gw, codes, **kw):
    return Sender(gw.address, codes["messages"], codes["names"], model_id=codes["model_id"], **{**FAST, **kw}).run()


def _hello_body(codes, session="s", count=None, key=None, nonce=None):
    count = len(codes["messages"]) if count is None else count
    digest = session_digest(codes["model_id"], codes["names"], codes["messages"])
    body = Hello(codes["model_id"], digest, count, session).pack()
    if key is not None:
        body += nonce or auth.new_nonce()
        body += auth.hello_tag(key, HELLO, body)
    return body


def _exchange(address, *frames, timeout=5.0):
    """Send raw frames on a new connection; the first frame the gateway answers with."""
    with socket.create_connection(address, timeout=timeout) as s:
        for f in frames:
            s.sendall(f)
        return read_frame(s, FrameReader(), timeout)


@pytest.mark.slow
def test_a_camera_holding_the_key_delivers_every_image(gateway, codes):
    gw = gateway(key=KEY)
    result = _send(gw, codes, key=KEY)
    assert result.complete, result.error
    assert sorted(p.name for p in (gw.out / result.session).glob("*.png")) == [f"digit{i}.png" for i in range(6)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "camera_key, gateway_key, message",
    [
        (None, KEY, "HELLO failed authentication"),
        (OTHER_KEY, KEY, "HELLO failed authentication"),
        (KEY, None, "if the camera uses --key-file, start the gateway with the same --key-file"),
    ],
    ids=["no key", "other key", "gateway without key"],
)
def test_a_camera_without_the_gateways_key_is_refused_and_nothing_is_written(
    gateway, codes, camera_key, gateway_key, message
):
    gw = gateway(key=gateway_key)
    logged = []
    result = _send(gw, codes, key=camera_key, log=logged.append)
    assert not result.complete and message in result.error
    assert any(message in line for line in logged)  # the camera prints the gateway's reason
    assert snapshot(gw.out) == {}


@pytest.mark.slow
def test_a_recorded_hello_cannot_be_replayed(gateway, codes):
    gw = gateway(key=KEY, once=False)
    hello = frame(HELLO, _hello_body(codes, key=KEY))
    assert _exchange(gw.address, hello)[0] == WELCOME
    kind, body = _exchange(gw.address, hello)
    assert kind == ERROR and "replayed" in unpack_error(body)[1]


@pytest.mark.slow
def test_a_forged_data_frame_on_a_keyed_connection_is_refused_and_not_written(gateway, codes):
    gw = gateway(key=KEY, once=False)
    with socket.create_connection(gw.address, timeout=5) as s:
        reader = FrameReader()
        s.sendall(frame(HELLO, _hello_body(codes, key=KEY)))
        assert read_frame(s, reader, 5)[0] == WELCOME
        body = U32.pack(0) + with_name(b"digit0") + codes["messages"][0]
        s.sendall(frame(DATA, body + bytes(auth.TAG_SIZE)))  # a tag the attacker had to guess
        kind, error = read_frame(s, reader, 5)
    assert kind == ERROR and "failed authentication" in error.decode("utf-8", "replace")
    assert not list(gw.out.rglob("*.png"))


@pytest.mark.slow
def test_a_hello_announcing_no_images_is_refused_and_does_not_end_a_once_gateway(gateway, codes):
    gw = gateway(once=True)
    kind, body = _exchange(gw.address, frame(HELLO, _hello_body(codes, count=0)))
    assert kind == ERROR and "0 images" in unpack_error(body)[1]
    time.sleep(0.5)
    assert gw.thread.is_alive() and not gw.receiver.completed.is_set()
    assert _send(gw, codes).complete  # the real camera still gets through


@pytest.mark.slow
def test_a_session_name_announced_then_abandoned_is_free_for_the_real_camera(gateway, codes):
    gw = gateway(once=True)
    squatter = Hello(codes["model_id"], bytes(16), 99, "cam1").pack()
    with socket.create_connection(gw.address, timeout=5) as s:
        s.sendall(frame(HELLO, squatter))
        assert read_frame(s, FrameReader(), 5)[0] == WELCOME
    time.sleep(0.3)  # the squatter has left without writing anything
    result = _send(gw, codes, session="cam1")
    assert result.complete, result.error


@pytest.mark.slow
def test_a_session_with_images_on_disk_is_not_taken_over_by_another_digest(gateway, codes):
    gw = gateway(once=False)
    assert _send(gw, codes, session="cam1").complete
    other = Hello(codes["model_id"], bytes(16), len(codes["messages"]), "cam1").pack()
    kind, body = _exchange(gw.address, frame(HELLO, other))
    assert kind == ERROR and "holds other images" in unpack_error(body)[1]


@pytest.mark.slow
def test_a_dot_session_name_is_refused(gateway, codes):
    gw = gateway(once=False)
    kind, body = _exchange(gw.address, frame(HELLO, _hello_body(codes, session=".lock")))
    assert kind == ERROR and "starts with '.'" in unpack_error(body)[1]


@pytest.mark.slow
def test_silent_connections_cannot_lock_a_camera_out_the_oldest_is_told_to_retry(gateway, codes):
    gw = gateway(once=False, max_connections=4)
    silent = [socket.create_connection(gw.address, timeout=5) for _ in range(4)]
    try:
        time.sleep(0.3)
        assert _send(gw, codes).complete  # its connection takes the oldest silent one's slot
        kind, body = read_frame(silent[0], FrameReader(), 5)
        assert kind == ERROR and U32.unpack_from(body)[0] == RETRY_SEQ and "sent no HELLO" in unpack_error(body)[1]
    finally:
        for s in silent:
            s.close()


@pytest.mark.slow
def test_connections_over_the_cap_are_told_to_retry_when_every_slot_has_said_hello_and_cost_no_thread(gateway, codes):
    gw = gateway(once=False, max_connections=4)
    base = threading.active_count()
    idle = [socket.create_connection(gw.address, timeout=5) for _ in range(4)]
    for i, s in enumerate(idle):  # each holds a session of its own, silent after its WELCOME
        s.sendall(frame(HELLO, _hello_body(codes, session=f"idle{i}")))
        assert read_frame(s, FrameReader(), 5)[0] == WELCOME
    extra = [socket.create_connection(gw.address, timeout=5) for _ in range(20)]
    try:
        for s in extra:
            kind, body = read_frame(s, FrameReader(), 5)
            assert kind == ERROR and U32.unpack_from(body)[0] == RETRY_SEQ
        assert threading.active_count() <= base + 4
    finally:
        for s in idle + extra:
            s.close()
    time.sleep(0.3)
    assert _send(gw, codes).complete


@pytest.mark.slow
def test_a_connection_that_never_says_hello_gets_an_error_and_is_closed(gateway, codes):
    gw = gateway(once=False, timeout=0.5)
    with socket.create_connection(gw.address, timeout=5) as s:
        kind, body = read_frame(s, FrameReader(), 5)
        assert kind == ERROR and "nothing from the peer" in unpack_error(body)[1]


@pytest.mark.slow
def test_an_image_the_gateway_cannot_write_is_refused_with_the_reason(gateway, codes):
    gw = gateway(once=False)
    session = "cam2"
    (gw.out / session / "digit2.png").mkdir(parents=True)  # something that is not our PNG is in the way
    logged = []
    result = _send(gw, codes, session=session, log=logged.append)
    assert result.acknowledged == 2 and "image 2" in result.error
    assert any("gateway refused" in line for line in logged)


@pytest.mark.slow
def test_a_second_receiver_on_one_folder_or_port_is_refused_in_one_line(bundle_dir, tmp_path):
    out = tmp_path / "gw"
    first = subprocess.Popen(
        [sys.executable, "-m", "compressor.cli", "receive", "-o", str(out), "--bundle", str(bundle_dir)]
        + ["--listen", "127.0.0.1:0", "--max-idle", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        import json

        port = json.loads(first.stdout.readline())["port"]
        run = run_cli("receive", "-o", out, "--bundle", bundle_dir, "--listen", "127.0.0.1:0", tmp_path=tmp_path)
        assert run.code == 1 and f"{out} is in use by another gateway (pid {first.pid})" in run.err
        run = run_cli(
            "receive", "-o", tmp_path / "b", "--bundle", bundle_dir, "--listen", f"127.0.0.1:{port}", tmp_path=tmp_path
        )
        assert run.code == 1 and f"cannot listen on 127.0.0.1:{port}" in run.err
        assert len(run.error_lines) == 1
    finally:
        first.terminate()
        first.wait(timeout=10)


@pytest.mark.slow
def test_three_hundred_idle_connections_stay_bounded(gateway, codes):
    gw = gateway(once=False)
    base = threading.active_count()
    socks = []
    try:
        for _ in range(300):
            try:
                socks.append(socket.create_connection(gw.address, timeout=5))
            except ConnectionResetError:  # turned away before the handshake finished
                pass
        time.sleep(1.0)
        assert threading.active_count() <= base + 16
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    assert _send(gw, codes).complete
