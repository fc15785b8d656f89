"""Push images through a local Mosquitto, camera to gateway, and count what arrives.

    python -m bench.mqtt_throughput BUNDLE IMAGES.npy [--count 1000] [--cameras 3]
        [--fault none|broker-restart|gateway-restart|duplicate] [--names] [--first-sequence N]

Starts Mosquitto on a free 127.0.0.1 port (bench/mosquitto.py), one ``compressor subscribe``
gateway process, and ``--cameras`` publishers (threads, one device each) that share
``--count`` images between them (IMAGES repeated if it holds fewer). Faults:

* ``broker-restart``: the broker is stopped and started again when a third of the images
  are on the gateway's disk;
* ``gateway-restart``: the gateway process is killed (SIGKILL) at a third and started again;
* ``duplicate``: every message is published twice (what QoS 1 redelivery or a network
  server retry does).

Prints one JSON object: ``images_per_s`` end to end (first publish to the last image on
disk, the gateway's start-up excluded), ``lost`` and ``duplicated`` (images missing from, or
written more than once to, the gateway's folders, checked against the files on disk),
``duplicates_suppressed`` (redeliveries recognised by sequence number), ``found_on_disk``
(redeliveries of images written just before a kill, recognised by their file), and payload
bytes per image (mean, max; ``short_form_share``: how many went in the 1-byte short form,
``message_bytes_per_image``: the image message alone). Needs the [mqtt] extra
and ``apt-get install -y mosquitto``; never TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.mosquitto import Mosquitto
from bench.processes import interruptible
from compressor import Encoder
from compressor.mqtt.client import Broker
from compressor.mqtt.publisher import Publisher, encode_payloads

CLI = "from compressor.cli import main; raise SystemExit(main())"
FAULTS = ("none", "broker-restart", "gateway-restart", "duplicate")


class _Events:
    """The gateway processes' JSON event lines, read incrementally as they are appended."""

    def __init__(self, *logs: Path):
        self.logs, self.items = logs, []
        self._pos = dict.fromkeys(logs, 0)

    def poll(self) -> list[dict]:
        for log in self.logs:
            if not log.exists():
                continue
            with open(log, "rb") as f:
                f.seek(self._pos[log])
                data = f.read()
            end = data.rfind(b"\n") + 1
            self._pos[log] += end
            self.items += [json.loads(line) for line in data[:end].splitlines() if line[:1] == b"{"]
        return self.items

    def count(self, *kinds: str) -> int:
        return sum(e["event"] in kinds for e in self.items)

    def wait(self, predicate, proc: subprocess.Popen, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if predicate(self):
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False


def _gateway(bundle: str, broker: Mosquitto, out: Path, log: Path, runtime: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", CLI, "subscribe", "--broker", broker.address, "--topic", "bench/+", "-o", str(out)]
    cmd += ["--bundle", str(Path(bundle) / "decoder"), "--runtime", runtime, "--idle-timeout", "600"]
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.DEVNULL, preexec_fn=interruptible)
    if not _Events(log).wait(lambda ev: ev.count("subscribed") >= 1, proc, 120):
        raise RuntimeError(f"gateway did not subscribe: {log.read_text()[-2000:]}")
    return proc


def measure(
    bundle: str, images: np.ndarray, *, count=1000, cameras=3, fault="none", names=False, runtime="litert", first=0
):
    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {FAULTS}")
    images = images[np.arange(count) % len(images)]
    enc = Encoder.load(Path(bundle) / "encoder", runtime=runtime, precision="int8")
    share = np.array_split(np.arange(count), cameras)
    t0 = time.perf_counter()
    per_camera = {}
    for k, idx in enumerate(share):
        numbers, labels = range(first, first + len(idx)), [f"img{i:05d}" for i in idx]
        per_camera[f"cam{k}"] = encode_payloads(enc, images[idx], labels, numbers, with_names=names)
    encode_s = time.perf_counter() - t0
    sizes = [len(it.payload) for items in per_camera.values() for it in items]
    shorts = [it.short for items in per_camera.values() for it in items]
    messages = [len(it.message) for items in per_camera.values() for it in items]
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-") as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        out, logs = Path(tmp) / "out", [Path(tmp) / "gw1.log", Path(tmp) / "gw2.log"]
        gw = _gateway(bundle, broker, out, logs[0], runtime)
        repeat = 2 if fault == "duplicate" else 1

        sent_bytes = []

        def camera(device, items):
            with Publisher(Broker.parse(broker.address), f"bench/{device}", f"bench-{device}") as pub:
                pub.wait_connected(60)  # a camera connects once, then runs for days
                for it in items:
                    for _ in range(repeat):
                        pub.publish(it.sequence, it.payload)
                pub.wait()
            sent_bytes.extend(pub.result.payload_bytes)

        events = _Events(*logs)

        def handled(ev):
            return ev.count("written", "already-on-disk")

        start = time.perf_counter()
        threads = [threading.Thread(target=camera, args=kv, daemon=True) for kv in per_camera.items()]
        for t in threads:
            t.start()
        if fault in ("broker-restart", "gateway-restart"):
            events.wait(lambda ev: handled(ev) >= count // 3, gw, 600)
            if fault == "broker-restart":
                broker.restart(pause=1.0)
            else:
                gw.send_signal(signal.SIGKILL)
                gw.wait()
                gw = _gateway(bundle, broker, out, logs[1], runtime)
        events.wait(lambda ev: handled(ev) >= count, gw, 600)
        elapsed = time.perf_counter() - start
        for t in threads:
            t.join(60)
        if fault == "duplicate":  # the second copies may still be in flight when the last image lands
            events.wait(lambda ev: ev.count("duplicate") >= count, gw, 60)
        gw.send_signal(signal.SIGINT)
        gw.wait(30)
        events = events.poll()
        wrote = [(e["device"], e["seq"]) for e in events if e["event"] in ("written", "already-on-disk")]
        files = {d.name: {p.name for p in d.glob("*.png") if not p.name.startswith(".")} for d in out.iterdir()}
        expected = {(dev, it.sequence) for dev, items in per_camera.items() for it in items}
        on_disk = {(dev, int(name[:-4])) for dev, names_ in files.items() for name in names_} if not names else None
        lost = len(expected - set(wrote)) + (len(expected - on_disk) if on_disk is not None else 0)
        return {
            "fault": fault,
            "images": count,
            "cameras": cameras,
            "runtime": runtime,
            "images_per_s": round(count / elapsed, 1),
            "end_to_end_s": round(elapsed, 2),
            "encode_s": round(encode_s, 2),
            "lost": lost,
            "duplicated": len(wrote) - len(set(wrote)) + max(0, sum(map(len, files.values())) - count),
            "duplicates_suppressed": sum(e["event"] == "duplicate" for e in events),
            "found_on_disk": sum(e["event"] == "already-on-disk" for e in events),  # written just before a kill
            "bad": sum(e["event"] == "bad" for e in events),
            "payload_bytes_per_image": round(float(np.mean(sent_bytes)), 2),  # as published, redeliveries too
            "payload_bytes_max": int(max(sent_bytes)),
            "payload_bytes_per_image_encoded": round(float(np.mean(sizes)), 2),
            "message_bytes_per_image": round(float(np.mean(messages)), 2),
            "short_form_share": round(float(np.mean(shorts)), 3),
            "names_in_payload": names,
            "first_sequence": first,
        }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mqtt_throughput", description=__doc__.splitlines()[0])
    p.add_argument("bundle", help="model bundle (with encoder/ and decoder/)")
    p.add_argument("images", help=".npy of uint8 (N, H, W) images")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--fault", choices=FAULTS, default="none")
    p.add_argument("--names", action="store_true", help="carry file names in the payload (default: sequence only)")
    p.add_argument("--runtime", default="litert")
    p.add_argument(
        "--first-sequence", type=int, default=0, help="each camera's first number (e.g. 3000000: one that ran for days)"
    )
    args = p.parse_args(argv)
    images = np.load(args.images)
    result = measure(
        args.bundle,
        images,
        count=args.count,
        cameras=args.cameras,
        fault=args.fault,
        names=args.names,
        runtime=args.runtime,
        first=args.first_sequence,
    )
    print(json.dumps(result), flush=True)
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
