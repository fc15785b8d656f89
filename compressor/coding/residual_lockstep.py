"""Residual pixels of a batch decoded in numpy lanes, both table sets in one lock-step pass.

Why: a lane step (one pixel position of every image) costs a fixed number of numpy calls,
~0.5 µs each on a batch of 64 whatever the number of lanes, so the number of calls per step
*is* the decoder's cost. This module keeps it small:

* **one pass for both table sets.** A batch of digits mixes them (most images take set 1,
  some set 0); decoding each set on its own left the smaller group to the per-image Python
  loop, ~0.6 ms an image. Here set-0 lanes come first, set-1 lanes after, and every step
  serves both with the same calls;
* **one field per lane**: set 0 keeps the network's error field ``x̂ - pd`` (docs/format.md,
  "Table set 0"), set 1 the reconstruction ``x̂`` itself, so the west neighbour ``W`` of
  every lane is one view of one array;
* **one prediction formula**: ``pred = min(max(A, W + lo), W + hi)`` with per-row arrays.
  Set 1: ``A = N``, ``lo, hi = min(N - NW, 0), max(N - NW, 0)``, which is MED:
  ``median(W, N, W + N - NW) = W + clip(N - W, lo, hi)``. Set 0: ``A = pd`` and ``lo, hi =
  ∓BIG``, which is ``pd``; where the network is far off (``|eW| + |eN| >= threshold``) a
  rare path adds MED of the error field, as the format says;
* **one context lookup**: ``ctx << 17 = lut[W + key]`` with ``key`` per row: set 0 indexes
  ``(level bucket, eW + eN)``, set 1 ``(W - NW, |N - NW| + |NE - N|)``, whose table
  entries are the contexts of docs/format.md (set 1's rows numbered after set 0's);
* constants as 0-d arrays (see :data:`~compressor.coding.residual_lanes._P`).

The arithmetic is the format's, integer for integer: the same bytes decode to the same
pixels as :func:`compressor.coding.residual._decode_one` and ``_decode_one_spatial``.
"""

from __future__ import annotations

import numpy as np

from compressor.coding.rangecoder import PRECISION
from compressor.coding.residual_lanes import PixelLanes
from compressor.coding.residual_spatial import SMOOTH_FROM

_BIG = 1 << 12
"""Beyond any field value (|W| <= 255): ``W ∓ BIG`` never clips ``A``, ``|W| >= BIG`` never holds."""
_SPAN = 511  # W - NW + 255 and |N - NW| + |NE - N| are both in 0..510
_Z = np.array(0, np.int64)
_TWO = np.array(2, np.int64)
_MASK = np.array(255, np.int64)


def _luts(table) -> dict:
    """Context lookup tables of a :class:`~compressor.coding.residual.ResidualTable`, built once
    per (set 0 present, set 1 present) and kept on it: entries are ``context row << 17``."""
    cache = table.__dict__.get("_lockstep_luts")
    if cache is None:
        cache = {}
        object.__setattr__(table, "_lockstep_luts", cache)
    return cache


def _lut(table, has0: bool, has1: bool) -> tuple[np.ndarray, int, int]:
    """``(lut, width of set 0's part, set 1's key offset)`` for a batch with these sets."""
    cache = _luts(table)
    hit = cache.get((has0, has1))
    if hit is None:
        n_act = len(table.neighbour_edges) + 1
        n_neigh = len(table.neighbour_lut)  # eW + eN + 510 in 0..1020
        parts, offset, rows0 = [], 0, 0
        if has0:
            buckets = np.arange(len(table.level_edges) + 1, dtype=np.int64)
            parts.append(((buckets[:, None] * n_act + table.neighbour_lut[None, :]) << 17).ravel())
            offset, rows0 = len(parts[0]), len(buckets) * n_act
        if has1:
            a = np.arange(_SPAN, dtype=np.int64)  # W - NW + 255
            act = np.abs(a - 255)[None, :] + a[:, None]  # row: |N - NW| + |NE - N|, column: W - NW + 255
            parts.append(((table.spatial.activity_lut[act] + rows0) << 17).ravel())
        hit = (np.concatenate(parts), n_neigh, offset)
        cache[(has0, has1)] = hit
    return hit


def decode(decoders, levels: np.ndarray, table, t0, t1, k0: int, geometry: tuple[int, int, int], images=None):
    """Decode every lane's pixels: lanes ``[:k0]`` take table set 0 (error table ``t0``, their
    int8 ``levels``), lanes ``[k0:]`` set 1 (``t1``; their levels are not read). ``geometry``:
    ``(delta, M, M // 2)`` of the error bound. Returns ``(uint8 (N, H, W), per-lane canonical)``;
    raises ``CorruptCodeError`` for damaged input, naming the image by ``images`` (each lane's
    number in the caller's order; default the lane's own)."""
    n, h, w = levels.shape
    k1 = n - k0
    has0, has1 = k0 > 0, k1 > 0
    delta, m, half = geometry
    e = (delta - 1) // 2
    lut, n_neigh, off1 = _lut(table, has0, has1)
    tables = [t for t in (t0, t1) if t is not None]
    lanes = PixelLanes(decoders, tables, m, half, PRECISION - max(1, (m - 1).bit_length()), 2 * h * w, images)
    decode_step = lanes.decode
    p = h * w
    pdz = np.zeros((p, n), np.int64)  # pd for set-0 lanes, 0 for set-1 lanes (pixel-major)
    if has0:
        lv = levels[:k0].reshape(k0, p).T.astype(np.int64) + 128
        pdz[:, :k0] = np.asarray(table.predict, np.int64)[lv]
        level_key = (table.level_lut[lv] // (len(table.neighbour_edges) + 1)) * n_neigh + n_neigh // 2
    threshold = table.spatial_threshold
    far_possible = has0 and threshold <= 2 * 255  # |eW| + |eN| <= 510: a larger threshold never switches MED on
    smooth = has1 and e >= SMOOTH_FROM
    field = np.zeros((h + 1, w + 2, n), np.int64)  # per lane: x̂ - pd (set 0) or x̂ (set 1); 0 outside
    low, high = np.empty((w, n), np.int64), np.empty((w, n), np.int64)
    key = np.empty((w, n), np.int64)
    near = np.full((w, n), _BIG, np.int64)
    low[:, :k0], high[:, :k0] = -_BIG, _BIG
    if e:
        d_, lo_lim, hi_lim, wrap = (np.array(v, np.int64) for v in (delta, -e, 255 + e, m * delta))
    i = 0
    for r in range(h):
        up = field[r]
        north, northwest = up[1:-1], up[:-2]
        d = north - northwest
        pd_row = pdz[i : i + w]
        if has1:
            ahead = north.copy()
            ahead[:, :k0] = pd_row[:, :k0]
            np.minimum(d[:, k0:], 0, out=low[:, k0:])
            np.maximum(d[:, k0:], 0, out=high[:, k0:])
            act = np.abs(d[:, k0:]) + np.abs(up[2:, k0:] - north[:, k0:])
            key[:, k0:] = act * _SPAN + (off1 + 255) - northwest[:, k0:]
            north2 = north[:, k0:] + 2
        if has0:
            key[:, :k0] = level_key[i : i + w] + north[:, :k0]
            if far_possible:
                near[:, :k0] = threshold - np.abs(north[:, :k0])
        row = field[r + 1]
        for c in range(w):
            west = row[c]
            if has1:
                pred = np.minimum(np.maximum(ahead[c], west + low[c]), west + high[c])
                if smooth:
                    m1 = pred[k0:]
                    m1[:] = (m1 + m1 + west[k0:] + north2[c]) >> _TWO
            else:
                pred = pd_row[c]
            if far_possible:
                far = np.abs(west) >= near[c]
                if np.count_nonzero(far):  # set-0 lanes only: set 1's near is out of reach
                    pred = _far(pred, far, west, north[c], northwest[c], pd_row[c])
            s = decode_step(lut[west + key[c]])
            x = row[c + 1]
            if e:
                y = pred + s * d_
                y = y + (y < lo_lim) * wrap - (y > hi_lim) * wrap
                y = np.minimum(np.maximum(y, _Z), _MASK)
            elif has0:
                y = pred + s
                y &= _MASK
            else:  # set 1 alone: x̂ goes straight into the field
                np.add(pred, s, out=x)
                x &= _MASK
                i += 1
                continue
            if has0:
                np.subtract(y, pdz[i], out=x)
            else:
                x[:] = y
            i += 1
    rec = field[1:, 1:-1] + pdz.reshape(h, w, n)
    return np.ascontiguousarray(rec.transpose(2, 0, 1)).astype(np.uint8), lanes.finish()


def _far(pred, far, ew, en, enw, pd):
    """Set 0 where ``|eW| + |eN| >= threshold``: ``clip(pd + MED(eW, eN, eNW), 0, 255)``."""
    idx = np.flatnonzero(far)
    a, b = ew[idx], en[idx]
    med = np.minimum(np.maximum(a + b - enw[idx], np.minimum(a, b)), np.maximum(a, b))
    pred = pred.copy()
    pred[idx] = np.minimum(np.maximum(pd[idx] + med, _Z), _MASK)
    return pred


__all__ = ["decode"]
