"""Camera -> gateway streaming on loopback: every image arrives once, in order; cuts resume or are reported.

Sender and Receiver run in this process with the session's real model; a small relay on
127.0.0.1 between them cuts the connection mid-frame, or refuses to reconnect, on cue.
The same protocol between two network namespaces, through the command line, is
tests/test_transport_two_hosts.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

from compressor import Decoder, Encoder
from compressor.cli import main
from compressor.errors import TransportError
from compressor.io.arrays import to_uint8 as to_uint8_levels
from compressor.io.files import read_image, write_png
from compressor.transport.protocol import ACK, DATA, STATE_FILE, FrameReader, Hello, frame, session_digest
from compressor.transport.receiver import Receiver, image_decoder, serve
from compressor.transport.sender import Sender
from tests.support import ROOT, mnist5k_test, to_uint8

N = 40
# Timeouts only bound a broken test: cuts here are RSTs or refusals the sender sees at once, so no
# outcome depends on a clock, and a slow (loaded, single-core) machine cannot add a reconnect.
PATIENT = {"ack_timeout": 120.0, "connect_timeout": 60.0, "backoff": 0.05}
WAIT = 300


@pytest.fixture(scope="module")
def codes(bundle_dir):
    images = mnist5k_test(N)
    enc = Encoder.load(bundle_dir / "encoder", runtime="litert", precision="int8")
    messages = enc.compress(images)
    dec = Decoder.load(bundle_dir / "decoder", runtime="litert", precision="int8")
    binary = to_uint8(images)
    assert enc.coding.lossless is not None  # the session model is trained on binarized digits
    return {
        "binary": binary,
        "lossless": enc.compress(binary, mode="lossless"),
        "messages": messages,
        "names": [f"digit{i:02d}" for i in range(N)],
        "model_id": enc.coding.model_id,
        "local": dec.decompress(messages, binarize=True),  # what a local decode of the same codes gives
        "decoder": dec,
    }


class Gateway:
    """A Receiver served on 127.0.0.1 from a thread, recording its events."""

    def __init__(self, out, codes):
        self.events, self.ready = [], threading.Event()
        self.receiver = Receiver(out, codes["model_id"], image_decoder(codes["decoder"]), self.events.append)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(WAIT)

    def _serve(self):
        serve(self.receiver, "127.0.0.1", 0, once=True, timeout=WAIT, max_idle=WAIT, on_listening=self._listening)

    def _listening(self, address):
        self.address = address
        self.ready.set()

    def written(self) -> list[int]:
        return [e["seq"] for e in self.events if e["event"] == "written"]

    def sessions(self) -> list[dict]:
        return [e for e in self.events if e["event"] == "session"]

    def finish(self):
        """Wait for the session to complete (``--once``: the server returns) -- an event, not a clock."""
        self.thread.join(timeout=WAIT)
        assert not self.thread.is_alive(), f"the gateway never completed: {self.events[-5:]}"

    def stop(self):
        self.receiver.completed.set()
        self.finish()


class Relay:
    """Forwards 127.0.0.1 connections to the gateway. Cuts the first after ``cut_after`` bytes from the
    camera (RST both ways, mid-frame); with ``then_refuse`` it stops listening at that moment."""

    def __init__(self, target, cut_after: int | None = None, then_refuse: bool = False):
        self.target, self.cut_after, self.then_refuse = target, cut_after, then_refuse
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.address = self.listener.getsockname()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                camera, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            gateway = socket.create_connection(self.target, timeout=5)
            limit = None if self.cut.is_set() else self.cut_after
            for args in ((camera, gateway, limit), (gateway, camera, None)):
                t = threading.Thread(target=self._pump, args=args, daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src, dst, limit):
        moved = 0
        with contextlib.suppress(OSError):
            while not self.stopped.is_set():
                src.settimeout(0.2)
                try:
                    data = src.recv(4096 if limit is None else max(1, min(4096, limit - moved)))
                except TimeoutError:
                    continue
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
                moved += len(data)
                if limit is not None and moved >= limit:
                    self.cut.set()
                    if self.then_refuse:  # shutdown first: close alone waits for accept()'s poll to return
                        with contextlib.suppress(OSError):
                            self.listener.shutdown(socket.SHUT_RDWR)
                        self.listener.close()
                    for s in (src, dst):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        s.close()
                    return

    def close(self):
        self.stopped.set()
        self.listener.close()
        for t in self.threads:
            t.join(timeout=5)


def _sender(address, codes, **kw) -> Sender:
    return Sender(address, codes["messages"], codes["names"], model_id=codes["model_id"], **{**PATIENT, **kw})


def _check_folder(folder, codes):
    """All N PNGs, each identical to the local decode; session.json says complete."""
    for i, name in enumerate(codes["names"]):
        np.testing.assert_array_equal(read_image(folder / f"{name}.png"), codes["local"][i], err_msg=name)
    assert len(list(folder.glob("*.png"))) == N
    assert json.loads((folder / STATE_FILE).read_text())["next_seq"] == N


def test_frames_carry_a_check_and_refuse_damage():
    reader = FrameReader()
    good = frame(ACK, struct.pack(">I", 7))
    reader.feed(good[:3])
    assert reader.next() is None
    reader.feed(good[3:])
    assert reader.next() == (ACK, struct.pack(">I", 7))
    bad = bytearray(frame(DATA, b"\x00\x00\x00\x01\x01a" + b"xy"))
    bad[-6] ^= 1
    reader.feed(bytes(bad))
    with pytest.raises(TransportError, match="check failed"):
        reader.next()
    reader = FrameReader()
    reader.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(TransportError, match="wrong port"):
        reader.next()


def test_hello_round_trips_and_the_digest_covers_names_and_bytes():
    mid = bytes(range(8))
    digest = session_digest(mid, ["a", "b"], [b"\x41\x00", b"\x41\x01"])
    hello = Hello(mid, digest, 2, "cam-1")
    assert Hello.unpack(hello.pack()) == hello
    assert session_digest(mid, ["a", "c"], [b"\x41\x00", b"\x41\x01"]) != digest
    assert session_digest(mid, ["a", "b"], [b"\x41\x00", b"\x41\x02"]) != digest


def test_all_images_arrive_once_in_order_identical_to_a_local_decode(codes, tmp_path):
    gateway = Gateway(tmp_path, codes)
    result = _sender(gateway.address, codes, window=4).run()
    gateway.finish()
    assert result.complete and result.connections == 1 and result.error is None
    assert gateway.written() == list(range(N))
    _check_folder(tmp_path / result.session, codes)


def test_lossless_codes_arrive_as_the_exact_pixels(codes, tmp_path):
    gateway = Gateway(tmp_path, codes)
    result = _sender(gateway.address, {**codes, "messages": codes["lossless"]}).run()
    gateway.finish()
    assert result.complete
    _check_folder(tmp_path / result.session, {**codes, "local": codes["binary"]})


def test_a_cut_mid_frame_resumes_without_loss_or_rewrite(codes, tmp_path):
    """The relay cuts after the HELLO, ~12 frames and half of one: with a window of 4 the gateway has
    acknowledged at least 8 images by then, so the cut is mid-stream and the resume point past 0."""
    gateway = Gateway(tmp_path, codes)
    per_frame = len(frame(DATA, b"\0" * 4 + bytes((7,)) + b"digit00" + codes["messages"][0]))
    relay = Relay(gateway.address, cut_after=150 + 12 * per_frame + per_frame // 2)
    try:
        result = _sender(relay.address, codes, window=4).run()
    finally:
        relay.close()
    gateway.finish()
    assert relay.cut.is_set()
    assert result.complete and result.connections >= 2
    assert len(gateway.sessions()) == result.connections  # each connection reached the gateway once
    assert gateway.written() == list(range(N))  # each image written once, in order
    assert gateway.sessions()[0]["resume"] == 0 and gateway.sessions()[1]["resume"] >= 8
    _check_folder(tmp_path / result.session, codes)


def test_when_the_gateway_stays_away_the_sender_names_exactly_the_unacknowledged_images(codes, tmp_path):
    gateway = Gateway(tmp_path, codes)
    per_frame = len(frame(DATA, b"\0" * 4 + bytes((7,)) + b"digit00" + codes["messages"][0]))
    relay = Relay(gateway.address, cut_after=150 + 15 * per_frame + 3, then_refuse=True)
    try:
        failed = _sender(relay.address, codes, window=4, retries=2).run()
    finally:
        relay.close()
    gateway.stop()
    assert not failed.complete and "refused" in failed.error
    k = failed.acknowledged
    assert 0 < k < N and failed.unacknowledged == list(range(k, N))
    assert failed.summary()["unacknowledged"] == [[k, N - 1]]
    written = gateway.written()
    assert written == list(range(len(written))) and len(written) >= k  # all acknowledged ones are on disk

    restarted = Gateway(tmp_path, codes)  # a new gateway process: progress comes from session.json
    result = _sender(restarted.address, codes).run()
    restarted.finish()
    assert result.complete
    assert written + restarted.written() == list(range(N))  # nothing lost, nothing written twice
    _check_folder(tmp_path / result.session, codes)


def test_codes_of_another_model_are_refused_at_once(codes, tmp_path):
    gateway = Gateway(tmp_path, codes)
    wrong = {**codes, "model_id": bytes(8)}
    result = _sender(gateway.address, wrong, retries=5).run()
    gateway.stop()
    assert not result.complete and result.connections == 1  # a refusal is not retried
    assert "model" in result.error and result.unacknowledged == list(range(N))
    assert not list(tmp_path.rglob("*.png"))


def test_a_session_name_cannot_be_reused_for_other_images(codes, tmp_path):
    gateway = Gateway(tmp_path, codes)
    assert _sender(gateway.address, codes, session="batch").run().complete
    gateway.finish()
    gateway = Gateway(tmp_path, codes)
    other = {**codes, "messages": codes["messages"][::-1]}
    result = _sender(gateway.address, other, session="batch").run()
    gateway.stop()
    assert not result.complete and "holds other images" in result.error
    _check_folder(tmp_path / "batch", codes)  # untouched


def test_duplicate_or_unsafe_names_are_refused_before_connecting(codes):
    with pytest.raises(ValueError, match="unique"):
        Sender(("127.0.0.1", 9), [b"ab", b"ab"], ["x", "X"], model_id=codes["model_id"])
    with pytest.raises(ValueError, match="name"):
        Sender(("127.0.0.1", 9), [b"ab"], ["../x"], model_id=codes["model_id"])


# --- the command line: send's rate options, receive --probabilities ---------------------------------
class ReceiveCommand:
    """``compressor receive`` in its own process on 127.0.0.1; the OS picks the port, read from its
    ``listening`` event (no port is guessed, nothing waits on a clock)."""

    def __init__(self, out, bundle_dir, *flags: str):
        cmd = [sys.executable, "-m", "compressor.cli", "receive", "-o", str(out), "--listen", "127.0.0.1:0"]
        cmd += ["--bundle", str(bundle_dir / "decoder"), "--runtime", "litert", "--once", "--max-idle", "300", *flags]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = json.loads(self.proc.stdout.readline() or "{}")
        assert first.get("event") == "listening", self.proc.stderr.read()
        self.address = f"127.0.0.1:{first['port']}"

    def finish(self) -> list[dict]:
        out, err = self.proc.communicate(timeout=WAIT)
        assert self.proc.returncode == 0, err
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def camera_folder(codes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("camera")
    for name, img in zip(codes["names"][:12], codes["binary"][:12]):
        write_png(folder / f"{name}.png", img)
    return folder


@pytest.mark.parametrize(
    "flags",
    [["--quality", "2"], ["--step", "STEP8"], ["--target-bytes", "9"], ["--lossless"], ["--mode", "raw"]],
    ids=["quality", "step", "target-bytes", "lossless", "raw"],
)
def test_send_codes_each_image_at_the_rate_its_options_ask(bundle_dir, codes, camera_folder, tmp_path, flags, capsys):
    enc = Encoder.load(bundle_dir / "encoder", runtime="litert")
    flags = [str(enc.steps[8]) if f == "STEP8" else f for f in flags]
    option = {"--quality": "quality", "--step": "step", "--target-bytes": "target_bytes", "--mode": "mode"}
    kwargs = {"mode": "lossless"} if flags == ["--lossless"] else {option[flags[0]]: type_of(flags)(flags[1])}
    images = codes["binary"][:12]
    expected = enc.compress(images, **kwargs)
    gateway = ReceiveCommand(tmp_path, bundle_dir)
    argv = ["send", str(camera_folder), "--to", gateway.address, "--bundle", str(bundle_dir / "encoder"), *flags]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    events = gateway.finish()
    assert summary["acknowledged"] == 12 and summary["bytes"] == sum(map(len, expected))
    assert [e["seq"] for e in events if e["event"] == "written"] == list(range(12))
    local = images if kwargs.get("mode") == "lossless" else codes["decoder"].decompress(expected, binarize=True)
    for name, img in zip(codes["names"], local):
        np.testing.assert_array_equal(read_image(tmp_path / summary["session"] / f"{name}.png"), img, err_msg=name)


def type_of(flags: list[str]):
    return {"--quality": int, "--step": float, "--target-bytes": float, "--mode": str}[flags[0]]


def test_receive_probabilities_writes_grey_levels(bundle_dir, codes, camera_folder, tmp_path, capsys):
    gateway = ReceiveCommand(tmp_path, bundle_dir, "--probabilities")
    assert main(["send", str(camera_folder), "--to", gateway.address, "--bundle", str(bundle_dir / "encoder")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    gateway.finish()
    probs = codes["decoder"].decompress(codes["messages"][:12])
    for name, p in zip(codes["names"], probs):
        grey = read_image(tmp_path / summary["session"] / f"{name}.png")
        np.testing.assert_array_equal(grey, to_uint8_levels(p), err_msg=name)
    assert len(np.unique(grey)) > 2
