"""``compressor send`` and ``compressor receive``: argparse and glue around sender.py / receiver.py."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from compressor import names as name_rules
from compressor.commands.help import HelpFormatter, epilog
from compressor.commands.options import (
    device_options,
    input_limit_options,
    non_negative_int,
    positive_int,
    positive_seconds,
    rate_options,
    read_input_images,
    seconds,
)
from compressor.errors import OutputError
from compressor.io.atomic import atomic_write_json
from compressor.transport import auth
from compressor.transport.folder_lock import FolderLock
from compressor.transport.protocol import DEFAULT_PORT, INCOMPLETE_EXIT
from compressor.transport.receiver import MAX_CONNECTIONS, Receiver, image_decoder, serve
from compressor.transport.sender import Sender


def parse_address(text: str, default_host: str | None = None, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``HOST`` (with a default port), or ``:PORT`` / ``PORT``
    (with a default host)."""
    host, sep, port = text.rpartition(":")
    if not sep or (host.startswith("[") is False and ":" in host):  # HOST alone, or a bare IPv6 address
        host, port = (text, str(default_port)) if default_port is not None and not text.isdigit() else ("", text)
    host = host.strip("[]") or default_host
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    return host, int(port)


def _address(default_host, default_port):
    def parse(text: str) -> tuple[str, int]:
        try:
            return parse_address(text, default_host, default_port)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def add_commands(sub) -> None:
    """Add the send and receive subparsers to ``sub``."""
    s = sub.add_parser(
        "send",
        help="encode images and stream them to a gateway ('compressor receive')",
        description="Encode images and send one message per image over TCP to 'compressor receive'; "
        "a cut connection resumes where the gateway stopped (docs/transport.md).",
        epilog=epilog(
            f"compressor send captures/ --to gateway.local:{DEFAULT_PORT} --bundle out/bundle/encoder",
            "compressor send digits.npy --to gateway.local --bundle out/bundle --interval 0.2 --key-file KEY",
            incomplete="some images were not acknowledged (named on stderr); run the same command again to resume",
        ),
        formatter_class=HelpFormatter,
    )
    s.add_argument("images", nargs="+", help="image files, folders of images, or .npy/.npz arrays")
    s.add_argument(
        "--to",
        required=True,
        type=_address(None, DEFAULT_PORT),
        help=f"gateway HOST[:PORT] (port {DEFAULT_PORT} if omitted)",
    )
    device_options(s, "encoder")
    rate_options(s)
    input_limit_options(s)
    s.add_argument("--session", help="session name: the gateway's folder (default: a digest of the images)")
    s.add_argument(
        "--window", type=positive_int, default=32, help="images in flight before an ACK (default: %(default)s)"
    )
    s.add_argument("--interval", type=seconds, default=0.0, help="seconds between images (default: %(default)s)")
    s.add_argument(
        "--ack-timeout", type=positive_seconds, default=5.0, help="seconds without an ACK before reconnecting"
    )
    s.add_argument(
        "--connect-timeout", type=positive_seconds, default=5.0, help="seconds to wait for the gateway to accept"
    )
    s.add_argument("--retries", type=non_negative_int, default=5, help="failed connections in a row before giving up")
    s.add_argument("--report", help="also write the JSON summary here (atomically), with unacknowledged names")
    key_option(s)
    s.set_defaults(handler=_send)

    r = sub.add_parser(
        "receive",
        help="accept images from cameras ('compressor send'), write PNGs",
        description="Serve cameras running 'compressor send': decode each image and write OUT/SESSION/NAME.png "
        "atomically before acknowledging it; session.json records progress (docs/transport.md).",
        epilog=epilog(
            f"compressor receive -o received/ --bundle out/bundle/decoder --listen 0.0.0.0:{DEFAULT_PORT}",
            "compressor receive -o received/ --bundle out/bundle --once --key-file KEY",
            incomplete="with --once: stopped (e.g. by --max-idle) before a session was complete",
        ),
        formatter_class=HelpFormatter,
    )
    r.add_argument("-o", "--out", required=True, help="folder; each session gets OUT/SESSION/ (created if missing)")
    r.add_argument(
        "--listen",
        default=f"0.0.0.0:{DEFAULT_PORT}",
        type=_address("0.0.0.0", DEFAULT_PORT),
        help="HOST:PORT or :PORT to listen on (default: %(default)s)",
    )
    device_options(r, "decoder")
    r.add_argument("--probabilities", action="store_true", help="write grey-level probabilities, not 0/255")
    r.add_argument("--once", action="store_true", help="exit after one session is complete")
    r.add_argument(
        "--timeout", type=positive_seconds, default=60.0, help="seconds of silence before a connection is closed"
    )
    r.add_argument("--max-idle", type=seconds, help="exit when no camera has connected for this many seconds")
    r.add_argument(
        "--max-connections",
        type=positive_int,
        default=MAX_CONNECTIONS,
        help=(
            "connections served at once; one more replaces the oldest that has sent no HELLO, "
            "else is told to retry (default: %(default)s)"
        ),
    )
    key_option(r)
    r.set_defaults(handler=_receive)


def key_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-file",
        help="shared secret (16..4096 bytes, e.g. head -c 32 /dev/urandom > KEY) that camera and gateway both "
        "hold: every frame is authenticated with HMAC-SHA256 and peers without it are refused",
    )


def _send(args) -> int:
    from compressor.codec import Encoder

    images, names = read_input_images(args)
    names = names or name_rules.numbered("image", len(images))
    key = auth.read_key(args.key_file) if args.key_file else None
    enc = Encoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    messages = enc.compress(
        images,
        step=args.step,
        quality=args.quality,
        target_bytes=args.target_bytes,
        mode=args.mode,
        max_images=args.max_images,
    )
    sender = Sender(
        args.to,
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
        key=key,
    )
    result = sender.run()
    summary = {**result.summary(), "to": f"{args.to[0]}:{args.to[1]}", "bytes": sum(map(len, messages))}
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

    key = auth.read_key(args.key_file) if args.key_file else None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; name a folder with -o")
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out):  # one receiver per folder, held until this process ends
        return _serve(args, out, key)


def _serve(args, out: Path, key: bytes | None) -> int:
    from compressor.codec import Decoder

    dec = Decoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    printer = threading.Lock()

    def log(event: dict) -> None:
        with printer:
            print(json.dumps(event), flush=True)

    receiver = Receiver(out, dec.coding.model_id, image_decoder(dec, binarize=not args.probabilities), log, key=key)
    host, port = args.listen

    def listening(address) -> None:
        log({"event": "listening", "host": address[0], "port": address[1], "runtime": dec.runtime})

    try:
        done = serve(
            receiver,
            host,
            port,
            once=args.once,
            timeout=args.timeout,
            max_idle=args.max_idle,
            max_connections=args.max_connections,
            on_listening=listening,
        )
    except KeyboardInterrupt:  # the usual way to stop a gateway by hand; every ACK sent is on disk
        return 130
    return 0 if done or not args.once else INCOMPLETE_EXIT
