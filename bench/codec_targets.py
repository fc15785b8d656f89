"""Measure the codec's targets: bytes per image, pixel error, coding and codec latency.

    python -m bench.codec_targets BUNDLE IMAGES.npy [--runtime litert] [--repeat 2000]

Needs only ``compressor`` and a runtime. Prints JSON:

- ``rate_distortion``: per step, mean bytes per image of a joint stream and of a stream
  with per-image lengths (all framing included) and of self-contained messages, and the
  pixel error of the int8 round trip;
- ``coding_us``: entropy coding + framing of one image (encode, and unframe + decode);
- ``codec_us``: the whole path for one image at batch 1 on one thread: encoder network,
  quantization, coding, framing, unframing, decoding and decoder network;
- ``lossless``: lossless mode on the binarized images: exact round trip, bytes per image
  (messages and stream) and encode/decode µs per image (batched, one thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from compressor import Decoder, Encoder, wire
from compressor.metrics import pixel_error


def _best_us(fn, repeat: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return round(best * 1e6, 2)


def measure(bundle: str, images: np.ndarray, runtime: str = "litert", repeat: int = 2000) -> dict:
    enc = Encoder.load(bundle, runtime=runtime, precision="int8", threads=1)
    dec = Decoder.load(bundle, runtime=runtime, precision="int8", threads=1)
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    rd = []
    for step in enc.steps:
        stream = enc.compress_stream(x, step=step)
        joint = enc.compress_stream(x, step=step, joint=True)
        messages = enc.compress(x, step=step)
        probs = dec.decompress(stream)
        rd.append(
            {
                "step": step,
                "joint_stream_bytes_per_image": round(len(joint) / len(x), 3),
                "stream_bytes_per_image": round(len(stream) / len(x), 3),
                "message_bytes_per_image": round(float(np.mean([len(m) for m in messages])), 3),
                "pixel_error_%": round(100 * pixel_error(x, probs), 3),
            }
        )
    index = enc.coding.default_index
    symbols = enc.symbols(x, step=enc.steps[index])
    mid = enc.coding.model_id
    messages = [wire.pack_message(mid, "entropy", index, enc.coding.encode_one(s, index, "entropy")) for s in symbols]
    k = iter(range(10**9))
    n = len(symbols)

    def encode_one():
        i = next(k) % n
        wire.pack_message(mid, "entropy", index, enc.coding.encode_one(symbols[i], index, "entropy"))

    def decode_one():
        i = next(k) % n
        h, payload = wire.unpack_message(mid, messages[i])
        dec.coding.decode_one(payload, h.step_index, h.mode)

    one = x[:1]

    def codec_one():
        m = enc.compress(one)
        dec.decompress(m)

    return {
        "lossless": lossless_point(enc, dec, x),
        "runtime": enc.runtime,
        "images": len(x),
        "default_step": enc.steps[index],
        "rate_distortion": rd,
        "coding_us": {
            "encode_and_frame": _best_us(encode_one, repeat),
            "unframe_and_decode": _best_us(decode_one, repeat),
        },
        "codec_us": {"batch1_one_thread": _best_us(codec_one, max(50, repeat // 10))},
    }


def lossless_point(enc: Encoder, dec: Decoder, x: np.ndarray, rounds: int = 1) -> dict:
    """Lossless mode on the same images: exact?, bytes per image, encode/decode µs per image."""
    table = enc.coding.lossless
    if table is None:
        return {"status": "not available", "reason": "the bundle has no lossless table (grayscale model)"}
    if (dec.runtime, dec.network.precision) != (table.runtime, table.precision):
        return {"status": "not available", "reason": f"lossless codes need {table.runtime} {table.precision}"}
    binary = np.where(x >= 0.5, 255, 0).astype(np.uint8)
    enc_s = dec_s = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        messages = enc.compress(binary, mode="lossless")
        t1 = time.perf_counter()
        out = dec.decompress(messages)
        t2 = time.perf_counter()
        enc_s, dec_s = min(enc_s, t1 - t0), min(dec_s, t2 - t1)
    stream = enc.compress_stream(binary, mode="lossless")
    return {
        "status": "ok",
        "exact": bool(np.array_equal(out, binary)),
        "step": enc.steps[table.step_index],
        "message_bytes_per_image": round(float(np.mean([len(m) for m in messages])), 3),
        "stream_bytes_per_image": round(len(stream) / len(x), 3),
        "encode_us": round(enc_s / len(x) * 1e6, 1),
        "decode_us": round(dec_s / len(x) * 1e6, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("images", help=".npy of uint8 (N, H, W) test images")
    p.add_argument("--runtime", default="litert")
    p.add_argument("--repeat", type=int, default=2000)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.bundle, np.load(args.images), args.runtime, args.repeat), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
