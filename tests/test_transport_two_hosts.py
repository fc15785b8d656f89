"""Two hosts on one machine: a camera and a gateway in their own network namespaces, joined by a veth pair.

``compressor send`` runs in the camera namespace and ``compressor receive`` in the gateway's,
as separate processes through the command line. The link is then cut (veth down until the
camera reports the broken connection) or the gateway is killed mid-stream; the gateway is held
at a known image first (see ``Gateway``), so neither lands after the end on a slow machine.
The addresses (192.0.2.0/24, TEST-NET-1) exist only inside the two namespaces, which are
deleted afterwards, so no packet leaves them.

Needs root and iproute2 (installed from Debian when missing); elsewhere it skips saying why,
unless COMPRESSOR_REQUIRE_SYSTEM_TESTS=1 (set by .ci/run) turns the skip into a failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from compressor import Decoder, Encoder
from compressor.io.files import read_image, read_images, write_png
from tests.support import ROOT, cache_dir, mnist5k_test, skip_or_fail

CAMERA_IP, GATEWAY_IP, PREFIX = "192.0.2.1", "192.0.2.2", 24
PORT = 7467
NS_PREFIX = "vc-"  # vc-cam-PID, vc-gw-PID
WAIT = 300  # seconds: only a broken test waits this long; nothing waits on a clock to succeed
PIPE_BYTES = 4096  # the smallest pipe Linux allows: a gateway that is not read blocks within a few events


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _ensure_iproute2() -> None:
    if shutil.which("ip"):
        return
    if not shutil.which("apt-get"):
        skip_or_fail("two-host test unavailable: the 'ip' command (iproute2) is missing and there is no apt-get")
    cache = cache_dir("apt-archives")
    (cache / "partial").mkdir(parents=True, exist_ok=True)
    cmd = ["apt-get", "-q", "-y", "--no-install-recommends", f"-oDir::Cache::archives={cache}", "install", "iproute2"]
    if subprocess.run(cmd, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "-q", "update"], capture_output=True, timeout=600)
        subprocess.run(cmd, capture_output=True, timeout=600)
    if not shutil.which("ip"):
        skip_or_fail("two-host test unavailable: could not install iproute2 with apt-get")


def _remove_stale_namespaces() -> None:
    """Namespaces of an earlier run of this test that died before its cleanup (its PID is gone)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        pid = name.rsplit("-", 1)[-1]
        ours = name.startswith((f"{NS_PREFIX}cam-", f"{NS_PREFIX}gw-"))
        if ours and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _ip("netns", "del", name, check=False)


class Hosts:
    """Two namespaces, ``camera`` and ``gateway``, with one veth cable between them."""

    def __init__(self):
        pid = os.getpid()
        self.camera, self.gateway = f"{NS_PREFIX}cam-{pid}", f"{NS_PREFIX}gw-{pid}"
        self.camera_if, self.gateway_if = f"vcc{pid}"[:15], f"vcg{pid}"[:15]
        _ip("netns", "add", self.camera)
        _ip("netns", "add", self.gateway)
        # created inside the namespaces: the cable never exists in the host's own namespace
        _ip("link", "add", self.camera_if, "netns", self.camera, "type", "veth",
            "peer", "name", self.gateway_if, "netns", self.gateway)  # fmt: skip
        for ns, dev, addr in ((self.camera, self.camera_if, CAMERA_IP), (self.gateway, self.gateway_if, GATEWAY_IP)):
            _ip("-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def cable(self, up: bool) -> None:
        _ip("-n", self.gateway, "link", "set", self.gateway_if, "up" if up else "down")

    def remove(self) -> None:
        for ns in (self.camera, self.gateway):
            _ip("netns", "del", ns, check=False)

    def popen(self, ns: str, *args: str, text: bool = True) -> subprocess.Popen:
        """``compressor ARGS`` in namespace ``ns`` (``ip netns exec`` execs it: the PID is Python's)."""
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "compressor.cli", *args]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if not text else subprocess.PIPE,
            text=text, cwd=ROOT, bufsize=-1 if text else 0,
        )  # fmt: skip


@pytest.fixture(scope="module")
def hosts():
    if sys.platform != "linux":
        skip_or_fail("two-host test unavailable: network namespaces are Linux only")
    if os.geteuid() != 0:
        skip_or_fail("two-host test unavailable: creating network namespaces (ip netns add) needs root")
    _ensure_iproute2()
    _remove_stale_namespaces()
    try:
        h = Hosts()
    except (RuntimeError, subprocess.SubprocessError) as e:
        _ip("netns", "del", f"{NS_PREFIX}cam-{os.getpid()}", check=False)
        _ip("netns", "del", f"{NS_PREFIX}gw-{os.getpid()}", check=False)
        skip_or_fail(f"two-host test unavailable: cannot create network namespaces here: {e}")
    try:
        yield h
    finally:
        h.remove()
        names = _ip("netns", "list", check=False).stdout
        assert h.camera not in names and h.gateway not in names


class Gateway:
    """``compressor receive`` in the gateway namespace; its JSON events are collected as they come.

    ``hold``: a condition on the events so far. When it first holds, this side stops reading the
    gateway's output until :meth:`release`. The pipe is one page (4 KiB) and events are read 256
    bytes at a time, so the gateway blocks in its next few prints, and it prints each ``written``
    event *before* it sends that image's ACK: a held gateway can neither finish the session nor
    acknowledge more than about 25 further images, however fast or slow this machine is.
    """

    def __init__(self, hosts: Hosts, bundle, out, hold=None):
        self.proc = hosts.popen(
            hosts.gateway, "receive", "-o", str(out), "--listen", f"{GATEWAY_IP}:{PORT}",
            "--bundle", str(bundle / "decoder"), "--runtime", "litert", "--once", "--timeout", "30",
            "--max-idle", "300", text=False,
        )  # fmt: skip
        fcntl.fcntl(self.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.events: list[dict] = []
        self._news: queue.Queue = queue.Queue()
        self._hold, self.held, self._released = hold, threading.Event(), threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda: any(e["event"] == "listening" for e in self.events), "the gateway to listen")

    def _read(self):
        fd, pending = self.proc.stdout.fileno(), b""
        while chunk := os.read(fd, 256):
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if not line.startswith(b"{"):
                    continue
                self.events.append(json.loads(line))
                self._news.put(None)
                if self._hold is not None and self._hold(self.events):
                    self._hold = None
                    self.held.set()
                    self._released.wait()
        self._news.put(None)

    def release(self) -> None:
        self._released.set()

    def wait_for(self, condition, what: str) -> None:
        """Wake on each event (the 0.5 s poll only notices a gateway that died without one)."""
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline or (self.proc.poll() is not None and self._news.empty()):
                raise AssertionError(f"gave up waiting for {what}; events: {self.events[-5:]}")
            try:
                self._news.get(timeout=0.5)
            except queue.Empty:
                pass

    def written(self) -> list[int]:
        return [e["seq"] for e in self.events if e["event"] == "written"]

    def finish(self) -> int:
        self.release()
        try:
            return self.proc.wait(timeout=WAIT)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.release()


def _written_at_least(n: int):
    return lambda events: sum(e["event"] == "written" for e in events) >= n


class Camera:
    """``compressor send`` in the camera namespace; its stderr lines (what it reports) are collected."""

    def __init__(self, hosts: Hosts, bundle, images, *extra: str, ack_timeout: float = 30.0):
        self.proc = hosts.popen(
            hosts.camera, "send", str(images), "--to", f"{GATEWAY_IP}:{PORT}", "--bundle", str(bundle / "encoder"),
            "--runtime", "litert", "--ack-timeout", str(ack_timeout), "--connect-timeout", "2", *extra,
        )  # fmt: skip
        self.log: list[str] = []
        self._news: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)
            self._news.put(None)
        self._news.put(None)

    def wait_for_report(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while not any(text in line for line in self.log):
            if time.monotonic() > deadline or (self.proc.poll() is not None and self._news.empty()):
                raise AssertionError(f"the camera never reported {text!r}; it said: {self.log[-5:]}")
            try:
                self._news.get(timeout=0.5)
            except queue.Empty:
                pass

    def finish(self) -> tuple[int, dict, str]:
        try:
            code = self.proc.wait(timeout=WAIT)
            out = self.proc.stdout.read()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
        err = "".join(self.log)
        assert out.strip(), f"no summary from send (exit {self.proc.returncode}): {err[-2000:]}"
        return code, json.loads(out.strip().splitlines()[-1]), err


@pytest.fixture(scope="module")
def camera_images(tmp_path_factory):
    """60 held-back digits as PNG files, the way a camera would leave them."""
    folder = tmp_path_factory.mktemp("camera")
    for i, img in enumerate(mnist5k_test(60)):
        write_png(folder / f"cam{i:03d}.png", img)
    return folder


def _local_decode(bundle, folder):
    images, names = read_images(folder)
    messages = Encoder.load(bundle / "encoder", runtime="litert").compress(images)
    return names, Decoder.load(bundle / "decoder", runtime="litert").decompress(messages, binarize=True)


def _check_arrived(out_session, names, local):
    assert sorted(p.name for p in out_session.glob("*.png")) == sorted(f"{n}.png" for n in names)
    for name, expected in zip(names, local):
        np.testing.assert_array_equal(read_image(out_session / f"{name}.png"), expected, err_msg=name)


def test_all_images_arrive_in_order_identical_to_a_local_decode(hosts, bundle_dir, camera_images, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for p in sorted(camera_images.glob("*.png"))[:30]:
        shutil.copy(p, images / p.name)
    gateway = Gateway(hosts, bundle_dir, tmp_path / "out")
    try:
        code, summary, err = Camera(hosts, bundle_dir, images).finish()
        assert code == 0, err
        assert gateway.finish() == 0
    finally:
        gateway.kill()
    assert summary["acknowledged"] == 30 and summary["unacknowledged"] == [] and summary["connections"] == 1
    assert gateway.written() == list(range(30))
    peers = {e["peer"] for e in gateway.events if e["event"] == "session"}
    assert peers == {CAMERA_IP}  # it really came over the cable, from the other namespace
    _check_arrived(tmp_path / "out" / summary["session"], *_local_decode(bundle_dir, images))


def test_cutting_the_cable_mid_stream_resumes_without_loss_or_rewrite(hosts, bundle_dir, camera_images, tmp_path):
    """The gateway is held after 11 images (see Gateway), so the cut is always mid-stream. Released
    while the cable is down, it writes what it has and its ACKs are lost (the window of 8 keeps it
    short of the end); the cable comes back only after the camera has reported the broken link."""
    gateway = Gateway(hosts, bundle_dir, tmp_path / "out", hold=_written_at_least(11))
    try:
        camera = Camera(hosts, bundle_dir, camera_images, "--window", "8", "--retries", "8", ack_timeout=2)
        assert gateway.held.wait(WAIT), f"the gateway never wrote 11 images: {gateway.events[-5:]}"
        hosts.cable(up=False)
        gateway.release()
        camera.wait_for_report("attempt failed")
        hosts.cable(up=True)
        code, summary, err = camera.finish()
        assert code == 0, err
        assert gateway.finish() == 0
    finally:
        hosts.cable(up=True)
        gateway.kill()
    sessions = [e for e in gateway.events if e["event"] == "session"]
    assert summary["acknowledged"] == 60 and summary["connections"] >= 2, (summary, err)
    assert 2 <= len(sessions) <= summary["connections"]  # a HELLO may be lost with the cable, never invented
    assert gateway.written() == list(range(60))  # each once, in order
    assert sessions[0]["resume"] == 0 and sessions[-1]["resume"] >= 11
    _check_arrived(tmp_path / "out" / summary["session"], *_local_decode(bundle_dir, camera_images))


def test_a_gateway_crash_is_reported_exactly_then_resumed_without_rewrite(hosts, bundle_dir, camera_images, tmp_path):
    """Killed while held after 11 images (see Gateway): always mid-stream, whatever the machine's speed."""
    out, report = tmp_path / "out", tmp_path / "report.json"
    first = Gateway(hosts, bundle_dir, out, hold=_written_at_least(11))
    try:
        camera = Camera(hosts, bundle_dir, camera_images, "--retries", "2", "--report", str(report))
        assert first.held.wait(WAIT), f"the gateway never wrote 11 images: {first.events[-5:]}"
        first.kill()  # SIGKILL: no goodbye, no flush
        code, summary, err = camera.finish()
    finally:
        first.kill()
    k = summary["acknowledged"]
    assert code == 3 and 0 < k < 60, (summary, err)
    assert summary["unacknowledged"] == [[k, 59]] and f"sequence numbers {k}..59" in err
    names, local = _local_decode(bundle_dir, camera_images)
    assert json.loads(report.read_text())["unacknowledged_names"] == names[k:]
    state = json.loads((out / summary["session"] / "session.json").read_text())
    assert k <= state["next_seq"] < 60  # every acknowledged image is on disk, and the session is unfinished

    second = Gateway(hosts, bundle_dir, out)  # restarted: its progress comes from session.json
    try:
        code, summary, err = Camera(hosts, bundle_dir, camera_images).finish()
        assert code == 0, err
        assert second.finish() == 0
    finally:
        second.kill()
    after = second.written()
    recovered = [e["seq"] for e in second.events if e["event"] == "already-on-disk"]
    assert [e["resume"] for e in second.events if e["event"] == "session"][0] == state["next_seq"]
    assert sorted(first.written() + recovered + after) == list(range(60))  # nothing lost
    assert len(set(first.written()) | set(after)) == len(first.written()) + len(after)  # nothing written twice
    _check_arrived(out / summary["session"], names, local)
