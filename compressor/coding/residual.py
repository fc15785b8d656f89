"""Grayscale lossless and near-lossless codes: the latent code, then every pixel's residual
under the int8 decoder's prediction and its already-decoded neighbours.

A code with error bound ``E`` (``E = 0``: lossless) reproduces every pixel of the uint8
image within ``E`` grey levels. Per pixel, in raster order:

1. ``pd = predict[v + 128]``: the int8 decoder's output level ``v`` mapped to a grey value by
   an integer table calibrated at export (the median training pixel at that level).
2. The decoder's error field ``e = x̂ - pd`` of the already-decoded neighbours W, N, NW
   (0 outside the image): where the network is far off (``|eW| + |eN| >= threshold``, the
   bundle's ``spatial_threshold``) the pixel's error is predicted with MED (LOCO-I's median
   edge detector, ``median(eW, eN, eW + eN - eNW)``), else not:
   ``pred = clip(pd + MED or 0, 0, 255)``. On digits the network's prediction alone is best
   (the neighbours' errors are noise: MED everywhere costs 18 % more bytes); on natural
   photo crops, where it predicts little, MED on the error field carries the residual.
3. The residual ``x - pred`` is quantized JPEG-LS style with bin width ``2E + 1`` and
   reduced modulo the number of bins ``M`` to ``s`` in ``[-M//2, M - 1 - M//2]``;
   ``x̂ = clip(pred + s (2E + 1), 0, 255)`` after one wrap by ``M (2E + 1)``.
4. ``s`` is coded under the integer table of its context ``(level bucket of v, bucket of
   eW + eN)``: the neighbours' signed errors say which way this pixel's residual leans. Symbols beyond the
   table's tail ``±T`` are an ESCAPE followed by ``s + M//2`` as uniform bits.

Determinism: every decision above is integer arithmetic on int8 levels and integer tables
from the bundle (``coding.json`` section ``residual``, validated on load). The levels come
from the runtime and precision the section names; the receiver refuses any other, and each
code carries a 16-bit check of the reconstructed image, so a device whose int8 kernels
differ raises :class:`~compressor.errors.LosslessMismatchError` instead of returning wrong
pixels.

Payload (docs/format.md, residual mode): ``check (2 bytes) || range code`` holding the D
latent symbols (as in the entropy mode) and then one or two slices per pixel.

Table sets: the above is set 0. Set 1 (:mod:`compressor.coding.residual_spatial`) predicts
from the reconstructed neighbours alone, for content the network predicts poorly (photo
crops); bit 6 of the parameter byte names the set, and the encoder picks per image the set
with the shorter code (:func:`encode_choosing_set`).

Speed: a batch runs the pixels of all its images in lock-step (:mod:`compressor.coding.residual_lanes`,
one numpy step per pixel position; decoding both table sets in one pass,
:mod:`compressor.coding.residual_lockstep`); a single image runs a plain Python loop, which is
faster than numpy on one-element arrays. Both are the same arithmetic and give the same bytes.
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from compressor.coding import residual_lanes, residual_lockstep
from compressor.coding.entropy import CdfTable, as_symbols, decode_row, encode_row, quantize_pmf
from compressor.coding.rangecoder import PRECISION, TOTAL, RangeDecoder, RangeEncoder
from compressor.coding.residual_spatial import SMOOTH_FROM, SpatialSet
from compressor.coding.residual_spatial import predict_step as spatial_predict_step
from compressor.coding.residual_spatial import predictions_known as spatial_predictions_known
from compressor.errors import (
    CorruptCodeError,
    LosslessMismatchError,
    ManifestError,
    TruncatedCodeError,
    about_image,
)

CHECK_BYTES = 2
MAX_E = 63
"""Largest error bound a code can name (6 bits of the parameter byte; bit 6 names the table set)."""
NETWORK, SPATIAL = 0, 1
"""Table sets: 0 predicts with the network (and its error field), 1 from the neighbours alone
(:mod:`compressor.coding.residual_spatial`)."""
MAX_TAIL = 128
MAX_NEIGHBOUR = 510  # |eW + eN| <= 2 * 255
MAX_THRESHOLD = 2 * MAX_NEIGHBOUR + 1  # a threshold that never switches MED on
MAX_BUCKETS = 16
LANE_THRESHOLD = 32
"""From this many images on, a batch is coded in numpy lanes; below, in a Python loop. Each
lane step costs ~30 numpy calls whatever the batch, so lanes only pay off once a step does
enough images (measured on a loaded 2-core host: Python faster at 16, lanes 1.4x at 64)."""


def geometry(e: int) -> tuple[int, int, int]:
    """``(delta, M, half)`` for error bound ``e``: bin width, number of bins, offset."""
    delta = 2 * e + 1
    m = (255 + 2 * e) // delta + 1
    return delta, m, m // 2


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_edges(edges, what: str, bottom: int, top: int) -> tuple[int, ...]:
    if not isinstance(edges, (list, tuple)) or not 0 <= len(edges) < MAX_BUCKETS:
        raise ManifestError(f"residual.{what} must be a list of fewer than {MAX_BUCKETS} ints")
    if not all(_is_int(x) and bottom <= x <= top for x in edges) or any(a >= b for a, b in zip(edges, edges[1:])):
        raise ManifestError(f"residual.{what} must be strictly increasing ints in {bottom}..{top}")
    return tuple(edges)


@dataclass(frozen=True)
class ErrorTable:
    """The tables for one error bound: tail ``T`` and one row of ``2T + 2`` frequencies per context."""

    e: int
    tail: int
    freqs: tuple[tuple[int, ...], ...]
    cdf: np.ndarray = field(init=False, repr=False, compare=False)  # (contexts, 2T + 3) int64
    cdf_lists: tuple[list[int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        _, m, half = geometry(self.e)
        if not _is_int(self.tail) or not 0 <= self.tail <= min(half, m - 1 - half, MAX_TAIL):
            raise ManifestError(f"residual table E={self.e}: tail must be an int in 0..{min(half, MAX_TAIL)}")
        width = 2 * self.tail + 2
        for row in self.freqs:
            if not isinstance(row, (list, tuple)) or len(row) != width:
                raise ManifestError(f"residual table E={self.e}: every row needs {width} frequencies")
            if not all(_is_int(f) and f >= 1 for f in row) or sum(row) != TOTAL:
                raise ManifestError(f"residual table E={self.e}: frequencies must be ints >= 1 summing to {TOTAL}")
        freqs = tuple(tuple(r) for r in self.freqs)
        cdf = np.zeros((len(freqs), width + 1), np.int64)
        cdf[:, 1:] = np.cumsum(np.asarray(freqs, np.int64).reshape(len(freqs), width), axis=1)
        object.__setattr__(self, "freqs", freqs)
        object.__setattr__(self, "cdf", cdf)
        object.__setattr__(self, "cdf_lists", tuple(row.tolist() for row in cdf))


@dataclass(frozen=True)
class ResidualTable:
    """What the residual coder needs from the bundle; validated on construction (ManifestError)."""

    predict: tuple[int, ...]  # 256 grey values, index v + 128
    level_edges: tuple[int, ...]  # bucket boundaries on v + 128
    neighbour_edges: tuple[int, ...]  # bucket boundaries on eW + eN
    spatial_threshold: int  # MED on the error field where |eW| + |eN| >= this
    tables: dict[int, ErrorTable]  # error bound -> tables
    runtime: str
    precision: str
    step_index: int = 0
    spatial: SpatialSet | None = None  # table set 1 (absent in bundles before it)
    level_lut: np.ndarray = field(init=False, repr=False, compare=False)  # v + 128 -> bucket * n_neighbour
    neighbour_lut: np.ndarray = field(init=False, repr=False, compare=False)  # eW + eN + 510 -> bucket

    def __post_init__(self):
        if len(self.predict) != 256 or not all(_is_int(p) and 0 <= p <= 255 for p in self.predict):
            raise ManifestError("residual.predict must be 256 ints in 0..255")
        levels = _check_edges(self.level_edges, "level_edges", 1, 255)
        acts = _check_edges(self.neighbour_edges, "neighbour_edges", -MAX_NEIGHBOUR + 1, MAX_NEIGHBOUR)
        if not _is_int(self.spatial_threshold) or not 0 <= self.spatial_threshold <= MAX_THRESHOLD:
            raise ManifestError(f"residual.spatial_threshold must be an int in 0..{MAX_THRESHOLD}")
        contexts = (len(levels) + 1) * (len(acts) + 1)
        if not self.tables:
            raise ManifestError("residual.tables is empty")
        for e, t in self.tables.items():
            if not (_is_int(e) and 0 <= e <= MAX_E) or t.e != e:
                raise ManifestError(f"residual.tables: error bound {e!r} is not an int in 0..{MAX_E}")
            if len(t.freqs) != contexts:
                raise ManifestError(f"residual table E={e}: needs {contexts} context rows, got {len(t.freqs)}")
        if self.spatial is not None and not isinstance(self.spatial, SpatialSet):
            raise ManifestError("residual.spatial is malformed")
        n_act = len(acts) + 1
        level_lut = np.searchsorted(np.asarray(levels), np.arange(256), side="right") * n_act
        neighbour_lut = np.searchsorted(np.asarray(acts), np.arange(-MAX_NEIGHBOUR, MAX_NEIGHBOUR + 1), side="right")
        object.__setattr__(self, "predict", tuple(self.predict))
        object.__setattr__(self, "level_lut", level_lut.astype(np.int64))
        object.__setattr__(self, "neighbour_lut", neighbour_lut.astype(np.int64))

    @property
    def bounds(self) -> list[int]:
        """The error bounds this bundle has tables for, smallest first."""
        return sorted(self.tables)

    @property
    def sets(self) -> tuple[int, ...]:
        """The table sets this bundle has: (0,) or (0, 1)."""
        return (NETWORK,) if self.spatial is None else (NETWORK, SPATIAL)

    @classmethod
    def from_json(cls, obj) -> ResidualTable:
        try:
            tables = _tables_from_json(obj["tables"], "residual.tables")
            spatial = None
            if "spatial" in obj:
                sp = obj["spatial"]
                spatial = SpatialSet(
                    tuple(sp["activity_edges"]), _tables_from_json(sp["tables"], "residual.spatial.tables")
                )
            return cls(
                tuple(obj["predict"]),
                tuple(obj["level_edges"]),
                tuple(obj["neighbour_edges"]),
                obj["spatial_threshold"],
                tables,
                str(obj["runtime"]),
                str(obj["precision"]),
                int(obj.get("step_index", 0)),
                spatial,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ManifestError(f"coding.json 'residual' section is malformed: {e}") from e

    def to_json(self) -> dict:
        return {
            "predict": list(self.predict),
            "level_edges": list(self.level_edges),
            "neighbour_edges": list(self.neighbour_edges),
            "spatial_threshold": self.spatial_threshold,
            "tables": {str(e): {"tail": t.tail, "freqs": [list(r) for r in t.freqs]} for e, t in self.tables.items()},
            "runtime": self.runtime,
            "precision": self.precision,
            "step_index": self.step_index,
        } | ({} if self.spatial is None else {"spatial": self.spatial.to_json()})

    def table(self, e: int, table_set: int = NETWORK) -> ErrorTable:
        if table_set == SPATIAL:
            if self.spatial is None:
                raise CorruptCodeError(
                    "a residual code of table set 1 (spatial), but this bundle has none: damaged data or wrong bundle"
                )
            tables = self.spatial.tables
        else:
            tables = self.tables
        if e not in tables:
            raise CorruptCodeError(
                f"this bundle has no residual table for error bound {e}"
                + (" in table set 1" if table_set == SPATIAL else "")
                + ": damaged data or wrong bundle"
            )
        return tables[e]


def _tables_from_json(obj, what: str) -> dict[int, ErrorTable]:
    tables = {}
    for key, t in obj.items():
        e = int(key)
        if str(e) != key:
            raise ManifestError(f"{what} key {key!r} is not a canonical integer")
        if not 0 <= e <= MAX_E:
            raise ManifestError(f"{what}: error bound {e} is not in 0..{MAX_E}")
        tables[e] = ErrorTable(e, t["tail"], tuple(t["freqs"]))
    return tables


def image_check(pixels: np.ndarray) -> bytes:
    """16-bit check of one uint8 image (CRC-32 of its bytes, low half, big-endian)."""
    return (zlib.crc32(np.ascontiguousarray(pixels, np.uint8).tobytes()) & 0xFFFF).to_bytes(2, "big")


# --- prediction and context, whole arrays (encoder with E = 0, table building) ---------------
def _neighbours(err: np.ndarray):
    """W, N, NW views of a padded error field (N, H + 1, W + 2) for every pixel."""
    return err[:, 1:, :-2], err[:, :-1, 1:-1], err[:, :-1, :-2]


def _med(w, n, nw):
    """LOCO-I's median edge detector, median(w, n, w + n - nw)."""
    return np.maximum(np.minimum(w, n), np.minimum(np.maximum(w, n), w + n - nw))


def _predict(table: ResidualTable, pd, w, n, nw):
    """``(pred, neighbour bucket)`` from the network's grey value and the neighbours' errors."""
    far = np.abs(w) + np.abs(n) >= table.spatial_threshold
    bucket = table.neighbour_lut[w + n + MAX_NEIGHBOUR]
    if not np.count_nonzero(far):  # the network alone predicts: pd is already in 0..255
        return pd, bucket
    return _clip255(pd + np.where(far, _med(w, n, nw), 0)), bucket


def _padded(shape) -> np.ndarray:
    n, h, w = shape
    return np.zeros((n, h + 1, w + 2), np.int64)


def predictions_known(table: ResidualTable, pixels: np.ndarray, levels: np.ndarray):
    """``(pred, context)`` for every pixel when the reconstruction equals ``pixels`` (E = 0).

    ``pixels`` uint8-valued and ``levels`` int8, both (N, H, W); results int64 (N, H, W).
    """
    lv = levels.astype(np.int64) + 128
    pd = np.asarray(table.predict, np.int64)[lv]
    err = _padded(pixels.shape)
    err[:, 1:, 1:-1] = pixels.astype(np.int64) - pd
    pred, bucket = _predict(table, pd, *_neighbours(err))
    return pred, table.level_lut[lv] + bucket


def quantize(x: np.ndarray, pred: np.ndarray, e: int) -> tuple[np.ndarray, np.ndarray]:
    """``(s, x̂)``: the wrapped residual symbol and the reconstruction (arrays, same shape)."""
    delta, m, half = geometry(e)
    r = x - pred
    q = np.where(r >= 0, (r + e) // delta, -((e - r) // delta))
    s = (q + half) % m - half
    return s, np.clip(pred + q * delta, 0, 255)


def _wrap0(r: np.ndarray) -> np.ndarray:
    """:func:`quantize`'s symbol for ``E = 0`` (one bin per grey level, ``M = 256``): the
    residual wrapped into ``[-128, 127]``, in three array operations instead of ten."""
    r += 128
    r &= 255
    r -= 128
    return r


def _clip255(x):
    """``np.clip(x, 0, 255)``, several times faster on the short arrays of a lane step."""
    return np.minimum(np.maximum(x, 0), 255)


def symbols_and_contexts(
    table: ResidualTable, pixels: np.ndarray, levels: np.ndarray, e: int, table_set: int = NETWORK
):
    """``(s, context, x̂)`` int64 (N, H, W) for a batch, reconstructing causally when ``e > 0``.

    Used by the encoder and to build tables at export; the decoder mirrors it step by step.
    Table set 1 (:mod:`~compressor.coding.residual_spatial`) ignores ``levels``.
    """
    x = pixels.astype(np.int64)
    if table_set == SPATIAL:
        return _spatial_symbols(table.spatial, x, e)
    if e == 0:
        pred, ctx = predictions_known(table, x, levels)
        return _wrap0(x - pred), ctx, x
    n, h, w = x.shape
    lv = levels.astype(np.int64) + 128
    pd = np.asarray(table.predict, np.int64)[lv]
    lctx = table.level_lut[lv]
    err = _padded(x.shape)
    s_out = np.empty_like(x)
    ctx_out = np.empty_like(x)
    rec = np.empty_like(x)
    for r in range(h):
        up = err[:, r]
        row = err[:, r + 1]
        for c in range(w):
            pred, bucket = _predict(table, pd[:, r, c], row[:, c], up[:, c + 1], up[:, c])
            ctx_out[:, r, c] = lctx[:, r, c] + bucket
            s, xr = quantize(x[:, r, c], pred, e)
            s_out[:, r, c] = s
            rec[:, r, c] = xr
            row[:, c + 1] = xr - pd[:, r, c]
    return s_out, ctx_out, rec


def _spatial_symbols(spatial: SpatialSet, x: np.ndarray, e: int):
    if e == 0:
        pred, ctx = spatial_predictions_known(spatial, x)
        return _wrap0(x - pred), ctx, x
    n, h, w = x.shape
    rec_p = np.zeros((n, h + 1, w + 2), np.int64)  # reconstruction, padded with 0 outside the image
    s_out = np.empty_like(x)
    ctx_out = np.empty_like(x)
    for r in range(h):
        up = rec_p[:, r]
        row = rec_p[:, r + 1]
        for c in range(w):
            pred, ctx = spatial_predict_step(spatial, row[:, c], up[:, c + 1], up[:, c], up[:, c + 2], e)
            s, xr = quantize(x[:, r, c], pred, e)
            s_out[:, r, c] = s
            ctx_out[:, r, c] = ctx
            row[:, c + 1] = xr
    return s_out, ctx_out, rec_p[:, 1:, 1:-1].copy()


# --- coding -------------------------------------------------------------------------------
def _slices(t: ErrorTable, s: np.ndarray, ctx: np.ndarray):
    """Per symbol: ``(start, freq)`` of its table slot and, for escapes, of its raw bits."""
    _, m, half = geometry(t.e)
    k = s + t.tail
    esc = (k < 0) | (k > 2 * t.tail)
    k = np.where(esc, 2 * t.tail + 1, k)
    flat = t.cdf.ravel()
    width = t.cdf.shape[1]
    start = flat[ctx * width + k]
    freq = flat[ctx * width + k + 1] - start
    nb = max(1, (m - 1).bit_length())
    raw_start = (s + half) << (PRECISION - nb)
    return start, freq, esc, raw_start, 1 << (PRECISION - nb)


def encode_batch(
    latent_symbols: np.ndarray,
    pixels: np.ndarray,
    levels: np.ndarray,
    ct: CdfTable,
    table: ResidualTable,
    e: int,
    table_set: int = NETWORK,
) -> list[bytes]:
    """Payloads for a batch: latent symbols (N, D), uint8 ``pixels`` and int8 ``levels`` (N, H, W)."""
    t = table.table(e, table_set)
    s, ctx, rec = symbols_and_contexts(table, pixels, levels, e, table_set)
    n = len(pixels)
    start, freq, esc, raw_start, raw_freq = (
        a.reshape(n, -1) if isinstance(a, np.ndarray) else a for a in _slices(t, s, ctx)
    )
    encoders = []
    for sym in latent_symbols:
        enc = RangeEncoder()
        encode_row(enc, as_symbols(sym, len(ct.lo)), ct)
        encoders.append(enc)
    checks = [image_check(r.astype(np.uint8)) for r in rec]
    if n < LANE_THRESHOLD:
        codes = []
        for i, enc in enumerate(encoders):
            encode_slices(enc, start[i].tolist(), freq[i].tolist(), esc[i].tolist(), raw_start[i].tolist(), raw_freq)
            codes.append(enc.finish())
    else:
        codes = residual_lanes.encode_slices(encoders, start, freq, esc, raw_start, raw_freq)
    return [c + code for c, code in zip(checks, codes, strict=True)]


_COST = np.concatenate(([np.inf], PRECISION - np.log2(np.arange(1, TOTAL + 1))))
"""Ideal bits of a slice by its frequency (index 1..2**16)."""


def _slots(t: ErrorTable, s: np.ndarray, ctx: np.ndarray):
    """``(flat slot index into t.cdf, escape mask)`` per symbol (what :func:`_slices` gathers from)."""
    k = s + t.tail
    esc = (k < 0) | (k > 2 * t.tail)
    k[esc] = 2 * t.tail + 1
    return ctx * t.cdf.shape[1] + k, esc


def _slot_freqs(t: ErrorTable) -> np.ndarray:
    """Each flat slot's frequency (``cdf[j + 1] - cdf[j]``; the rows' closing entries unused)."""
    freqs = t.__dict__.get("_slot_freqs")
    if freqs is None:
        flat = t.cdf.ravel()
        freqs = np.append(flat[1:] - flat[:-1], 1)
        object.__setattr__(t, "_slot_freqs", freqs)
    return freqs


def encode_choosing_set(
    latent_symbols: np.ndarray,
    pixels: np.ndarray,
    levels: np.ndarray,
    ct: CdfTable,
    table: ResidualTable,
    e: int,
    sets=None,
) -> tuple[np.ndarray, list[bytes]]:
    """``(table set per image, payloads)``: each image coded under whichever of ``sets`` (default:
    every set the bundle has a table for ``e`` in) gives the shorter pixel code, by ideal code
    length (set 0 on ties). One range-coder pass for the whole batch, whatever the sets.

    Speed: a set's ideal length needs only its symbols' frequencies (one gather); the slices
    the coder needs are gathered afterwards, for the images that chose the set only."""
    if sets is None:
        sets = [ts for ts in table.sets if ts == NETWORK or e in table.spatial.tables]
    n = len(pixels)
    chosen = best_bits = None
    candidates = {}
    for ts in sets:
        t = table.table(e, ts)
        s, ctx, rec = symbols_and_contexts(table, pixels, levels, e, ts)
        s, rec = s.reshape(n, -1), rec.reshape(n, -1)
        slot, esc = _slots(t, s, ctx.reshape(n, -1))
        _, m, _ = geometry(e)
        raw_freq = 1 << (PRECISION - max(1, (m - 1).bit_length()))
        bits = _COST[_slot_freqs(t)[slot]].sum(axis=1) + np.count_nonzero(esc, axis=1) * _COST[raw_freq]
        candidates[ts] = (t, s, slot, esc, rec, raw_freq)
        if chosen is None:
            chosen, best_bits = np.full(n, ts), bits
            continue
        better = bits < best_bits
        chosen = np.where(better, ts, chosen)
        best_bits = np.where(better, bits, best_bits)
    p = pixels[0].size if n else 0
    start = np.empty((n, p), np.int64)
    freq = np.empty((n, p), np.int64)
    esc = np.empty((n, p), bool)
    raw_start = np.empty((n, p), np.int64)
    raw_freqs = np.empty(n, np.int64)
    rec = np.empty((n, p), np.int64)
    for ts, (t, s_ts, slot_ts, esc_ts, rec_ts, raw_freq) in candidates.items():
        rows = chosen == ts
        every = bool(rows.all())
        if not every and not rows.any():
            continue
        pick = slice(None) if every else rows
        slot = slot_ts[pick]
        flat = t.cdf.ravel()
        start[pick] = flat[slot]
        freq[pick] = flat[slot + 1] - start[pick]
        esc[pick] = esc_ts[pick]
        _, _, half = geometry(t.e)
        raw_start[pick] = (s_ts[pick] + half) * raw_freq
        raw_freqs[pick] = raw_freq
        rec[pick] = rec_ts[pick]
    encoders = []
    for sym in latent_symbols:
        enc = RangeEncoder()
        encode_row(enc, as_symbols(sym, len(ct.lo)), ct)
        encoders.append(enc)
    checks = [image_check(r.astype(np.uint8)) for r in rec]
    if n < LANE_THRESHOLD:
        codes = []
        for i, enc in enumerate(encoders):
            encode_slices(
                enc, start[i].tolist(), freq[i].tolist(), esc[i].tolist(), raw_start[i].tolist(), int(raw_freqs[i])
            )
            codes.append(enc.finish())
    else:
        codes = residual_lanes.encode_slices(encoders, start, freq, esc, raw_start, raw_freqs)
    return chosen, [c + code for c, code in zip(checks, codes, strict=True)]


def encode_slices(enc: RangeEncoder, starts, freqs, escapes, raw_starts, raw_freq: int) -> None:
    """:meth:`RangeEncoder.encode` for every slice, inlined (the same arithmetic, no call per slice):
    an escape's raw slice follows its pixel's slice."""
    if any(escapes):
        merged_starts, merged_freqs = [], []
        for a, f, x, rs in zip(starts, freqs, escapes, raw_starts):
            merged_starts.append(a)
            merged_freqs.append(f)
            if x:
                merged_starts.append(rs)
                merged_freqs.append(raw_freq)
        starts, freqs = merged_starts, merged_freqs
    low, rng, out = enc._low, enc._range, enc._out
    top, mask = 1 << 24, (1 << 32) - 1
    append = out.append
    for start, freq in zip(starts, freqs):
        r = rng >> PRECISION
        low += r * start
        if low > mask:  # carry into the settled bytes
            j = len(out) - 1
            while out[j] == 0xFF:
                out[j] = 0
                j -= 1
            out[j] += 1
            low &= mask
        rng = r * freq
        if rng < top:  # freq >= 1 keeps range >= 2**8: at most two bytes move
            append(low >> 24)
            low = (low << 8) & mask
            rng <<= 8
            if rng < top:
                append(low >> 24)
                low = (low << 8) & mask
                rng <<= 8
    enc._low, enc._range = low, rng


def start_decoding(payload: bytes, ct: CdfTable) -> tuple[RangeDecoder, list[int], bytes]:
    """Phase 1: the latent symbols. The caller runs the decoder network on them next."""
    if len(payload) < CHECK_BYTES:
        raise TruncatedCodeError(f"a residual payload is at least {CHECK_BYTES} bytes (its image check)")
    dec = RangeDecoder(payload[CHECK_BYTES:])
    return dec, decode_row(dec, ct), payload[:CHECK_BYTES]


def finish_decoding(
    decoders: list[RangeDecoder],
    checks: list[bytes],
    levels: np.ndarray,
    table: ResidualTable,
    e: int,
    table_set: int = NETWORK,
    images=None,
) -> np.ndarray:
    """Phase 2: every image's pixels under the receiver's own int8 ``levels`` (N, H, W) -> uint8.

    ``images``: each image's number in errors (its place in the caller's batch; default 0..N-1).

    ``table_set``: every image's, or one per image; a batch that mixes the sets decodes in one
    lock-step pass (:mod:`~compressor.coding.residual_lockstep`), and table-set-1 images'
    levels are never read (zeros will do).

    Raises ``CorruptCodeError`` for bytes the encoder cannot have written and
    ``LosslessMismatchError`` for an image that fails its check.
    """
    if np.ndim(table_set) == 0:  # one set for all: the everyday single image
        sets = np.full(len(levels), int(table_set), np.int64)
        t = {int(table_set): table.table(e, int(table_set))}  # CorruptCodeError for a missing table
    else:
        sets = np.asarray(table_set, np.int64)
        if sets.shape != (len(levels),):
            raise ValueError(f"table_set: one per image ({len(levels)}), got shape {sets.shape}")
        t = {ts: table.table(e, ts) for ts in set(sets.tolist())}
    names = np.arange(len(levels)) if images is None else np.asarray(images, np.int64)
    if len(levels) < LANE_THRESHOLD:
        out = np.stack(
            [_decode_image(int(i), d, v, ts, table, t) for i, d, v, ts in zip(names, decoders, levels, sets)]
        )
        canonical = [d.is_canonical() for d in decoders]
    else:
        out, canonical = _decode_lanes(decoders, levels, table, t, sets, e, names)
    for i, img, check, ok in zip(names.tolist(), out, checks, canonical, strict=True):
        # as in mode 2: bytes the encoder would not write are damage when the image itself
        # checks out; when it does not, other int8 levels are as likely a cause as damage
        passes = image_check(img) == check
        if not ok and passes:
            raise about_image(
                CorruptCodeError(
                    "residual code is not what the encoder writes (extra, missing or changed bytes): damaged data"
                ),
                i,
            )
        if not passes:
            raise about_image(
                LosslessMismatchError(
                    "the decoded image fails its check: this device's int8 decoder does not reproduce the "
                    f"sender's predictions (residual codes need {table.runtime} {table.precision} on both sides, "
                    "same build), or the data is damaged"
                ),
                i,
            )
    return out


def _decode_image(i: int, dec: RangeDecoder, levels: np.ndarray, table_set, table: ResidualTable, t: dict):
    """Image ``i`` of a batch in plain Python; damage names the image, as the lanes do."""
    try:
        if table_set == SPATIAL:
            return _decode_one_spatial(dec, levels.shape, table.spatial, t[SPATIAL])
        return _decode_one(dec, levels, table, t[NETWORK])
    except CorruptCodeError as err:
        raise about_image(err, i) from err


def _decode_lanes(decoders, levels: np.ndarray, table: ResidualTable, t: dict, sets: np.ndarray, e: int, names):
    """All images in lock-step, table-set-0 lanes first (:func:`residual_lockstep.decode`); the
    results come back in the caller's order, errors name ``names``."""
    order = np.argsort(sets, kind="stable")
    k0 = int(np.count_nonzero(sets == NETWORK))
    if (order == np.arange(len(order))).all():
        return residual_lockstep.decode(decoders, levels, table, t.get(NETWORK), t.get(SPATIAL), k0, geometry(e), names)
    ordered = [decoders[i] for i in order]
    out, canonical = residual_lockstep.decode(
        ordered, levels[order], table, t.get(NETWORK), t.get(SPATIAL), k0, geometry(e), names[order]
    )
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return out[back], [canonical[i] for i in back]


def _decode_one(dec: RangeDecoder, levels: np.ndarray, table: ResidualTable, t: ErrorTable) -> np.ndarray:
    """One image in plain Python: the same arithmetic as :func:`residual_lockstep.decode`'s set-0 lanes."""
    h, w = levels.shape
    delta, m, half = geometry(t.e)
    e = t.e
    lv = (levels.astype(np.int64) + 128).ravel()
    pd = np.asarray(table.predict, np.int64)[lv].tolist()
    lctx = table.level_lut[lv].tolist()
    nlut = table.neighbour_lut.tolist()
    threshold = table.spatial_threshold
    cdfs = t.cdf_lists
    tail, esc_sym = t.tail, 2 * t.tail + 1
    nb = max(1, (m - 1).bit_length())
    raw_shift = PRECISION - nb
    wrap = m * delta
    lo_lim, hi_lim = -e, 255 + e
    top = 1 << 24
    data, n_data = dec._data, len(dec._data)
    code, rng, pos = dec._code, dec._range, dec._pos
    prev = [0] * (w + 2)  # error field of the row above, padded
    out = [0] * (h * w)
    i = 0
    for _ in range(h):
        cur = [0] * (w + 2)
        ew = 0
        for c in range(w):
            en = prev[c + 1]
            p = pd[i]
            if abs(ew) + abs(en) >= threshold:
                enw = prev[c]
                a, b, d = (ew, en, ew + en - enw) if ew < en else (en, ew, ew + en - enw)
                p += a if d < a else (b if d > b else d)
                p = 0 if p < 0 else (255 if p > 255 else p)
            cdf = cdfs[lctx[i] + nlut[ew + en + MAX_NEIGHBOUR]]
            r = rng >> PRECISION
            target = code // r
            if target >= TOTAL:
                raise CorruptCodeError("the code points outside every symbol's interval: damaged data")
            k = bisect_right(cdf, target) - 1
            lo = cdf[k]
            code -= r * lo
            rng = r * (cdf[k + 1] - lo)
            while rng < top:
                code = (code << 8) | (data[pos] if pos < n_data else 0)
                rng <<= 8
                pos += 1
            if k == esc_sym:
                r = rng >> PRECISION
                u = (code // r) >> raw_shift
                if u >= m:
                    raise CorruptCodeError("a residual escape names an impossible value: damaged data")
                code -= r * (u << raw_shift)
                rng = r << raw_shift
                while rng < top:
                    code = (code << 8) | (data[pos] if pos < n_data else 0)
                    rng <<= 8
                    pos += 1
                s = u - half
            else:
                s = k - tail
            x = p + s * delta
            if x < lo_lim:
                x += wrap
            elif x > hi_lim:
                x -= wrap
            x = 0 if x < 0 else (255 if x > 255 else x)
            out[i] = x
            ew = x - pd[i]
            cur[c + 1] = ew
            i += 1
        prev = cur
    dec._code, dec._range, dec._pos = code, rng, pos
    return np.asarray(out, np.uint8).reshape(h, w)


def _decode_one_spatial(dec: RangeDecoder, shape, spatial: SpatialSet, t: ErrorTable) -> np.ndarray:
    """Table set 1, one image in plain Python: the same arithmetic as :func:`residual_lockstep.decode`'s set-1 lanes."""
    h, w = shape
    delta, m, half = geometry(t.e)
    e = t.e
    alut = spatial.activity_lut.tolist()
    smooth = e >= SMOOTH_FROM
    cdfs = t.cdf_lists
    tail, esc_sym = t.tail, 2 * t.tail + 1
    nb = max(1, (m - 1).bit_length())
    raw_shift = PRECISION - nb
    wrap = m * delta
    lo_lim, hi_lim = -e, 255 + e
    top = 1 << 24
    data, n_data = dec._data, len(dec._data)
    code, rng, pos = dec._code, dec._range, dec._pos
    prev = [0] * (w + 2)  # reconstructed row above, padded
    out = []
    for _ in range(h):
        cur = [0] * (w + 2)
        xw = 0
        for c in range(w):
            xn, xnw, xne = prev[c + 1], prev[c], prev[c + 2]
            if xw < xn:
                lo, hi = xw, xn
            else:
                lo, hi = xn, xw
            p = xw + xn - xnw
            p = lo if p < lo else (hi if p > hi else p)
            if smooth:
                p = (2 * p + xw + xn + 2) >> 2
            cdf = cdfs[alut[abs(xw - xnw) + abs(xn - xnw) + abs(xne - xn)]]
            r = rng >> PRECISION
            target = code // r
            if target >= TOTAL:
                raise CorruptCodeError("the code points outside every symbol's interval: damaged data")
            k = bisect_right(cdf, target) - 1
            lo = cdf[k]
            code -= r * lo
            rng = r * (cdf[k + 1] - lo)
            while rng < top:
                code = (code << 8) | (data[pos] if pos < n_data else 0)
                rng <<= 8
                pos += 1
            if k == esc_sym:
                r = rng >> PRECISION
                u = (code // r) >> raw_shift
                if u >= m:
                    raise CorruptCodeError("a residual escape names an impossible value: damaged data")
                code -= r * (u << raw_shift)
                rng = r << raw_shift
                while rng < top:
                    code = (code << 8) | (data[pos] if pos < n_data else 0)
                    rng <<= 8
                    pos += 1
                s = u - half
            else:
                s = k - tail
            x = p + s * delta
            if x < lo_lim:
                x += wrap
            elif x > hi_lim:
                x -= wrap
            xw = 0 if x < 0 else (255 if x > 255 else x)
            cur[c + 1] = xw
        out.extend(cur[1:-1])
        prev = cur
    dec._code, dec._range, dec._pos = code, rng, pos
    return np.asarray(out, np.uint8).reshape(h, w)


# --- export time ---------------------------------------------------------------------------
DEFAULT_BOUNDS = (0, 1, 2, 4, 8, 16, 32)
DEFAULT_LEVEL_EDGES = (8, 32, 96, 160, 224, 248)
DEFAULT_NEIGHBOUR_EDGES = (-48, -16, -6, -2, 3, 7, 17, 49)
DEFAULT_SPATIAL_THRESHOLD = 128
DEFAULT_ACTIVITY_EDGES = (2, 4, 7, 11, 16, 22, 30, 42, 60, 90, 140)
"""Buckets of ``|W - NW| + |N - NW| + |NE - N|`` for table set 1: roughly geometric, as
residual spread grows with activity (12 buckets: 450.7 ideal bytes per photo crop vs 452.5
with 7 and 502.9 with one)."""


def build_predict(levels: np.ndarray, pixels: np.ndarray) -> tuple[int, ...]:
    """Level -> grey value: the median training pixel at each level; unseen levels interpolate."""
    lv = levels.astype(np.int64).ravel() + 128
    x = pixels.astype(np.int64).ravel()
    out = np.full(256, -1, np.int64)
    order = np.argsort(lv, kind="stable")
    lv_s, x_s = lv[order], x[order]
    bounds = np.searchsorted(lv_s, np.arange(257))
    for v in range(256):
        a, b = bounds[v], bounds[v + 1]
        if b > a:
            out[v] = int(np.sort(x_s[a:b])[(b - a) // 2])
    seen = np.flatnonzero(out >= 0)
    if len(seen) == 0:
        return tuple(range(256))
    filled = np.rint(np.interp(np.arange(256), seen, out[seen])).astype(np.int64)
    return tuple(int(v) for v in np.clip(filled, 0, 255))


def build_table(
    levels: np.ndarray,
    pixels: np.ndarray,
    *,
    runtime: str = "litert",
    precision: str = "int8",
    step_index: int = 0,
    bounds=DEFAULT_BOUNDS,
    level_edges=DEFAULT_LEVEL_EDGES,
    neighbour_edges=DEFAULT_NEIGHBOUR_EDGES,
    spatial_threshold: int = DEFAULT_SPATIAL_THRESHOLD,
    max_tail: int = MAX_TAIL,
    backoff: float = 8.0,
    natural: np.ndarray | None = None,
    activity_edges=DEFAULT_ACTIVITY_EDGES,
) -> ResidualTable:
    """Estimate every table from training ``levels`` (int8) and ``pixels`` (uint8), (N, H, W).

    ``natural`` (uint8 (M, H, W), optional): images to learn table set 1 (spatial) from.
    """
    predict = build_predict(levels, pixels)
    contexts = (len(level_edges) + 1) * (len(neighbour_edges) + 1)
    shape = (tuple(level_edges), tuple(neighbour_edges), spatial_threshold)
    seed = ResidualTable(predict, *shape, {0: _flat(0, 1, contexts)}, runtime, precision)
    tables = {}
    for e in bounds:
        s, ctx, _ = symbols_and_contexts(seed, pixels, levels, e)
        tables[e] = _estimate(e, s, ctx, contexts, max_tail, backoff)
    spatial = None
    if natural is not None:
        n_act = len(activity_edges) + 1
        seed_spatial = SpatialSet(tuple(activity_edges), {0: _flat(0, 1, n_act)})
        sp_tables = {}
        for e in bounds:
            s, ctx, _ = _spatial_symbols(seed_spatial, natural.astype(np.int64), e)
            sp_tables[e] = _estimate(e, s, ctx, n_act, max_tail, backoff)
        spatial = SpatialSet(tuple(activity_edges), sp_tables)
    return ResidualTable(predict, *shape, tables, runtime, precision, step_index, spatial)


def _estimate(e: int, s: np.ndarray, ctx: np.ndarray, contexts: int, max_tail: int, backoff: float) -> ErrorTable:
    """One error bound's table from training symbols and their contexts."""
    _, m, half = geometry(e)
    tail = min(max_tail, half, m - 1 - half)
    k = s.ravel() + tail
    k = np.where((k < 0) | (k > 2 * tail), 2 * tail + 1, k)
    counts = np.bincount(ctx.ravel() * (2 * tail + 2) + k, minlength=contexts * (2 * tail + 2))
    counts = counts.reshape(contexts, 2 * tail + 2).astype(np.float64)
    pooled = counts.sum(axis=0) + 1.0
    rows = []
    for row in counts:  # back off to the pooled distribution where a context saw little
        rows.append(tuple(quantize_pmf(row + backoff * pooled / pooled.sum())))
    return ErrorTable(e, tail, tuple(rows))


def _flat(e: int, tail: int, contexts: int) -> ErrorTable:
    width = 2 * tail + 2
    row = quantize_pmf(np.ones(width))
    return ErrorTable(e, tail, tuple(tuple(row) for _ in range(contexts)))


def ideal_bits(
    table: ResidualTable, pixels: np.ndarray, levels: np.ndarray, e: int, table_set: int = NETWORK
) -> np.ndarray:
    """Ideal pixel bits per image under ``table`` (float64 (N,)), escapes included."""
    return ideal_bits_of(table, symbols_and_contexts(table, pixels, levels, e, table_set), e, table_set)


def ideal_bits_of(table: ResidualTable, symbols, e: int, table_set: int = NETWORK) -> np.ndarray:
    """:func:`ideal_bits` from the ``(s, context, x̂)`` of :func:`symbols_and_contexts`."""
    s, ctx, _ = symbols
    start, freq, esc, _, raw_freq = _slices(table.table(e, table_set), s, ctx)
    bits = PRECISION - np.log2(freq) + np.where(esc, PRECISION - np.log2(raw_freq), 0)
    return bits.reshape(len(s), -1).sum(axis=1)


__all__ = [
    "DEFAULT_BOUNDS",
    "ErrorTable",
    "ResidualTable",
    "build_table",
    "NETWORK",
    "SPATIAL",
    "encode_batch",
    "encode_choosing_set",
    "finish_decoding",
    "geometry",
    "ideal_bits",
    "image_check",
    "start_decoding",
]
