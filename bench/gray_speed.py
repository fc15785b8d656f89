"""Grayscale lossless speed (issue 12, item 7): the whole codec and the residual coder alone.

    python -m bench.gray_speed BUNDLE GREY_IMAGES.npy [--rounds 20]   # e.g. out/test_images_gray.npy
    python -m bench.gray_speed BUNDLE --natural [--rounds 20]

Prints ms per image at batch 1 (16 images, each its own call) and at batch 64:

- ``codec``: ``Encoder.compress(x, max_error=0)`` and ``Decoder.decompress`` (networks,
  quantization, framing and the residual coder; targets: enc + dec <= 2 ms at batch 1,
  <= 0.5 ms at batch 64);
- ``coder``: only :func:`~compressor.coding.residual.encode_choosing_set` and
  :func:`~compressor.coding.residual.finish_decoding`, replayed on the arguments the codec
  passed them, to see the coder's share without the networks.

``--natural``: 28x28 crops of a photo (:func:`bench.residual_curve.natural_crops`) instead of
``IMAGES.npy``: the content table set 1 is for (every crop takes it), where grey digits take
set 0 (the decoder's prediction; every test digit of the demo's model does).

Images with two values only (binarized digits such as the demo's ``out/test_images.npy``) are
refused: on them the spatial predictor is nearly free and the coder has a fraction of a grey
image's work, so their figures flattered the grayscale targets (0.65 against 0.95 ms per grey
digit at batch 64 in the session that found it).

Every figure is the best of ``--rounds`` rounds, everything timed in turns, so a loaded
machine slows all figures alike.
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np

from bench.ladder import best_us_interleaved
from bench.residual_curve import natural_crops
from compressor import Decoder, Encoder
from compressor.coding import residual


def _captured(enc: Encoder, dec: Decoder, batches: list[np.ndarray]):
    """The coder calls the codec makes for ``batches``: per batch, ``(encode calls, decode calls)``
    (one decode call per error bound: a batch that mixes the table sets decodes them together)."""
    calls = {"enc": [], "dec": []}
    encode, finish = residual.encode_choosing_set, residual.finish_decoding

    def spy_encode(*a, **k):
        calls["enc"].append((a, k))
        return encode(*a, **k)

    def spy_finish(decoders, *a, **k):
        calls["dec"].append(([copy.copy(d) for d in decoders], a, k))
        return finish(decoders, *a, **k)

    residual.encode_choosing_set, residual.finish_decoding = spy_encode, spy_finish
    try:
        out = []
        for b in batches:
            calls["enc"], calls["dec"] = [], []
            dec.decompress(enc.compress(b, max_error=0))
            out.append((calls["enc"], calls["dec"]))
    finally:
        residual.encode_choosing_set, residual.finish_decoding = encode, finish
    return out


def measure(bundle: str, images: np.ndarray, rounds: int = 20, runtime: str = "litert") -> dict:
    enc = Encoder.load(f"{bundle}/encoder", runtime=runtime)
    dec = Decoder.load(f"{bundle}/decoder", runtime=runtime)
    singles = [images[i : i + 1] for i in range(16)]
    batch = images[:64]
    codes1 = [enc.compress(x, max_error=0) for x in singles]
    code64 = enc.compress(batch, max_error=0)
    coder = _captured(enc, dec, [*singles, batch])

    def run_encode(batches):
        for calls, _ in batches:
            for a, k in calls:
                residual.encode_choosing_set(*a, **k)

    def run_decode(batches):
        for _, calls in batches:
            for decoders, a, k in calls:
                residual.finish_decoding([copy.copy(d) for d in decoders], *a, **k)

    fns = {
        "codec enc 1": lambda: [enc.compress(x, max_error=0) for x in singles],
        "codec dec 1": lambda: [dec.decompress(c) for c in codes1],
        "codec enc 64": lambda: enc.compress(batch, max_error=0),
        "codec dec 64": lambda: dec.decompress(code64),
        "coder enc 1": lambda: run_encode(coder[:16]),
        "coder dec 1": lambda: run_decode(coder[:16]),
        "coder enc 64": lambda: run_encode(coder[16:]),
        "coder dec 64": lambda: run_decode(coder[16:]),
    }
    us = best_us_interleaved(fns, rounds=rounds, calls=1)
    per_image = {k: round(v / 1000 / (16 if k.endswith(" 1") else len(batch)), 3) for k, v in us.items()}
    for what in ("codec", "coder"):
        for b in ("1", "64"):
            per_image[f"{what} enc+dec {b}"] = round(per_image[f"{what} enc {b}"] + per_image[f"{what} dec {b}"], 3)
    return per_image


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("images", nargs="?", help="uint8 (N, H, W) .npy; omit with --natural")
    ap.add_argument("--natural", action="store_true", help="28x28 crops of a photo instead")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runtime", default="litert")
    args = ap.parse_args(argv)
    if args.natural == (args.images is not None):
        ap.error("give IMAGES.npy or --natural (one of them)")
    images = natural_crops() if args.natural else np.load(args.images)
    if len(np.unique(images)) <= 2:
        raise SystemExit(
            f"{args.images} holds two values only (binarized images): the grayscale targets are on grey "
            "images; give out/test_images_gray.npy (the demo writes it) or --natural"
        )
    if len(images) < 64:
        raise SystemExit("gray_speed needs at least 64 images (one batch of 64)")
    print(json.dumps({"ms_per_image": measure(args.bundle, images, args.rounds, args.runtime)}, indent=1))


if __name__ == "__main__":
    main()
