"""Which pixels a near-lossless binary code (layout 2) should get wrong: a greedy search over
the image the receiver will decode, in ideal bits.

Why a search over reconstructions rather than a per-pixel lie rule: the decoder codes any
image it is given, and a pixel's value is also part of its later neighbours' contexts (W, N,
NW, NE, WW, NN and their disagreements), so the bits a wrong pixel saves depend on what it
does next door. :func:`flip_deltas` gives, for every pixel at once, the exact change in the
ideal bits of the whole image if that pixel alone were flipped (itself and its six dependants);
:func:`flip_path` flips the best one, recomputes, and so on, recording (bits, wrong pixels)
after each flip: each image's operational rate-distortion curve, from which the encoder picks.

Bands: with ``band < 127`` the receiver takes its model's verdict at the pixels the band does
not code. Such a pixel costs nothing when the image holds the verdict there and cannot hold
anything else (infinite cost), so the same search works with :func:`band_costs`.

Everything here is the encoder's choice; the decoder is unchanged (docs/format.md, "Binary
kind, layout 2"): whatever image the search settles on is coded exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from compressor.coding import binary_context2 as B2
from compressor.coding.binary_context import CUT, HALF, LOSSLESS_BAND
from compressor.coding.rangecoder import TOTAL

ROLES = ((0, 1, 16, 1), (1, 0, 32, 2), (1, 1, 64, 4), (1, -1, 128, 8), (0, 2, 256, 0), (2, 0, 512, 0))
"""Where a pixel sits in later pixels' contexts: (rows down, columns right, weight of its bit,
weight of its disagreement bit) for the pixel it is W, N, NW, NE, WW and NN of
(:func:`~compressor.coding.binary_context2.contexts`)."""


@functools.lru_cache(maxsize=32)
def _band_costs(table: B2.ContextTable2, band: int) -> tuple[np.ndarray, np.ndarray]:
    f = table.freq_array
    coded = np.minimum(f, TOTAL - f) >= CUT[band]
    likely_ink = f >= HALF
    ink = np.where(coded, table.ink_bits, np.where(likely_ink, 0.0, np.inf))
    background = np.where(coded, table.background_bits, np.where(likely_ink, np.inf, 0.0))
    return background, ink


def band_costs(table: B2.ContextTable2, band: int) -> tuple[np.ndarray, np.ndarray]:
    """Bits of background and of ink in every context under ``band``: ideal bits where the band
    codes the pixel, else 0 for the model's verdict and ``inf`` for the other value."""
    return _band_costs(table, int(band))


def band_start(table: B2.ContextTable2, bits: np.ndarray, levels: np.ndarray, band: int) -> np.ndarray:
    """The image the receiver decodes (bool (N, H, W)) when every pixel the band codes is the
    truth: a raster scan in numpy over all images at once (the verdicts feed later contexts)."""
    bits = np.asarray(bits, bool)
    if band == LOSSLESS_BAND:
        return bits.copy()
    n, h, w = bits.shape
    freq, cut = table.freq_array, CUT[band]
    base = B2._level_base(levels)
    verdict = (levels >= 0).astype(np.int64)
    rec = np.zeros((n, h + 2, w + 4), np.int64)
    err = np.zeros((n, h + 2, w + 4), np.int64)
    truth = bits.astype(np.int64)
    for r in range(h):
        up, up2, eup = rec[:, r + 1], rec[:, r], err[:, r + 1]
        above = 16 * (2 * up[:, 2:-2] + 4 * up[:, 1:-3] + 8 * up[:, 3:-1] + 32 * up2[:, 2:-2])
        above += 2 * eup[:, 2:-2] + 4 * eup[:, 1:-3] + 8 * eup[:, 3:-1] + base[:, r]
        row, erow = rec[:, r + 2], err[:, r + 2]
        for c in range(w):
            f = freq[above[:, c] + 16 * row[:, c + 1] + 256 * row[:, c] + erow[:, c + 1]]
            b = np.where(np.minimum(f, TOTAL - f) >= cut, truth[:, r, c], f >= HALF)
            row[:, c + 2] = b
            erow[:, c + 2] = b ^ verdict[:, r, c]
    return rec[:, 2:, 2:-2].astype(bool)


def flip_deltas(costs, recon: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(deltas (N, H, W), totals (N,))``: the exact change in each image's ideal pixel bits if
    that one pixel of ``recon`` were flipped, and the bits of ``recon`` as it is, under
    ``costs`` (:func:`band_costs`). Flipping a pixel moves its own cost and its six dependants'
    contexts by its bit's weight and (W, N, NW, NE) its disagreement's (:data:`ROLES`)."""
    background, ink = costs
    n, h, w = recon.shape
    ctx = B2.contexts(recon.astype(np.int64), levels)
    cost = np.where(recon, ink[ctx], background[ctx])
    with np.errstate(invalid="ignore"):  # inf - inf never happens: recon itself is consistent
        delta = np.where(recon, background[ctx], ink[ctx]) - cost
        r = recon.astype(np.int64)
        bit_sign = 1 - 2 * r
        disagree_sign = 1 - 2 * (r ^ (levels >= 0))
        for dr, dc, wb, wd in ROLES:
            c0, c1 = max(0, -dc), min(w, w - dc)
            k = (slice(None), slice(0, h - dr), slice(c0, c1))
            p = (slice(None), slice(dr, h), slice(c0 + dc, c1 + dc))
            moved = ctx[p] + bit_sign[k] * wb + disagree_sign[k] * wd
            delta[k] += np.where(recon[p], ink[moved], background[moved]) - cost[p]
    return delta, cost.reshape(n, -1).sum(axis=1)


@dataclass(frozen=True)
class FlipPath:
    """Each image's greedy path: ``bits[i, k]`` ideal pixel bits after ``k`` flips (``inf`` once
    no flip saves bits), ``errors[i, k]`` wrong pixels then, ``order[i, k]`` the raster index
    flipped at step ``k`` (-1 past the end), ``start`` the images before any flip."""

    bits: np.ndarray
    errors: np.ndarray
    order: np.ndarray
    start: np.ndarray

    def recon(self, i: int, k: int) -> np.ndarray:
        """Image ``i`` after ``k`` flips (bool (H, W))."""
        r = self.start[i].copy().ravel()
        r[self.order[i, :k]] ^= True
        return r.reshape(self.start.shape[1:])


def flip_path(table: B2.ContextTable2, bits: np.ndarray, levels: np.ndarray, band: int, max_flips: int) -> FlipPath:
    """Greedy flips for every image at once: each round flips, in each image, the pixel whose
    flip saves the most bits (a pixel is flipped at most once), until none saves any or
    ``max_flips``; errors are counted against ``bits`` (so a flip may also undo one)."""
    bits = np.asarray(bits, bool)
    costs = band_costs(table, band)
    recon = band_start(table, bits, levels, band)
    start = recon.copy()
    n = len(bits)
    flat, done = recon.reshape(n, -1), np.zeros((n, bits[0].size), bool)
    path_bits = np.full((n, max_flips + 1), np.inf)
    errors = np.zeros((n, max_flips + 1), np.int64)
    order = np.full((n, max_flips), -1, np.int64)
    active = np.ones(n, bool)
    truth = bits.reshape(n, -1)
    for k in range(max_flips + 1):
        delta, total = flip_deltas(costs, recon, levels)
        path_bits[active, k] = total[active]
        errors[:, k] = np.count_nonzero(flat != truth, axis=1)
        if k == max_flips:
            break
        delta = np.where(done, np.inf, delta.reshape(n, -1))
        j = delta.argmin(axis=1)
        active &= delta[np.arange(n), j] < 0
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        order[idx, k] = j[idx]
        flat[idx, j[idx]] ^= True
        done[idx, j[idx]] = True
    return FlipPath(path_bits, errors, order, start)
