"""Camera -> Mosquitto -> gateway with the session's real model: every image once on disk, under faults.

A real Mosquitto (Debian package) runs on a free 127.0.0.1 port with persistence in a tmp
folder (bench/mosquitto.py). Cameras and gateway are the real publisher and subscriber, in
this process or as ``compressor publish`` / ``compressor subscribe`` processes. Waits are on
events with generous deadlines: the machine is small and shared, and nothing here is a timing
claim (bench/mqtt_throughput.py measures speed).

Without mosquitto the tests skip, saying how to install it, unless
COMPRESSOR_REQUIRE_SYSTEM_TESTS=1 (set by .ci/run) turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.mosquitto import Mosquitto, MosquittoUnavailable
from bench.processes import interruptible
from compressor import Decoder, Encoder, wire
from compressor.io.files import read_image
from compressor.mqtt import uplinks
from compressor.mqtt.client import Broker, make_client
from compressor.mqtt.payload import pack_payload
from compressor.mqtt.publisher import Publisher, encode_payloads
from compressor.mqtt.subscriber import Gateway, run
from compressor.transport.receiver import image_decoder

pytestmark = pytest.mark.slow
DEADLINE = 240.0  # seconds for a whole exchange; typical runs take a few
CLI = "from compressor.cli import main; raise SystemExit(main())"


def _skip_or_fail(why: str):
    if os.environ.get("COMPRESSOR_REQUIRE_SYSTEM_TESTS") == "1":
        pytest.fail(f"required on this machine (COMPRESSOR_REQUIRE_SYSTEM_TESTS=1): {why}")
    pytest.skip(f"MQTT broker tests unavailable: {why}")


@pytest.fixture
def broker(tmp_path):
    try:
        import paho.mqtt  # noqa: F401
    except ImportError:
        _skip_or_fail("paho-mqtt is not installed: pip install -e '.[mqtt]'")
    try:
        mosquitto = Mosquitto(tmp_path / "broker").start()
    except MosquittoUnavailable as e:
        _skip_or_fail(str(e))
    yield mosquitto
    mosquitto.stop()


@pytest.fixture(scope="module")
def codec(bundle_dir):
    from export import datasets

    data = datasets.load("mnist5k")
    digits = (np.concatenate([data.test, data.train[:600]])[..., 0] * 255).astype(np.uint8)
    enc = Encoder.load(bundle_dir / "encoder", runtime="litert", precision="int8")
    dec = Decoder.load(bundle_dir / "decoder", runtime="litert", precision="int8")
    return {"digits": digits, "enc": enc, "dec": dec, "bundle": bundle_dir}


def _camera(codec, n: int, start: int = 0, seq0: int = 0, names: bool = True, device: str = "cam"):
    """Items for ``n`` digits named DEVICE-INDEX, and the pixels a local decode of them gives."""
    images = codec["digits"][start : start + n]
    items = encode_payloads(
        codec["enc"], images, [f"{device}-{start + i:04d}" for i in range(n)], range(seq0, seq0 + n), with_names=names
    )
    expected = codec["dec"].decompress([pack_message(it) for it in items], binarize=True)
    return items, {it.name: px for it, px in zip(items, expected)}


def pack_message(item) -> bytes:
    from compressor.mqtt.payload import unpack_payload

    return unpack_payload(item.payload).message


class GatewayThread:
    """``subscriber.run`` on a thread, recording its events."""

    def __init__(self, out, codec, broker, topics=("cams/+",), fmt="raw", client_id="gateway-under-test", **login):
        self.events, self.cond, self.stop = [], threading.Condition(), threading.Event()
        self.gateway = Gateway(out, image_decoder(codec["dec"]), fmt, log=self._log)
        args = (self.gateway, Broker.parse(broker.address, **login), list(topics), client_id)
        self.thread = threading.Thread(target=run, args=args, kwargs={"log": self._log, "stop": self.stop})
        self.thread.daemon = True
        self.thread.start()
        assert self.wait(lambda: self.kinds("subscribed") >= 1), "gateway did not subscribe"

    def _log(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def kinds(self, kind: str) -> int:
        return sum(e["event"] == kind for e in self.events)

    def seqs(self, *kinds: str) -> list:
        return [(e.get("device"), e["seq"]) for e in self.events if e["event"] in kinds]

    def wait(self, predicate, timeout: float = DEADLINE) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
            return True

    def close(self):
        self.stop.set()
        self.thread.join(30)


def _publish(broker, topic, items, client_id, interval=0.0, fmt="raw", device="cam"):
    with Publisher(Broker.parse(broker.address), topic, client_id) as pub:
        for it in items:
            pub.publish(it.sequence, uplinks.wrap(fmt, device, it.payload))
            if interval:
                time.sleep(interval)
        assert pub.wait(DEADLINE), f"unacknowledged: {pub.result.unacknowledged}"
    return pub.result


def _assert_on_disk_once(folder: Path, expected: dict):
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.suffix == ".png")
    assert files == sorted(f"{name}.png" for name in expected)
    for name, pixels in expected.items():
        assert np.array_equal(read_image(folder / f"{name}.png"), pixels), name


# --- the plain path ---------------------------------------------------------------------------
def test_published_images_arrive_once_each_in_the_device_folder(tmp_path, codec, broker):
    items, expected = _camera(codec, 40, device="cam1")
    gw = GatewayThread(tmp_path / "out", codec, broker)
    try:
        result = _publish(broker, "cams/cam1", items, "camera-1")
        assert gw.wait(lambda: gw.kinds("written") == 40)
    finally:
        gw.close()
    assert sorted(result.acknowledged) == list(range(40))
    _assert_on_disk_once(tmp_path / "out" / "cam1", expected)
    assert sorted(s for _, s in gw.seqs("written")) == list(range(40))


def test_messages_published_while_the_broker_is_down_are_delivered_when_it_is_back(tmp_path, codec, broker):
    items, expected = _camera(codec, 30, device="cam1")
    gw = GatewayThread(tmp_path / "out", codec, broker)  # its session (subscription) exists on the broker
    try:
        broker.stop()
        done = threading.Event()

        def camera():
            _publish(broker, "cams/cam1", items, "camera-1")
            done.set()

        threading.Thread(target=camera, daemon=True).start()
        time.sleep(2)  # the camera has queued everything and keeps retrying
        assert not done.is_set() and gw.kinds("written") == 0
        broker.start()
        assert gw.wait(lambda: gw.kinds("written") == 30), gw.events[-5:]
        assert done.wait(DEADLINE)
    finally:
        gw.close()
    _assert_on_disk_once(tmp_path / "out" / "cam1", expected)


# --- faults -----------------------------------------------------------------------------------
def test_broker_restarted_mid_stream_loses_and_duplicates_nothing(tmp_path, codec, broker):
    n = 150
    items, expected = _camera(codec, n, device="cam1")
    gw = GatewayThread(tmp_path / "out", codec, broker)
    try:
        camera = threading.Thread(target=_publish, args=(broker, "cams/cam1", items, "camera-1", 0.01), daemon=True)
        camera.start()
        assert gw.wait(lambda: gw.kinds("written") >= 30)
        broker.restart(pause=1.0)
        assert gw.wait(lambda: len(gw.seqs("written", "already-on-disk")) >= n), gw.events[-5:]
        camera.join(DEADLINE)
        assert not camera.is_alive()
    finally:
        gw.close()
    assert gw.kinds("disconnected") >= 1 and gw.kinds("connected") >= 2  # the restart did cut the stream
    written = gw.seqs("written", "already-on-disk")
    assert sorted(s for _, s in written) == list(range(n))  # each once: none lost, none twice
    _assert_on_disk_once(tmp_path / "out" / "cam1", expected)


def _gateway_process(out: Path, codec, broker, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-c", CLI, "subscribe", "--broker", broker.address, "--topic", "cams/+", "-o", str(out)]
    cmd += ["--bundle", str(codec["bundle"] / "decoder"), "--runtime", "litert", "--idle-timeout", str(DEADLINE)]
    # stopped with SIGINT below, which a suite started in the background would pass on as ignored
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, preexec_fn=interruptible)
    assert _wait_file(log, lambda events: any(e["event"] == "subscribed" for e in events), proc), log.read_text()
    return proc


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _wait_file(log: Path, predicate, proc=None, timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(_events(log)):
            return True
        if proc is not None and proc.poll() is not None:
            return predicate(_events(log))
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("names", [True, False], ids=["named", "short-form"])
def test_gateway_killed_and_restarted_writes_every_image_once(tmp_path, codec, broker, names):
    n, seq0 = 150, 0 if names else 5_000  # from 5,000: a camera that has run a while
    items, expected = _camera(codec, n, seq0=seq0, device="cam1", names=names)
    if not names:  # unnamed: files are named by sequence number, and most payloads are in the short form
        assert sum(it.short for it in items) > n * 0.9
        expected = {f"{it.sequence:08d}": expected[it.name] for it in items}
    out, log1, log2 = tmp_path / "out", tmp_path / "gw1.log", tmp_path / "gw2.log"
    first = _gateway_process(out, codec, broker, log1)
    camera = threading.Thread(target=_publish, args=(broker, "cams/cam1", items, "camera-1", 0.02), daemon=True)
    camera.start()
    assert _wait_file(log1, lambda ev: sum(e["event"] == "written" for e in ev) >= 30, first)
    first.send_signal(signal.SIGKILL)  # no goodbye: mid-decode, mid-write, or between PNG and progress file
    first.wait()
    second = _gateway_process(out, codec, broker, log2)  # same folder -> same client id -> same session
    try:
        done = _wait_file(
            log2,
            lambda ev: len({e["seq"] for e in _events(log1) + ev if e["event"] in ("written", "already-on-disk")}) >= n,
            second,
        )
        camera.join(DEADLINE)
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(30)
    events = _events(log1) + _events(log2)
    written = [e["seq"] for e in events if e["event"] == "written"]
    found = {e["seq"] for e in events if e["event"] == "already-on-disk"}  # written just before the kill
    assert len(written) == len(set(written)), "an image was written twice"
    others = [e for e in events if e["event"] != "written"]
    assert done and set(written) | found == set(range(seq0, seq0 + n)), others
    assert any(e["event"] == "written" for e in _events(log2))  # the kill did land mid-stream
    _assert_on_disk_once(out / "cam1", expected)


def test_the_same_message_delivered_twice_is_written_once(tmp_path, codec, broker):
    items, expected = _camera(codec, 2, device="cam1")
    gw = GatewayThread(tmp_path / "out", codec, broker)
    try:
        _publish(broker, "cams/cam1", [items[0], items[0], items[1]], "camera-1")
        assert gw.wait(lambda: len(gw.events) >= 2 + 3)
    finally:
        gw.close()
    assert gw.seqs("written") == [("cam1", 0), ("cam1", 1)] and gw.seqs("duplicate") == [("cam1", 0)]
    again = GatewayThread(tmp_path / "out", codec, broker)  # a restarted gateway remembers (progress file)
    try:
        _publish(broker, "cams/cam1", [items[1]], "camera-1")
        assert again.wait(lambda: again.kinds("duplicate") == 1)
    finally:
        again.close()
    assert again.kinds("written") == 0
    _assert_on_disk_once(tmp_path / "out" / "cam1", expected)


def _other_model_message(codec, message: bytes) -> bytes:
    """The same image bytes framed for another model id (one whose check byte differs)."""
    mid = codec["enc"].coding.model_id
    for k in range(1, 256):
        other = bytes([mid[0] ^ k]) + mid[1:]
        forged = wire.pack_message(other, "entropy", message[0] & 0xF, message[2:])
        if forged[1] != message[1]:
            return forged
    raise AssertionError("no other model id found")


def test_a_message_for_another_model_or_damaged_is_logged_skipped_and_the_rest_continue(tmp_path, codec, broker):
    items, expected = _camera(codec, 3, device="cam1")
    foreign = pack_payload(10, _other_model_message(codec, pack_message(items[0])), "foreign")
    damaged = b"\x80"  # a 2-byte sequence header cut after its first byte
    gw = GatewayThread(tmp_path / "out", codec, broker)
    try:
        with Publisher(Broker.parse(broker.address), "cams/cam1", "camera-1") as pub:
            for seq, payload in [(0, items[0].payload), (10, foreign), (11, damaged), (1, items[1].payload)]:
                pub.publish(seq, payload)
            pub.publish(2, items[2].payload)
            assert pub.wait(DEADLINE)
        # every message handled: paho may send one published around its connection ahead of the others
        assert gw.wait(lambda: gw.kinds("written") == 3 and gw.kinds("bad") == 2)
    finally:
        gw.close()
    bad = {e["seq"]: e for e in gw.events if e["event"] == "bad"}
    assert sorted(bad, key=str) == [10, None] and {e["device"] for e in bad.values()} == {"cam1"}
    assert "another model" in bad[10]["reason"] and "ends inside" in bad[None]["reason"]
    _assert_on_disk_once(tmp_path / "out" / "cam1", expected)


def test_a_thousand_images_from_three_cameras_at_once_all_arrive_in_each_device_folder(tmp_path, codec, broker):
    per = {"cam-a": (0, 334), "cam-b": (334, 333), "cam-c": (667, 333)}
    cams = {dev: _camera(codec, n, start=s, device=dev, names=False) for dev, (s, n) in per.items()}
    gw = GatewayThread(tmp_path / "out", codec, broker)
    try:
        threads = [
            threading.Thread(target=_publish, args=(broker, f"cams/{dev}", items, f"camera-{dev}"), daemon=True)
            for dev, (items, _) in cams.items()
        ]
        for t in threads:
            t.start()
        assert gw.wait(lambda: gw.kinds("written") >= 1000), gw.kinds("written")
        for t in threads:
            t.join(DEADLINE)
    finally:
        gw.close()
    assert len(set(gw.seqs("written"))) == 1000 and gw.kinds("bad") == 0
    for dev, (items, expected) in cams.items():
        by_seq = {f"{it.sequence:08d}": expected[it.name] for it in items}  # unnamed: files named by sequence
        _assert_on_disk_once(tmp_path / "out" / dev, by_seq)


def test_an_image_written_just_before_a_crash_is_found_on_disk_not_written_again(tmp_path, codec):
    items, expected = _camera(codec, 2, device="cam1")
    Gateway(tmp_path / "out", image_decoder(codec["dec"])).handle("cams/cam1", items[0].payload)
    (tmp_path / "out" / "cam1" / "mqtt-progress.json").unlink(missing_ok=True)  # killed before recording it
    again = Gateway(tmp_path / "out", image_decoder(codec["dec"]))
    assert again.handle("cams/cam1", items[0].payload)["event"] == "already-on-disk"
    clash = pack_payload(7, pack_message(items[1]), items[0].name)  # another image under the same name
    event = again.handle("cams/cam1", clash)
    assert event["event"] == "bad" and event["seq"] == 7 and "not overwritten" in event["reason"]
    again.flush()
    assert json.loads((tmp_path / "out" / "cam1" / "mqtt-progress.json").read_text())["seen"] == [[0, 0], [7, 7]]
    _assert_on_disk_once(tmp_path / "out" / "cam1", {items[0].name: expected[items[0].name]})


def test_random_and_mutated_messages_never_stop_the_gateway(tmp_path, codec):
    rng = np.random.default_rng(0)
    items, _ = _camera(codec, 20, device="cam1")
    gateway = Gateway(tmp_path / "out", image_decoder(codec["dec"]))
    kinds = set()
    for k in range(600):
        data = bytearray(items[k % 20].payload)
        if k % 3 == 0:
            data = bytearray(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes())
        else:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
        kinds.add(gateway.handle(f"cams/cam{k % 4}", bytes(data))["event"])
    assert kinds <= {"written", "already-on-disk", "duplicate", "bad"} and "bad" in kinds


# --- LoRaWAN network servers, through the command line ------------------------------------------
def _run_cli(*args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "fmt, topic, device",
    [
        ("chirpstack", "application/cameras/device/0004a30b001c0530/event/up", "0004a30b001c0530"),
        ("ttn", "v3/cameras@ttn/devices/eui-0004a30b001c0530/up", "eui-0004a30b001c0530"),
    ],
)
def test_network_server_uplinks_are_decoded_without_glue_code(tmp_path, codec, broker, fmt, topic, device):
    images = tmp_path / "digits.npy"
    np.save(images, codec["digits"][:12])
    out, log = tmp_path / "out", tmp_path / "gw.log"
    gw = subprocess.Popen(
        [sys.executable, "-c", CLI, "subscribe", "--format", fmt, "--broker", broker.address, "-o", str(out)]
        + ["--bundle", str(codec["bundle"] / "decoder"), "--runtime", "litert", "--count", "12"]
        + ["--idle-timeout", str(DEADLINE)],
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )
    assert _wait_file(log, lambda ev: any(e["event"] == "subscribed" for e in ev), gw), log.read_text()
    pub = _run_cli(
        "publish", str(images), "--broker", broker.address, "--topic", topic, "--device", device,
        "--format", fmt, "--max-payload", "51", "--bundle", str(codec["bundle"] / "encoder"),
        "--runtime", "litert", "--state", str(tmp_path / "camera-state.json"),
    )  # fmt: skip
    assert pub.returncode == 0, pub.stderr
    summary = json.loads(pub.stdout)
    assert summary["acknowledged"] == 12 and summary["max_payload_bytes"] <= 51
    assert gw.wait(DEADLINE) == 0, log.read_text()
    local = codec["dec"].decompress(list(codec["enc"].compress(codec["digits"][:12], target_bytes=50)), binarize=True)
    _assert_on_disk_once(out / device, {f"{i:08d}": local[i] for i in range(12)})


# --- the camera's rate choices and the command line's errors ------------------------------------
def test_a_long_running_camera_pays_one_byte_over_the_message_and_the_gateway_decodes_it(tmp_path, codec):
    start = 3_000_000  # days of images: the full form's header is 4 bytes here
    items, expected = _camera(codec, 300, seq0=start, names=False, device="cam1")
    overhead = [len(it.payload) - len(it.message) for it in items]
    assert overhead[0] == 4 and np.mean(overhead) < 1 + 4 / 32  # and the full form on every 32nd
    gateway = Gateway(tmp_path / "out", image_decoder(codec["dec"]))
    events = [gateway.handle("cams/cam1", it.payload) for it in items]
    assert [e["seq"] for e in events if e["event"] == "written"] == list(range(start, start + 300))
    _assert_on_disk_once(tmp_path / "out" / "cam1", {f"{it.sequence:08d}": expected[it.name] for it in items})


def test_max_payload_gives_each_image_the_finest_step_whose_whole_payload_fits(codec):
    enc, images = codec["enc"], codec["digits"][:40]
    items = encode_payloads(enc, images, [f"d{i}" for i in range(40)], range(40), max_payload=12, with_names=False)
    for item, image in zip(items, images):
        if item.payload is None:
            continue
        assert len(item.payload) <= 12
        if item.step_index > 0:  # the next finer step would not have fit
            finer = enc.compress(image[None], step=enc.steps[item.step_index - 1])[0]
            assert len(finer) + (len(item.payload) - len(pack_message(item))) > 12


def test_an_image_that_fits_no_step_is_refused_by_name_and_a_lowered_quality_is_said(codec):
    enc, images = codec["enc"], codec["digits"][:20]
    coarsest = [len(m) for m in enc.compress(images, step=enc.steps[-1])]
    limit = 1 + sorted(coarsest)[len(coarsest) // 2]  # about half fit even at the coarsest step
    items = encode_payloads(enc, images, [f"d{i}" for i in range(20)], range(20), max_payload=limit, with_names=False)
    refused = [it for it in items if it.payload is None]
    assert refused and len(refused) < 20
    assert all("does not fit" in it.note for it in refused)
    lowered = encode_payloads(enc, images[:5], list("abcde"), range(5), max_payload=12, quality=16, with_names=False)
    assert all("quality lowered from 16" in it.note for it in lowered if it.payload is not None and it.note)
    assert any(it.note for it in lowered)


def test_without_paho_the_commands_say_which_extra_to_install(tmp_path):
    code = "import sys; sys.modules['paho'] = None; " + CLI
    proc = subprocess.run(
        [sys.executable, "-c", code, "subscribe", "--topic", "a/+", "-o", str(tmp_path), "--bundle", "nowhere"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "compressor subscribe: error: paho-mqtt is not installed: "
        "pip install 'paho-mqtt==2.2.0' (the [mqtt] extra of this checkout)"
    ]


def test_a_broker_that_is_not_there_is_retried_until_the_timeout_then_reported(tmp_path, codec):
    from bench.mosquitto import free_port

    images = tmp_path / "digits.npy"
    np.save(images, codec["digits"][:3])
    pub = _run_cli(
        "publish", str(images), "--broker", f"127.0.0.1:{free_port()}", "--topic", "cams/cam1",
        "--bundle", str(codec["bundle"] / "encoder"), "--runtime", "litert", "--timeout", "3",
        "--state", str(tmp_path / "state.json"),
    )  # fmt: skip
    assert pub.returncode == 3, pub.stderr
    assert "3 images NOT acknowledged by the broker: sequence numbers 0..2" in pub.stderr
    assert json.loads(pub.stdout)["acknowledged"] == 0


def test_a_broker_that_refuses_the_login_is_one_line_not_an_endless_retry(tmp_path, codec, broker):
    closed = Mosquitto(tmp_path / "closed", anonymous=False).start()
    try:
        sub = _run_cli(
            "subscribe", "--broker", closed.address, "--topic", "cams/+", "-o", str(tmp_path / "out"),
            "--bundle", str(codec["bundle"] / "decoder"), "--username", "nobody", "--password", "wrong",
        )  # fmt: skip
    finally:
        closed.stop()
    assert sub.returncode == 1
    assert sub.stderr.strip().splitlines()[-1].startswith("compressor subscribe: error: broker refused the connection")
    assert "--username/--password" in sub.stderr


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    folder.mkdir()
    ca, ca_key, crt, key, csr = (folder / n for n in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    steps = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-days",
            "2",
            "-subj",
            "/CN=t",
        ],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "2"]
        + ["-extfile", ext],
    ]
    for step in steps:
        try:
            subprocess.run(["openssl", *map(str, step)], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.CalledProcessError) as e:
            _skip_or_fail(f"openssl cannot make a test certificate: {e}")
    return ca, crt, key


def test_tls_and_a_password_are_passed_through_to_the_broker(tmp_path, codec, broker):
    ca, crt, key = _certificates(tmp_path / "tls")
    secure = Mosquitto(tmp_path / "secure", passwords={"camera": "s3cret"}, tls=(ca, crt, key)).start()
    login = {"username": "camera", "password": "s3cret", "cafile": str(ca)}
    images = tmp_path / "digits.npy"
    np.save(images, codec["digits"][:5])
    try:
        gw = GatewayThread(tmp_path / "out", codec, secure, **login)
        try:
            pub = subprocess.run(
                [sys.executable, "-c", CLI, "publish", str(images), "--broker", secure.address]
                + ["--topic", "cams/cam1", "--bundle", str(codec["bundle"] / "encoder"), "--runtime", "litert"]
                + ["--state", str(tmp_path / "state.json"), "--username", "camera", "--cafile", str(ca)],
                capture_output=True,
                text=True,
                timeout=DEADLINE,
                env={**os.environ, "MQTT_PASSWORD": "s3cret"},
            )
            assert pub.returncode == 0, pub.stderr
            assert gw.wait(lambda: gw.kinds("written") == 5)
        finally:
            gw.close()
        wrong = _run_cli(
            "publish", str(images), "--broker", secure.address, "--topic", "cams/cam1", "--cafile", str(ca),
            "--username", "camera", "--password", "wrong", "--bundle", str(codec["bundle"] / "encoder"),
            "--state", str(tmp_path / "state.json"),
        )  # fmt: skip
    finally:
        secure.stop()
    assert wrong.returncode == 1 and "broker refused the connection" in wrong.stderr
    # arrays carry no names, so the gateway names each file by its sequence number
    assert len(sorted((tmp_path / "out" / "cam1").glob("*.png"))) == 5


def test_make_client_keeps_the_session_on_the_broker(broker):
    client = make_client(Broker.parse(broker.address), "session-check")
    assert client._clean_session is False  # the broker keeps subscriptions and queued messages
