"""Binary residual codes of layout 2 (bundles with a ``binary_context2`` table) for the codec.

The encoder's choices live here; the decoder only reads what the payload says
(:mod:`compressor.coding.binary_context2`):

- **step per image**: unless ``step``/``quality`` is given, steps within :data:`STEP_WINDOW`
  of the table's step are tried and each image keeps the one whose whole code is shortest
  (lossless codes: ideal bits, estimated in numpy for the steps :data:`SEARCH_SLACK` lets
  through, and only the winner is range coded; ``band`` codes: real bytes at every step);
- **target_error / mean_error** (near-lossless, :mod:`compressor.binary_rd`): refined latents,
  greedy wrong pixels, and per image the shortest code with at most ``target_error`` wrong
  pixels, or for the whole call at most ``mean_error`` of all pixels wrong (both may be
  given: a mean over the call with a cap per image). Lossless is always among the choices,
  so every image gets a code, and ``0`` is lossless.
"""

from __future__ import annotations

import numbers

import numpy as np

from compressor import binary_rd
from compressor.coding import binary_context2 as B2
from compressor.coding.binary_context import LOSSLESS_BAND
from compressor.coding.latent_cost import latent_bits
from compressor.errors import LosslessMismatchError, RateError
from compressor.io.arrays import as_batch

STEP_WINDOW = (2, 3)
"""Steps tried below and above the table's step for lossless codes. On the mnist5k test split (500 images, all
candidates tried) the winners lean to coarser steps (-3: 13 images, -2: 27, -1: 93, 0: 144,
+1: 117, +2: 71, +3: 35), so dropping -3 gives up 0.012 B/image against +-3 (which gets ~93 %
of what trying all 16 saves; +-1 ~60 %); each step tried costs one decoder run per image."""
NEAR_WINDOW = (3, 3)
"""Steps tried below and above the table's step for ``band`` codes (real bytes at every step)."""
SEARCH_SLACK = 12.0
"""The lossless step search tries the table's step and its two neighbours for every image,
and the rest of a side only where that neighbour's whole code is within this many bits of
the image's best so far (the cost over the step has local bumps, so a plain descent gives up
more). On the mnist5k test split (500 images, bench/binary_targets.py): 5.3 steps tried per
image for 18.71 B/message and 17.98 B/image in a stream; all 6 steps: 18.70 and 17.96; slack
8: 4.9 steps, 18.75 and 18.00; slack 0: 4.0 steps, 18.81 and 18.03 (+-3, all 7: 18.68 and
17.95). Each step tried is one decoder invoke (~0.06-0.09 ms), the search's main cost."""


NEAR_CHUNK = 256
"""Images per near-lossless search: the search keeps a few hundred candidate codes per image
(:mod:`compressor.binary_rd`), so a big call runs in chunks of this many, each within its share
of a ``mean_error`` budget (so the call's mean is within it too; across chunks the budget is
not traded, which costs little at this size) and memory stays bounded whatever the call."""


def encode(encoder, images, step, quality, max_error, target_psnr, band, target_error, stream, mean_error=None):
    """``[(header step index, payload)]``; in a stream every header index is the same."""
    table = encoder.coding.binary_context2
    if target_psnr is not None:
        raise RateError(
            "target_psnr= is for grayscale models; binary models take band=, target_error=, mean_error= or max_error=0"
        )
    near = target_error is not None or mean_error is not None
    if sum(x is not None for x in (max_error, band)) + near > 1:
        raise RateError(
            "give one of max_error=0 (lossless), band= or target_error=/mean_error= (those two may go together: "
            "a mean over the call with a cap per image)"
        )
    if max_error is not None and (isinstance(max_error, bool) or max_error != 0):
        raise RateError(
            f"binary models have no grey levels to bound: max_error must be 0 (lossless), got {max_error!r}; "
            "for fewer bytes with a few wrong pixels use target_error= (a fraction) or band= (0..127)"
        )
    if target_error is not None and (
        isinstance(target_error, bool) or not isinstance(target_error, numbers.Real) or not 0 <= target_error <= 1
    ):
        raise RateError(f"target_error must be a fraction of wrong pixels in 0..1, got {target_error!r}")
    if mean_error is not None and (
        isinstance(mean_error, bool) or not isinstance(mean_error, numbers.Real) or not 0 <= mean_error <= 1
    ):
        raise RateError(f"mean_error must be a fraction of all pixels in 0..1, got {mean_error!r}")
    band = LOSSLESS_BAND if band is None else band
    if isinstance(band, bool) or not isinstance(band, (int, np.integer)) or not 0 <= band <= LOSSLESS_BAND:
        raise RateError(f"band must be an integer 0..127 (127 = lossless), got {band!r}")
    bits = as_batch(images, shape=encoder.part.image_shape) > 0.5
    bits = bits.reshape(len(bits), *encoder.part.image_shape)
    coding = encoder.coding
    n_steps = len(coding.steps)
    if step is None and quality is None:
        base = table.step_index
        below, above = STEP_WINDOW if band == LOSSLESS_BAND else NEAR_WINDOW
        candidates = list(range(max(0, base - below), min(n_steps, base + above + 1)))
    else:
        base = coding.step_index(step, quality)
        candidates = [base]
    if near:
        pixels = bits[0].size
        cap = None if target_error is None else int(target_error * pixels)
        steps = binary_rd.search_steps(base, n_steps) if step is None and quality is None else [base]
        out = []
        for at in range(0, len(bits), NEAR_CHUNK):  # each chunk within its share: the call's mean holds too
            part = bits[at : at + NEAR_CHUNK]
            budget = None if mean_error is None else mean_error * pixels * len(part)
            out += binary_rd.encode(encoder, part, steps, base, stream, cap, budget)
        return out
    latents = encoder.latents(bits.astype(np.float32))
    net = encoder.prediction_network(table.runtime, table.precision, "residual")
    header = base  # a stream's one header step (lossless streams choose it below)
    n = len(bits)
    symbols = {c: encoder.quantize(latents, c) for c in candidates}
    if band == LOSSLESS_BAND:
        if len(candidates) == 1:  # nothing to choose: the levels only
            cost = np.zeros((1, n))
            levels = {base: net.levels(symbols[base] * coding.steps[base])[..., 0]}
        else:
            cost, levels = _searched_costs(table, coding, net, bits, symbols, candidates, candidates.index(base))
        heads = [base] if not stream or len(candidates) == 1 else candidates
        best_total, best = None, None
        for h in heads:  # a stream's header step: the one that makes the whole stream shortest
            total_by_step = cost + np.array([[_step_bits(c, h if stream else c, n_steps)] for c in candidates])
            total = total_by_step.min(axis=0).sum()
            if best_total is None or total < best_total:
                best_total, best, header = total, total_by_step.argmin(axis=0), h
        out = []
        for i in range(n):
            c = candidates[best[i]]
            payload, _ = B2.encode_one(
                c,
                header if stream else c,
                n_steps,
                symbols[c][i],
                bits[i],
                levels[c][i],
                coding.tables[c],
                table,
                LOSSLESS_BAND,
            )
            out.append((header if stream else c, payload))
        return out
    levels = {c: net.levels(symbols[c] * coding.steps[c])[..., 0] for c in candidates}

    return [
        min(
            (_band_code(encoder, i, c, header if stream else c, symbols, bits, levels, band) for c in candidates),
            key=lambda x: len(x[1]),
        )
        for i in range(n)
    ]


def _band_code(encoder, i, c, head, symbols, bits, levels, band) -> tuple[int, bytes]:
    """(header index, payload) of image ``i`` at step ``c`` and ``band``."""
    coding = encoder.coding
    payload, _ = B2.encode_one(
        c,
        head,
        len(coding.steps),
        symbols[c][i],
        bits[i],
        levels[c][i],
        coding.tables[c],
        coding.binary_context2,
        int(band),
    )
    return head, payload


def _searched_costs(table, coding, net, bits, symbols, candidates, start, slack=None):
    """Ideal bits (latent + pixels) of each image's lossless code at each candidate step
    ((steps, N), ``inf`` where not tried) and the levels computed on the way ({step: (N, H, W)},
    rows of untried images left zero).

    Two rounds rather than a sweep: each image tries the start step and its two neighbours,
    then the rest of a side only where that neighbour is within ``slack`` bits
    (:data:`SEARCH_SLACK`) of its best so far. Each round is one stacked run of the decoder
    network (one invoke per image and step, as the receiver runs it) and one numpy pass for
    the pixel costs of every (image, step) it tries."""
    slack = SEARCH_SLACK if slack is None else slack
    n, k = len(bits), len(candidates)
    cost = np.full((k, n), np.inf)
    levels = {c: np.zeros(bits.shape, np.int8) for c in candidates}
    nbrs = B2.neighbour_part(bits)

    def evaluate(groups) -> None:
        """Cost of image ``idx`` at candidate ``j`` for every ``(j, idx)`` of ``groups``."""
        steps = [candidates[j] for j, _ in groups]
        lv = net.levels(np.concatenate([symbols[c][idx] * coding.steps[c] for c, (_, idx) in zip(steps, groups)]))
        lv = lv[..., 0]
        every = np.concatenate([idx for _, idx in groups])
        pixels = B2.pixel_bits_given(table, bits[every], nbrs[every], lv)
        pos = 0
        for c, (j, idx) in zip(steps, groups):
            end = pos + len(idx)
            levels[c][idx] = lv[pos:end]
            cost[j, idx] = latent_bits(symbols[c][idx], coding.tables[c]) + pixels[pos:end]
            pos = end

    everyone = np.arange(n)
    evaluate([(j, everyone) for j in (start - 1, start, start + 1) if 0 <= j < k])
    near = cost.min(axis=0) + slack  # then the rest of a side for the images whose end there is near their best
    down = np.flatnonzero(cost[start - 1] <= near) if start >= 2 else everyone[:0]
    up = np.flatnonzero(cost[start + 1] <= near) if start + 2 < k else everyone[:0]
    groups = [(j, down) for j in range(start - 1) if len(down)] + [(j, up) for j in range(start + 2, k) if len(up)]
    if groups:
        evaluate(groups)
    return cost, levels


def _step_bits(index: int, head: int, n_steps: int) -> float:
    return B2.header_bits(index, head, n_steps, LOSSLESS_BAND)


def finish(decoder, decoded, states) -> np.ndarray:
    """Phase 2: uint8 (N, H, W) in {0, 255}; ``states`` from the payloads' first phase."""
    t = decoder.coding.binary_context2
    net = decoder.network
    if (net.runtime, net.precision) != (t.runtime, t.precision):
        raise LosslessMismatchError(
            f"residual codes are predicted with the {t.precision} {t.runtime} decoder; this decoder runs "
            f"{net.precision} {net.runtime}: load it with runtime={t.runtime!r}, precision={t.precision!r}"
        )
    steps = np.array([decoder.coding.steps[s[4]] for s in states])
    levels = net.levels(decoded.symbols.astype(np.float64) * steps[:, None])[..., 0]
    return pixels(t, states, levels) * np.uint8(255)


def pixels(table, states, levels: np.ndarray) -> np.ndarray:
    """uint8 0/1 (N, H, W): the payloads' pixels (``states`` from their first phase) under the
    int8 ``levels`` of their latents, each verified."""
    return B2.finish_many([s[1] for s in states], [s[2] for s in states], levels, table, [s[3] for s in states])
