"""Issue 12's binary targets in one run: lossless bytes, the near-lossless curve, speed.

    python -m bench.binary_targets BUNDLE IMAGES.npy [--old OLD_BUNDLE] [--json OUT.json]

``IMAGES.npy``: the mnist5k test split (uint8 or float (N, 28, 28[, 1]); binarized at 0.5).
``BUNDLE``: a binary model exported with a ``binary_context2`` table (layout 2). Prints:

- lossless, bytes per self-contained message and per image in a stream: layout 2 with the
  encoder's per-image step search, layout 2 at the table's step only (what the search
  buys), mode 2, and layout 1 when ``--old`` names a bundle that has it;
- the near-lossless curve: bytes and pixel error for ``mean_error`` (the shortest codes with at
  most that fraction of all the split's pixels wrong: the images share the budget, coded in
  one call), ``target_error`` (per image, at most that fraction wrong) and plain bands, from
  the lossy floor (latent only) to lossless;
- encode + decode time per image at batch 1 on one thread (networks included), lossless;
  near-lossless encode time per image at batch 64 (``target_error``/``mean_error`` 0.01).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from compressor import Decoder, Encoder

TARGETS = (0.005, 0.01, 0.02)
MEAN_TARGETS = (0.0, 0.0025, 0.005, 0.01, 0.0125, 0.015, 0.02, 0.03)
BANDS = (0, 16, 32)


def _load(images: str) -> np.ndarray:
    x = np.load(images)
    x = x.reshape(len(x), *x.shape[1:3])
    return (x > 127) if x.dtype == np.uint8 else (x > 0.5)


def _row(name, messages, stream, out, bits) -> dict:
    return {
        "code": name,
        "message_bytes": round(float(np.mean([len(m) for m in messages])), 2),
        "stream_bytes_per_image": None if stream is None else round(len(stream) / len(bits), 2),
        "pixel_error_%": round(100 * float(np.mean(out != bits)), 3),
    }


def _ms_per_image(fn, images: np.ndarray, rounds: int = 3) -> float:
    """Median over images of the best of ``rounds`` runs of ``fn(one image)``, in ms."""
    times = []
    for i in range(len(images)):
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn(images[i : i + 1])
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    return round(1e3 * float(np.median(times)), 3)


def measure(bundle: str, bits: np.ndarray, old: str | None = None, timed: int = 30, curve: bool = True) -> dict:
    enc = Encoder.load(f"{bundle}/encoder", runtime="litert", threads=1)
    dec = Decoder.load(f"{bundle}/decoder", runtime="litert", threads=1)
    table = enc.coding.binary_context2
    if table is None:
        raise SystemExit(f"{bundle} has no binary_context2 table: export a binary model with this version")
    x = bits.astype(np.float32)
    rows = []

    def residual(name, **kw):
        m = enc.compress(x, **kw)
        s = enc.compress_stream(x, **kw)
        out = dec.decompress(m) > 127
        assert np.array_equal(dec.decompress(s) > 127, out), "stream and messages decode alike"
        rows.append(_row(name, m, s, out, bits))

    residual("lossless, step searched per image", max_error=0)
    residual(f"lossless, table step {enc.steps[table.step_index]}", max_error=0, step=enc.steps[table.step_index])
    m = enc.compress(x, mode="lossless")
    rows.append(_row("lossless mode 2", m, enc.compress_stream(x, mode="lossless"), dec.decompress(m) > 127, bits))
    if old:
        oenc = Encoder.load(f"{old}/encoder", runtime="litert", threads=1)
        odec = Decoder.load(f"{old}/decoder", runtime="litert", threads=1)
        m = oenc.compress(x, band=127)
        s = oenc.compress_stream(x, band=127)
        rows.append(_row("lossless layout 1 (--old)", m, s, odec.decompress(m) > 127, bits))
    points = []
    for step in enc.steps[::-3] if curve else ():
        m = enc.compress(x, step=step)
        points.append(_row(f"latent only, step {step}", m, None, dec.decompress(m) >= 0.5, bits))
    for band in BANDS if curve else ():
        m = enc.compress(x, band=band)
        points.append(_row(f"band {band}", m, None, dec.decompress(m) > 127, bits))
    for t in MEAN_TARGETS if curve else ():
        m = enc.compress(x, mean_error=t)
        points.append(_row(f"mean_error {t}", m, None, dec.decompress(m) > 127, bits))
    for t in TARGETS if curve else ():
        m = enc.compress(x, target_error=t)
        points.append(_row(f"target_error {t}", m, None, dec.decompress(m) > 127, bits))
    sub = x[:timed]
    timing = {
        "lossless_searched_batch1_ms": _ms_per_image(lambda im: dec.decompress(enc.compress(im, max_error=0)), sub),
        "lossless_table_step_batch1_ms": _ms_per_image(
            lambda im: dec.decompress(enc.compress(im, max_error=0, step=enc.steps[table.step_index])), sub
        ),
        "mode2_batch1_ms": _ms_per_image(lambda im: dec.decompress(enc.compress(im, mode="lossless")), sub),
    }
    if timed:
        for knob in ("target_error", "mean_error"):
            t0 = time.perf_counter()
            enc.compress(x[:64], **{knob: 0.01})
            timing[f"{knob}_0.01_encode_batch64_ms"] = round(1e3 * (time.perf_counter() - t0) / len(x[:64]), 1)
    return {"images": len(bits), "lossless": rows, "near_lossless": points, "timing": timing}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("images")
    p.add_argument("--old", help="a bundle with a layout-1 binary_context table, for comparison")
    p.add_argument("--timed", type=int, default=30, help="images timed at batch 1")
    p.add_argument("--no-curve", action="store_true", help="lossless and timing only (the curve takes minutes)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    res = measure(args.bundle, _load(args.images), args.old, args.timed, not args.no_curve)
    print(f"{res['images']} images")
    print(f"{'code':>40} {'msg B':>7} {'stream B':>9} {'pixel err %':>11}")
    for r in res["lossless"] + res["near_lossless"]:
        s = "" if r["stream_bytes_per_image"] is None else f"{r['stream_bytes_per_image']:.2f}"
        print(f"{r['code']:>40} {r['message_bytes']:>7.2f} {s:>9} {r['pixel_error_%']:>11.3f}")
    print("timing, encode + decode per image, batch 1, one thread:", json.dumps(res["timing"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
