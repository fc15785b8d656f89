"""Where binary lossless time goes at batch 1, and what a faster layout would cost in bytes.

    python -m bench.binary_floor BUNDLE IMAGES.npy [--timed 20]

Why: issue 12 asks binary lossless for <= 19 B per message and <= 18 B per image in a stream
*and* <= 1 ms per image (encode + decode, batch 1, one thread). The bytes need the encoder's
per-image step search (``compressor.binary_residual``): each step it tries is one run of the
int8 decoder network, because a pixel's table is chosen by the levels the receiver will compute.
This script measures, on one bundle and one image file:

1. bytes per message and per image in a stream at each fixed step, and with the search over the
   shipped window and over the table's step and its two neighbours only;
2. how many decoder runs the search makes per image, and what one batch-1 run takes here: the
   network floor of one searched encode + decode (encoder + searched runs + the receiver's run);
3. a layout that would skip the pixel loop where the receiver knows the answer: pixels whose
   3x3 neighbourhood of levels is all at the int8 floor (background the decoder is sure of),
   with escapes for the rare wrong ones. Printed: the share of pixels skipped, wrong skipped
   pixels per image, the ideal bits they cost today under the context table, and the ideal bits
   of escapes (count under its empirical distribution + a position among the skipped pixels).

Binarizes at 0.5 like ``bench.binary_targets``; never imported by ``compressor``.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np

from bench.binary_targets import _load
from compressor import Encoder, binary_residual
from compressor.coding import binary_context2 as B2
from compressor.coding.rangecoder import TOTAL


@contextlib.contextmanager
def _search_window(below: int, above: int, slack: float):
    """The encoder's lossless step window and slack for the duration of a measurement."""
    saved = binary_residual.STEP_WINDOW, binary_residual.SEARCH_SLACK
    binary_residual.STEP_WINDOW, binary_residual.SEARCH_SLACK = (below, above), slack
    try:
        yield
    finally:
        binary_residual.STEP_WINDOW, binary_residual.SEARCH_SLACK = saved


def _sizes(enc: Encoder, x: np.ndarray, **kw) -> str:
    """Lossless bytes per self-contained message / per image in one stream."""
    message = np.mean([len(m) for m in enc.compress(x, max_error=0, **kw)])
    return f"{message:.2f} / {len(enc.compress_stream(x, max_error=0, **kw)) / len(x):.2f}"


def _decoder_runs_per_image(enc: Encoder, x: np.ndarray) -> float:
    """Images the prediction network is run on, per image, by a batch-1 searched encode."""
    table = enc.coding.binary_context2
    net = enc.prediction_network(table.runtime, table.precision, "residual")
    runs = []
    levels = net.levels

    def counted(latents):
        runs.append(len(latents))
        return levels(latents)

    net.levels = counted  # an instance attribute over the method: the real network still runs
    try:
        for i in range(len(x)):
            enc.compress(x[i : i + 1], max_error=0)
    finally:
        del net.levels
    return sum(runs) / len(x)


def _best_us(fn, rounds: int = 200) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best


def _skip_rule(enc: Encoder, bits: np.ndarray) -> dict:
    table = enc.coding.binary_context2
    net = enc.prediction_network(table.runtime, table.precision, "residual")
    index = table.step_index
    levels = net.levels(enc.quantize(enc.latents(bits.astype(np.float32)), index) * enc.coding.steps[index])[..., 0]
    n = len(bits)
    f = table.freq_array[B2.contexts(bits, levels)] / TOTAL
    cost = np.where(bits, -np.log2(f), -np.log2(1 - f))
    padded = np.pad(levels.astype(np.int16), ((0, 0), (1, 1), (1, 1)), mode="edge")
    window = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    skip = window.max(axis=(-1, -2)) == -128
    wrong = (skip & bits).reshape(n, -1).sum(axis=1)  # a sure background pixel that is ink
    counts = np.bincount(wrong)
    p = counts[wrong] / n
    escape_bits = -np.log2(p) + wrong * np.log2(np.maximum(skip.reshape(n, -1).sum(axis=1), 2))
    return {
        "skipped_share": float(skip.mean()),
        "wrong_skipped_per_image": float(wrong.mean()),
        "their_bits_today": float(cost[skip].sum() / n),
        "escape_bits": float(escape_bits.mean()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("images")
    p.add_argument("--timed", type=int, default=20, help="images for the run count and the timing")
    args = p.parse_args(argv)
    enc = Encoder.load(f"{args.bundle}/encoder", runtime="litert", threads=1)
    table = enc.coding.binary_context2
    if table is None:
        raise SystemExit(f"{args.bundle} has no binary_context2 table: export a binary model with this version")
    bits = _load(args.images)
    x = bits.astype(np.float32)
    print(f"{len(x)} images; bytes per message / per image in a stream, lossless")
    for i, s in enumerate(enc.steps):
        mark = "  (the table's step)" if i == table.step_index else ""
        print(f"  step {s:<6} {_sizes(enc, x, step=s)}{mark}")
    below, above = binary_residual.STEP_WINDOW
    print(f"  searched, window -{below}..+{above} (shipped)  {_sizes(enc, x)}")
    with _search_window(1, 1, float("-inf")):
        print(f"  searched, the table's step and its neighbours only  {_sizes(enc, x)}")
    sub = x[: args.timed]
    runs = _decoder_runs_per_image(enc, sub)
    net = enc.prediction_network(table.runtime, table.precision, "residual")
    latent = enc.quantize(enc.latents(sub[:1]), table.step_index) * enc.coding.steps[table.step_index]
    dec_us = _best_us(lambda: net.levels(latent))
    enc_us = _best_us(lambda: enc.latents(sub[:1]))
    floor = enc_us + (runs + 1) * dec_us
    print(
        f"search: {runs:.2f} decoder runs per image; one batch-1 decoder run {dec_us:.0f} µs, encoder run "
        f"{enc_us:.0f} µs: networks of a searched encode + decode = {floor / 1e3:.2f} ms per image"
    )
    print("skip rule (3x3 levels at -128):", {k: round(v, 3) for k, v in _skip_rule(enc, bits).items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
