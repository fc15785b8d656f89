"""Issue 13's speed and size targets, measured in one run on this machine.

    python -m bench.speed_targets --bundle out/bundle --images out/test_images.npy \
        [--run out/run] [--small out/bundle-w0.5] [--rounds 200]

Prints one table (and ``--json`` writes the figures):

- the CLI's joint stream of a ``.npy`` (``compressor encode --joint``): file size ÷ N against
  the payload bytes per image;
- the API overhead per round trip at batch 1: ``decompress(compress(x))`` minus the int8
  encoder and decoder invokes;
- the int8 LiteRT decoder at batch 1 (µs and GMAC/s, MACs from the bundle manifest);
- the whole codec at batch 1, one thread (the round trip above);
- the int8 decoder against the Keras model as a ``tf.function`` at batch 1 (``--run``): both
  timed in turns in one child process, ``bench.keras_ratio``, so this one never imports
  TensorFlow and the ratio does not depend on how loaded the machine was at two moments;
- a width-0.5 bundle (``--small``): its decoder µs at batch 1 and its pixel error against
  the default bundle's.

Every time is the best of many short rounds, and the things compared are timed in turns
within one run, so a loaded machine slows all of them alike and the ratios hold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.ladder import best_us_interleaved
from compressor import Decoder, Encoder, wire
from compressor.bundle import load_manifest
from compressor.metrics import pixel_error

#: (what, figure of the issue on its 2-core AVX2 VM, target, comparison, target value)
TARGETS = {
    "cli_joint_bytes_over_payload": ("CLI joint stream of a .npy: B/image minus payload B/image", "12.9", "<= 0.1"),
    "overhead_us": ("API overhead per round trip, batch 1 (µs)", "≈ 200", "<= 40"),
    "decoder_us_b1": ("int8 LiteRT decoder, batch 1 (µs)", "190–230", "<= 120"),
    "decoder_gmac_s_b1": ("int8 LiteRT decoder, batch 1 (GMAC/s)", "≈ 23", ">= 40"),
    "codec_us_b1": ("whole codec, int8 LiteRT, batch 1, one thread (µs)", "400–480", "<= 200"),
    "keras_over_int8_b1": ("Keras tf.function / int8 decoder, batch 1 (×)", "5", ">= 10"),
    "small_decoder_us_b1": ("width 0.5: int8 decoder, batch 1 (µs)", "—", "<= 60"),
    "small_pixel_error_pp": ("width 0.5: pixel error minus width 1 (pp)", "—", "<= 0.5"),
}


def cli_joint(bundle: str, images_npy: str) -> dict:
    """Run ``compressor encode --joint`` on the .npy as a user would; sizes per image."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "codes.lzc")
        proc = subprocess.run(
            [sys.executable, "-m", "compressor.cli", "encode", images_npy, "-o", str(out)]
            + ["--bundle", bundle, "--joint"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compressor encode failed: {proc.stderr.strip()}")
        data = out.read_bytes()
    stream = wire.unpack_stream(data)
    n = stream.count
    payload = sum(map(len, stream.payloads)) / n
    return {
        "images": n,
        "file_bytes_per_image": round(len(data) / n, 3),
        "payload_bytes_per_image": round(payload, 3),
        "cli_joint_bytes_over_payload": round(len(data) / n - payload, 3),
        "cli_stderr": proc.stderr.strip(),
    }


def codec(bundle: str, images: np.ndarray, small: str | None, rounds: int) -> dict:
    """Overhead, decoder and whole-codec times at batch 1, and the small model beside it."""
    enc = Encoder.load(Path(bundle) / "encoder", runtime="litert", precision="int8", threads=1)
    dec = Decoder.load(Path(bundle) / "decoder", runtime="litert", precision="int8", threads=1)
    one = images[:1]
    messages = enc.compress(one)
    enc_sess = enc.network.session(next(f for f in enc.network.files if f.batch == 1))
    dec_sess = dec.network.session(next(f for f in dec.network.files if f.batch == 1))
    xe = np.zeros(enc_sess.input.shape, np.dtype(enc_sess.input.dtype))
    xd = np.zeros(dec_sess.input.shape, np.dtype(dec_sess.input.dtype))
    fns = {
        "encoder_invoke": lambda: enc_sess.run(xe),
        "decoder_invoke": lambda: dec_sess.run(xd),
        "compress": lambda: enc.compress(one),
        "decompress": lambda: dec.decompress(messages),
        "round_trip": lambda: dec.decompress(enc.compress(one)),
    }
    out: dict = {}
    if small:
        sdec = Decoder.load(Path(small) / "decoder", runtime="litert", precision="int8", threads=1)
        sess = sdec.network.session(next(f for f in sdec.network.files if f.batch == 1))
        xs = np.zeros(sess.input.shape, np.dtype(sess.input.dtype))
        fns["small_decoder_invoke"] = lambda: sess.run(xs)
        senc = Encoder.load(Path(small) / "encoder", runtime="litert", precision="int8", threads=1)
        err_small = pixel_error(images, sdec.decompress(senc.compress_stream(images, joint=True)))
        err = pixel_error(images, dec.decompress(enc.compress_stream(images, joint=True)))
        out |= {
            "pixel_error_%": round(100 * err, 3),
            "small_pixel_error_%": round(100 * err_small, 3),
            "small_pixel_error_pp": round(100 * (err_small - err), 3),
            "small_width": load_manifest(small).get("width"),
        }
    best = best_us_interleaved(fns, rounds=rounds)
    macs = int(load_manifest(bundle)["macs"]["decoder"])
    out |= {
        "times_us": best,
        "overhead_us": round(best["round_trip"] - best["encoder_invoke"] - best["decoder_invoke"], 1),
        "decoder_us_b1": best["decoder_invoke"],
        "decoder_macs": macs,
        "decoder_gmac_s_b1": round(macs / best["decoder_invoke"] / 1e3, 1),
        "codec_us_b1": best["round_trip"],
    }
    if small:
        out["small_decoder_us_b1"] = best["small_decoder_invoke"]
    return out


def keras_ratio(run: str, bundle: str, rounds: int) -> dict:
    """Keras decoder (tf.function, one thread, batch 1) and int8 decoder timed in turns, from a
    child process (``bench.keras_ratio``); empty when TensorFlow is missing or the child fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.keras_ratio", run, bundle, "--rounds", str(rounds)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"bench.keras_ratio failed: {proc.stderr.strip()[-2000:]}", file=sys.stderr)
        return {}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "keras_us" not in result:
        return {}
    return {
        "keras_decoder_us_b1": result["keras_us"],
        "int8_decoder_us_b1_beside_keras": result["int8_us"],
        "keras_over_int8_b1": result["keras_over_int8"],
    }


def _met(value, target: str) -> str:
    if value is None:
        return "not measured"
    op, bound = target.split()
    ok = value <= float(bound) if op == "<=" else value >= float(bound)
    return "✓" if ok else "✗"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default="out/bundle", help="full bundle (default: %(default)s)")
    p.add_argument("--images", default="out/test_images.npy", help="uint8 (N, H, W) .npy (default: %(default)s)")
    p.add_argument("--run", help="training run of the bundle, for the Keras comparison (needs TensorFlow)")
    p.add_argument("--small", help="a width-0.5 bundle trained on the same data")
    p.add_argument("--rounds", type=int, default=200, help="timing rounds (default: %(default)s)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    images = np.load(args.images)
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    figures = cli_joint(args.bundle, args.images) | codec(args.bundle, x, args.small, args.rounds)
    if args.run:
        figures |= keras_ratio(args.run, args.bundle, args.rounds)
    print("| what | issue (AVX2 VM) | here | target | met |\n|---|---|---|---|---|")
    for key, (what, today, target) in TARGETS.items():
        value = figures.get(key)
        print(f"| {what} | {today} | {'—' if value is None else value} | {target} | {_met(value, target)} |")
    print(f"\ntimes (µs, best of {args.rounds} rounds, in turns): {json.dumps(figures['times_us'])}")
    if "keras_decoder_us_b1" in figures:
        print(
            f"Keras tf.function vs int8 decoder, batch 1, in turns in one process: {figures['keras_decoder_us_b1']} "
            f"vs {figures['int8_decoder_us_b1_beside_keras']} µs"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
