"""Every figure the README quotes outside the main-job table, measured in one run on the demo's output.

    python -m bench.readme_figures out/ [--gray BUNDLE] [--rounds 100] [--json figures.json]

``out/`` is what ``./tasks.sh demo`` wrote (bundle, test_images.npy, run, bundle-w0.5, report/).
Prints one markdown table per README section: the figure, its value on this machine and model,
and the README text it belongs to. Each section is measured on its own: one that cannot run
(a missing bundle, a missing extra) prints why and the others go on, so the script always ends
with every row it could measure. The README names this command beside each figure.

Figures that take minutes or another environment have their own commands and are listed, not
measured: Ray throughput (``bench.dataset_throughput``), MQTT throughput (``bench.mqtt_throughput``),
tflite-runtime 2.14 (``bench.tflite_runtime_check``), the residual curve (``bench.residual_curve``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

COMMAND = "python -m bench.readme_figures out/"


def device_section(out: Path, images: np.ndarray, rounds: int) -> list[tuple[str, str]]:
    """'Use on a device': message, stream and joint bytes at the default step; the message header."""
    from compressor import Decoder, Encoder, wire
    from compressor.metrics import pixel_error

    enc = Encoder.load(out / "bundle" / "encoder", runtime="litert", precision="int8", threads=1)
    dec = Decoder.load(out / "bundle" / "decoder", runtime="litert", precision="int8", threads=1)
    x = images.astype(np.float32) / 255
    n = len(x)
    messages = enc.compress(x)
    names = [f"digit{i:04d}.png" for i in range(n)]
    stream, named = enc.compress_stream(x), enc.compress_stream(x, names=names)
    joint = enc.compress_stream(x, joint=True)
    payload = wire.unpack_message(enc.coding.model_id, messages[0])[1]
    error = pixel_error(x, dec.decompress(stream))
    return [
        ("default step Δ", f"{enc.steps[enc.coding.default_index]}"),
        ("message header (bytes)", f"{len(messages[0]) - len(payload)}"),
        ("self-contained messages, B/image", f"{np.mean([len(m) for m in messages]):.2f}"),
        ("stream without names, B/image", f"{len(stream) / n:.2f}"),
        ("stream with names (digitNNNN.png), B/image", f"{len(named) / n:.2f}"),
        ("joint stream, B/image", f"{len(joint) / n:.2f}"),
        ("joint saves, B/image (stream without names − joint)", f"{(len(stream) - len(joint)) / n:.2f}"),
        ("pixel error at the default step, %", f"{100 * error:.2f}"),
    ]


def lossless_section(out: Path, images: np.ndarray, rounds: int) -> list[tuple[str, str]]:
    """'Lossless mode': bytes per digit against a 1-bit PNG of the same binarized digit."""
    from bench.codec_targets import lossless_point
    from bench.residual_curve import classical_binary
    from compressor import Decoder, Encoder

    enc = Encoder.load(out / "bundle" / "encoder", runtime="litert", precision="int8", threads=1)
    dec = Decoder.load(out / "bundle" / "decoder", runtime="litert", precision="int8", threads=1)
    point = lossless_point(enc, dec, images.astype(np.float32) / 255)
    if point["status"] != "ok":
        return [("lossless", point["reason"])]
    png = classical_binary(images > 127)
    return [
        (
            "lossless message, B/digit (exact: " + ("yes" if point["exact"] else "NO") + ")",
            f"{point['message_bytes_per_image']:.1f}",
        ),
        ("lossless stream, B/digit", f"{point['stream_bytes_per_image']:.1f}"),
        ("1-bit PNG (optimize), B/digit", f"{png['png 1-bit']:.1f}"),
        ("WebP lossless, B/digit", f"{png['webp lossless']:.1f}"),
    ]


def residual_section(gray: Path | None, images: np.ndarray, rounds: int) -> list[tuple[str, str]]:
    """'Residual codes' (grayscale model): lossless and E = 8 bytes, PSNR, WebP lossless."""
    if gray is None:
        return [("grayscale residual codes", "not measured: give --gray BUNDLE (python -m export train --grayscale)")]
    from PIL import Image

    from bench.residual_curve import psnr
    from compressor import Decoder, Encoder

    enc = Encoder.load(gray / "encoder", runtime="litert", threads=1)
    dec = Decoder.load(gray / "decoder", runtime="litert", threads=1)
    rows = []
    for bound in (0, 8):
        messages = enc.compress(images, max_error=bound)
        back = dec.decompress(messages)
        worst = int(np.abs(back.astype(int) - images.astype(int)).max())
        rows.append(
            (f"max_error={bound}: B/digit (largest error {worst})", f"{np.mean([len(m) for m in messages]):.1f}")
        )
        if bound:
            rows.append((f"max_error={bound}: PSNR dB", f"{psnr(images, back):.1f}"))
    sizes = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im, "L").save(buf, format="WEBP", lossless=True, quality=100, method=6)
        sizes.append(buf.tell())
    rows.append(("WebP lossless (method 6), B/digit", f"{np.mean(sizes):.1f}"))
    return rows


def speed_section(out: Path, images: np.ndarray, rounds: int) -> list[tuple[str, str]]:
    """'Speed at batch 1': bench.speed_targets' figures (best of ``rounds``, timed in turns)."""
    from bench import speed_targets

    small = out / "bundle-w0.5"
    c = speed_targets.codec(str(out / "bundle"), images, str(small) if small.is_dir() else None, rounds)
    cli = speed_targets.cli_joint(str(out / "bundle"), str(out / "test_images.npy"))
    rows = [
        ("API overhead per round trip, batch 1, µs", f"{c['overhead_us']:.0f}"),
        ("whole codec, int8 LiteRT, batch 1, one thread, µs", f"{c['codec_us_b1']:.0f}"),
        ("int8 LiteRT decoder, batch 1, µs (GMAC/s)", f"{c['decoder_us_b1']:.1f} ({c['decoder_gmac_s_b1']})"),
        (
            "CLI joint stream of a .npy: file ÷ N vs payload, B/image",
            f"{cli['file_bytes_per_image']:.2f} vs {cli['payload_bytes_per_image']:.2f}",
        ),
    ]
    if "small_decoder_us_b1" in c:
        rows.append(
            (
                "width 0.5: decoder batch 1 µs / pixel error vs width 1, points",
                f"{c['small_decoder_us_b1']:.1f} / {c['small_pixel_error_pp']:+.2f}",
            )
        )
    if (out / "run").is_dir():
        keras = speed_targets.keras_ratio(str(out / "run"), str(out / "bundle"), rounds)
        if keras:  # both warm, timed in turns in one child process (bench.keras_ratio)
            rows.append(
                (
                    "int8 decoder vs Keras tf.function, batch 1 (×; Keras µs / int8 µs beside it)",
                    f"{keras['keras_over_int8_b1']:.1f} ({keras['keras_decoder_us_b1']:.0f} / "
                    f"{keras['int8_decoder_us_b1_beside_keras']:.1f})",
                )
            )
    return rows


def ladder_section(out: Path, images: np.ndarray, rounds: int) -> list[tuple[str, str]]:
    """'Model ladder': the rows the demo's ``python -m bench ladder`` wrote to out/report/ladder.json."""
    rows = json.loads((out / "report" / "ladder.json").read_text())["rows"]
    return [
        (
            f"width {r['width']:g}: B/image, pixel error %, decoder µs b1 / b64",
            f"{r['bytes_per_image']:.2f}, {r.get('pixel_error_%', r.get('psnr_db'))}, "
            f"{r.get('decoder_us_b1', '—')} / {r.get('decoder_us_b64', '—')}",
        )
        for r in sorted(rows, key=lambda r: r["width"])
    ]


def dataset_section(out: Path, images: np.ndarray, rounds: int) -> list[tuple[str, str]]:
    """'Compress a dataset': the local engine on 10,000 digits (Ray: bench.dataset_throughput, minutes)."""
    from compressor.jobs.run import encode_dataset

    many = np.resize(images, (10_000, *images.shape[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp, "images.npy"), many)
        best = None
        for i in range(2):
            s = encode_dataset(
                [Path(tmp, "images.npy")], Path(tmp, f"{i}.parquet"), bundle=out / "bundle", runtime="litert"
            )
            best = s if best is None or s.seconds < best.seconds else best
    return [
        ("--engine local, 10,000 images: images/s (whole job, best of 2)", f"{best.images_per_second:,.0f}"),
        ("--engine local: B/image in the Parquet 'code' column", f"{best.bytes_per_image:.2f}"),
    ]


def mqtt_section(out: Path, images: np.ndarray, rounds: int) -> list[tuple[str, str]]:
    """'Over MQTT / LoRaWAN': payload bytes as ``compressor publish`` makes them (unnamed, default
    quality, short forms where the camera may use them), one camera's first 1,000 images and a
    camera whose numbers start at 3,000,000."""
    from compressor import Encoder
    from compressor.mqtt.publisher import encode_payloads

    enc = Encoder.load(out / "bundle" / "encoder", runtime="litert", precision="int8", threads=1)
    digits = np.resize(images, (1000, *images.shape[1:]))
    rows = []
    for first in (0, 3_000_000):
        seqs = list(range(first, first + len(digits)))
        items = encode_payloads(enc, digits, [str(q) for q in seqs], seqs, with_names=False)
        sizes = np.array([len(i.payload) for i in items if i.payload is not None])
        short = np.mean([bool(i.short) for i in items])
        rows.append(
            (
                f"payload, numbers {first:,}..{first + len(digits) - 1:,}: mean / max B (short form share)",
                f"{sizes.mean():.2f} / {sizes.max()} ({100 * short:.0f} %)",
            )
        )
        if not first:
            rows.insert(0, ("message alone, B/image", f"{np.mean([len(i.message) for i in items]):.2f}"))
    return rows


ELSEWHERE = [
    ("Ray engine throughput (the dataset table)", "python -m bench.dataset_throughput out/bundle"),
    (
        "MQTT throughput under faults",
        "python -m bench.mqtt_throughput out/bundle out/test_images.npy --count 1000 --fault none",
    ),
    ("tflite-runtime 2.14 vs ai-edge-litert", "python -m bench.tflite_runtime_check (tests/test_bench.py runs it)"),
    ("residual curve vs WebP/JPEG/PNG", "python -m bench.residual_curve BUNDLE IMAGES.npy"),
]


def _gray_images(out: Path, images: np.ndarray) -> np.ndarray:
    """The demo's grey test digits (``test_images_gray.npy``), or the binarized ones when it has none."""
    gray = out / "test_images_gray.npy"
    return np.load(gray) if gray.is_file() else images


def measure(out: Path, gray: Path | None, rounds: int, log: Callable[[str], None]) -> dict[str, dict]:
    images = np.load(out / "test_images.npy")
    sections: dict[str, Callable[[], list]] = {
        "Use on a device": lambda: device_section(out, images, rounds),
        "Lossless mode": lambda: lossless_section(out, images, rounds),
        "Residual codes": lambda: residual_section(gray, _gray_images(out, images), rounds),
        "Speed at batch 1": lambda: speed_section(out, images, rounds),
        "Model ladder (from the demo's run)": lambda: ladder_section(out, images, rounds),
        "Compress a dataset": lambda: dataset_section(out, images, rounds),
        "Over MQTT / LoRaWAN": lambda: mqtt_section(out, images, rounds),
    }
    results = {}
    for title, fn in sections.items():
        t0 = time.perf_counter()
        try:
            rows, error = fn(), None
        except Exception as e:  # one section's failure must not cost the others' figures
            rows, error = [], f"{type(e).__name__}: {e}"
        results[title] = {"rows": rows, "error": error, "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{title}: {'failed: ' + error if error else 'ok'} ({results[title]['seconds']} s)")
    return results


def markdown(results: dict[str, dict], command: str) -> str:
    lines = [f"Measured with `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", ""]
    for title, r in results.items():
        lines += [f"### {title}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in r["rows"]]
        if r["error"]:
            lines.append(f"| (not measured) | {r['error']} |")
        lines.append("")
    lines += [
        "### Measured by their own commands (minutes, or another environment)",
        "",
        "| figure | command |",
        "|---|---|",
    ]
    lines += [f"| {name} | `{cmd}` |" for name, cmd in ELSEWHERE]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from compressor.commands.help import HelpFormatter, epilog

    p = argparse.ArgumentParser(
        prog="python -m bench.readme_figures",
        description=__doc__.splitlines()[0],
        epilog=epilog(
            "python -m bench.readme_figures out/",
            "python -m bench.readme_figures out/ --gray bundle-gray --json out/figures.json",
            error="OUT has no bundle or test_images.npy, or a section failed (its row says why)",
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("out", help="the demo's output folder (bundle/, test_images.npy, run/, bundle-w0.5/, report/)")
    p.add_argument("--gray", help="a grayscale bundle, for the residual figures")
    p.add_argument("--rounds", type=int, default=100, help="timing rounds for the speed figures")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not (out / "bundle").is_dir() or not (out / "test_images.npy").is_file():
        print(f"{p.prog}: error: {out} has no bundle/ or test_images.npy; run ./tasks.sh demo first", file=sys.stderr)
        return 1
    results = measure(out, Path(args.gray) if args.gray else None, args.rounds, lambda m: print(m, file=sys.stderr))
    command = " ".join(["python -m bench.readme_figures", *(argv if argv is not None else sys.argv[1:])])
    print(markdown(results, command), end="")
    if args.json:
        from compressor.io.atomic import atomic_write_json

        atomic_write_json(args.json, results)
    return 1 if any(r["error"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
