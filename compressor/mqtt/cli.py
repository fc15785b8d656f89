"""``compressor publish`` (camera) and ``compressor subscribe`` (gateway): the codec on an MQTT broker.

Registered by ``compressor/cli.py`` through :func:`add_commands`. paho-mqtt is imported only
when one of these commands runs; without it they stop with one line naming the extra.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from compressor import names as name_rules
from compressor.errors import OutputError, UsageError
from compressor.mqtt.client import Broker, paho
from compressor.mqtt.subscriber import INCOMPLETE_EXIT
from compressor.mqtt.uplinks import DEFAULT_TOPICS, FORMATS


def add_commands(sub) -> None:
    """Add the publish and subscribe subparsers to ``sub``."""
    from compressor.codec import MODES
    from compressor.commands.help import HelpFormatter, epilog
    from compressor.commands.options import device_options, input_limit_options

    p = sub.add_parser(
        "publish",
        help="encode images and publish one MQTT message each (QoS 1, persistent session)",
        description="Encode images and publish one QoS 1 MQTT message per image on PREFIX/DEVICE, each with a "
        "sequence number that is never reused (layout: docs/format.md).",
        epilog=epilog(
            "compressor publish captures/ --broker broker.local:1883 --topic cameras/cam1 --bundle out/bundle",
            "compressor publish digits.npy --broker broker.local --topic cameras/cam1 --max-payload 51 --quality 8",
            "compressor publish captures/ --format chirpstack --topic application/1/device/0004a30b001c0530/event/up",
            incomplete="an image was refused or not acknowledged within --timeout",
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("images", nargs="+", help="image files, folders of images, or .npy/.npz arrays")
    _broker_options(p)
    p.add_argument("--topic", required=True, help="PREFIX/DEVICE; the last level is the device (gateway folder)")
    p.add_argument("--device", help="device name in sequence state and uplink JSON (default: last topic level)")
    device_options(p, "encoder")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--step", type=float, help="quantization step (one of the bundle's steps)")
    rate.add_argument("--quality", type=int, help="1..16, higher keeps more detail")
    p.add_argument("--mode", choices=MODES, default="entropy", help="how the latent is coded (default: %(default)s)")
    input_limit_options(p)
    p.add_argument(
        "--max-payload",
        type=int,
        help="bytes per message, e.g. 51 for LoRaWAN DR0: each image gets the finest step that fits "
        "(with --quality/--step: that one, lowered when it does not fit); an image that never fits is refused",
    )
    p.add_argument(
        "--names",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="carry file names in the payload (default: yes for image files; no for arrays or with --max-payload: "
        "the gateway names files by sequence number)",
    )
    p.add_argument("--interval", type=float, default=0.0, help="seconds between images")
    p.add_argument(
        "--state", help="file keeping this device's next sequence number (default: ~/.local/state/compressor/...)"
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="raw",
        help="raw payloads, or wrapped as a ChirpStack/TTN uplink JSON, to stand in for a network server",
    )
    p.add_argument("--timeout", type=float, help="give up waiting for PUBACKs after this many seconds (default: wait)")
    p.set_defaults(handler=_publish)

    s = sub.add_parser(
        "subscribe",
        help="decode images from MQTT messages or LoRaWAN uplinks into OUT/DEVICE/*.png",
        description="Subscribe to camera topics (or a LoRaWAN network server's uplinks), decode each image and "
        "write OUT/DEVICE/NAME.png before acknowledging it; redeliveries are recognised and not written twice. "
        "Prints one JSON event per message.",
        epilog=epilog(
            "compressor subscribe --broker broker.local:1883 --topic cameras/+ -o received/ --bundle out/bundle",
            "compressor subscribe --format chirpstack --broker chirpstack.local -o received/ --bundle out/bundle",
            "compressor subscribe --topic cameras/+ -o received/ --bundle out/bundle --count 100 --idle-timeout 60",
            incomplete="--idle-timeout passed before --count images were written",
        ),
        formatter_class=HelpFormatter,
    )
    _broker_options(s)
    s.add_argument("-o", "--out", required=True, help="folder; each device gets OUT/DEVICE/ (created if missing)")
    s.add_argument(
        "--topic",
        action="append",
        help="topic filter, repeatable (raw: PREFIX/+; default for chirpstack: "
        f"{DEFAULT_TOPICS['chirpstack']}, for ttn: {DEFAULT_TOPICS['ttn']})",
    )
    s.add_argument("--format", choices=FORMATS, default="raw", help="message format")
    device_options(s, "decoder")
    s.add_argument("--probabilities", action="store_true", help="write grey-level probabilities, not 0/255")
    s.add_argument("--count", type=int, help="exit after this many new images are on disk")
    s.add_argument("--once", action="store_const", const=1, dest="count", help="same as --count 1")
    s.add_argument("--idle-timeout", type=float, help="exit after this many seconds without a message")
    s.set_defaults(handler=_subscribe)


def _broker_options(p) -> None:
    p.add_argument(
        "--broker",
        default="localhost",
        help="HOST[:PORT]; the port defaults to 1883, 8883 with TLS (default: %(default)s)",
    )
    p.add_argument("--client-id", help="MQTT client id; keep it fixed so the broker keeps the session")
    p.add_argument("--username", help="account on the broker")
    p.add_argument("--password", help="or set MQTT_PASSWORD (keeps it out of the process list)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system CAs unless --cafile)")
    p.add_argument("--cafile", help="CA certificate(s) to trust (PEM); implies --tls")
    p.add_argument("--certfile", help="client certificate (PEM) for brokers that require one")
    p.add_argument("--keyfile", help="client key (PEM)")
    p.add_argument("--insecure", action="store_true", help="TLS without checking the broker's certificate")


def _broker(args) -> Broker:
    return Broker.parse(
        args.broker,
        username=args.username,
        password=args.password if args.password is not None else os.environ.get("MQTT_PASSWORD"),
        tls=args.tls,
        cafile=args.cafile,
        certfile=args.certfile,
        keyfile=args.keyfile,
        insecure=args.insecure,
    )


def _publish(args) -> int:
    from compressor.codec import Encoder
    from compressor.commands.options import read_input_images
    from compressor.mqtt import uplinks
    from compressor.mqtt.publisher import Publisher, encode_payloads
    from compressor.mqtt.sequences import SequenceCounter
    from compressor.mqtt.short_sequences import FormChooser

    def say(msg: str) -> None:
        print(f"compressor publish: {msg}", file=sys.stderr, flush=True)

    paho()  # before loading anything: a missing extra is one line
    broker = _broker(args)
    device = args.device or args.topic.rstrip("/").rsplit("/", 1)[-1]
    if problem := uplinks.device_problem(device):
        raise UsageError(f"{problem} (give --device, or end --topic with the device name)")
    if args.max_payload is not None and not 3 <= args.max_payload <= 65536:
        raise UsageError(f"--max-payload must be 3..65536 bytes, got {args.max_payload}")
    images, names = read_input_images(args)
    named_inputs = names is not None  # arrays carry no names: the gateway names files by sequence
    names = names or name_rules.numbered("image", len(images))
    enc = Encoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    state = Path(args.state) if args.state else _default_state(device)
    counter = SequenceCounter(state, device)
    with_names = args.names if args.names is not None else (args.max_payload is None and named_inputs)
    sequences = counter.reserve(len(images))
    forms = FormChooser(counter.history)
    items = encode_payloads(
        enc,
        images,
        names,
        sequences,
        max_payload=args.max_payload,
        step=args.step,
        quality=args.quality,
        mode=args.mode,
        with_names=with_names,
        forms=forms,
    )
    counter.remember(forms.history)
    for item in items:
        if item.note:
            say(f"image {item.name} (sequence {item.sequence}): {item.note}")
    client_id = args.client_id or f"compressor-camera-{device}"
    sent = [i for i in items if i.payload is not None]

    def wrap(payload: bytes, sequence: int) -> bytes:
        return uplinks.wrap(args.format, device, payload, f_cnt=sequence)

    pub = Publisher(broker, args.topic, client_id, log=say, wrap=wrap)
    try:
        with pub:
            for k, item in enumerate(sent):
                if k and args.interval > 0:
                    time.sleep(args.interval)
                pub.publish(item.sequence, item.payload)
            done = pub.wait(args.timeout)
    except KeyboardInterrupt:
        done = False
        say("interrupted")
    result = pub.result
    sizes = result.payload_bytes  # as published: a short payload goes full while the link is not steady
    summary = {
        "device": device,
        "topic": args.topic,
        "published": len(result.published),
        "acknowledged": len(result.acknowledged),
        "refused": [i.name for i in items if i.payload is None],
        "sequences": [sequences.start, sequences.stop - 1] if len(sequences) else [],
        "payload_bytes": sum(sizes),
        "payload_bytes_per_image": round(sum(sizes) / len(sizes), 2) if sizes else None,
        "short_form": sum(i.short and size == len(i.payload) for size, i in zip(sizes, sent)),
        "max_payload_bytes": max(sizes) if sizes else None,
    }
    print(json.dumps(summary), flush=True)
    if not done:
        say(
            f"{len(result.unacknowledged)} images NOT acknowledged by the broker: sequence numbers "
            f"{_ranges(result.unacknowledged)}"
        )
    if summary["refused"]:
        say(f"{len(summary['refused'])} images not sent: they do not fit in {args.max_payload} bytes")
    return 0 if done and not summary["refused"] else INCOMPLETE_EXIT


def _subscribe(args) -> int:
    from compressor.codec import Decoder
    from compressor.mqtt.subscriber import Gateway, run
    from compressor.transport.folder_lock import FolderLock
    from compressor.transport.receiver import image_decoder

    paho()
    broker = _broker(args)
    topics = args.topic or ([DEFAULT_TOPICS[args.format]] if args.format in DEFAULT_TOPICS else None)
    if not topics:
        raise UsageError("--topic is required with --format raw, e.g. --topic cameras/+")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be >= 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; name a folder with -o")
    out.mkdir(parents=True, exist_ok=True)
    # One gateway per folder, as for `compressor receive`: a second one would share the first's
    # broker client id (each connect drops the other, for ever) and rewrite its progress files.
    with FolderLock(out):
        dec = Decoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
        printer = threading.Lock()

        def log(event: dict) -> None:
            with printer:
                print(json.dumps(event), flush=True)

        gateway = Gateway(out, image_decoder(dec, binarize=not args.probabilities), args.format, log)
        client_id = args.client_id or _gateway_client_id(out)
        try:
            return run(gateway, broker, topics, client_id, count=args.count, idle_timeout=args.idle_timeout, log=log)
        except KeyboardInterrupt:  # the usual way to stop a gateway by hand; every PUBACK sent is on disk
            return 130


def _default_state(device: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "compressor" / "mqtt" / f"{device}.json"


def _gateway_client_id(out: Path) -> str:
    """Fixed per host and output folder: a restarted gateway resumes the broker session it left."""
    digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:10]
    return f"compressor-gateway-{socket.gethostname()[:20]}-{digest}"


def _ranges(numbers: list[int]) -> str:
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(f"{start}" if start == n else f"{start}..{n}")
            start = None
    return ", ".join(parts)
