"""Binary residual codes, second layout (``coding.json`` section ``binary_context2``).

What changed from :mod:`compressor.coding.binary_context` (layout 1), and what each bought on
the mnist5k test split with the default 30-epoch model (bench/binary_targets.py):

- **Context**: level bucket ``(v + 128) >> 3`` (32) x the six neighbours W, N, NW, NE, WW, NN
  (64) x whether each of W, N, NW, NE disagrees with its own level's verdict ``v >= 0`` (16):
  32,768 contexts. Where the decoder was wrong next door it is likely wrong here; this cuts
  ideal pixel bytes from 10.6 to 10.25 per image (at step 0.75). The table is estimated at export with
  backoff (each context shrunk toward its level x neighbours parent, and that toward its
  level), so sparse contexts stay calibrated.
- **Step per image**: the payload names its own latent step, so the encoder picks, per image,
  the step that makes the whole code (latent + pixels) shortest: 0.85 byte per message, 0.6
  per image in a stream (whose header step is only the default).
- **No parameter byte**: the step and the band are the first two symbols of the range code,
  under fixed tables that make the common case cheap (the header's step, band 127: about one
  bit each): ~0.75 byte per lossless code; a near-lossless band costs 8 bits, as before.

Payload: ``check (2 bytes) || range code`` of: step index (table :func:`step_cdf` of the
header's step), band (:data:`BAND_CDF`), the D latent symbols at that step (as in mode 0),
then the pixels the band selects in raster order, one binary slot each: ink ``(0, f)``,
background ``(f, 2**16 - f)``, ``f = p1_freq[context]``. The band rule is layout 1's
(``min(f, 2**16 - f) >= CUT[band]``, else the model's verdict ``f >= 2**15``).

Near-lossless: besides the band, the encoder may code any image the decoder reproduces (the
check covers the reconstruction). The codec's encoder (:mod:`compressor.binary_rd`) picks the
latent, the step and the wrong pixels and hands the image to code to :func:`encode_one`; the
``lie``/``lie_at`` arguments and :func:`costliest` (an earlier encoder's choice) stay for the
conformance vectors that were made with them (tests/vectors/make_vectors.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from compressor.coding import binary_context
from compressor.coding.binary_context import CUT, HALF, LOSSLESS_BAND
from compressor.coding.entropy import CdfTable, as_symbols, decode_row, encode_row
from compressor.coding.lanes import LaneDecoder
from compressor.coding.lossless import image_check
from compressor.coding.rangecoder import TOTAL, RangeDecoder, RangeEncoder
from compressor.coding.residual import CHECK_BYTES
from compressor.errors import (
    CodeError,
    CorruptCodeError,
    LosslessMismatchError,
    ManifestError,
    TruncatedCodeError,
    about_image,
)

LEVEL_SHIFT = 3
LEVELS = 256 >> LEVEL_SHIFT
PATTERNS = 1024  # 64 neighbour patterns x 16 disagreement patterns
CONTEXTS = LEVELS * PATTERNS
MAX_STEPS = 16
_TOTAL64 = np.uint64(TOTAL)
_OTHER_BAND = 256


@functools.lru_cache(maxsize=MAX_STEPS * MAX_STEPS)
def step_cdf(header_index: int, n_steps: int) -> tuple[int, ...]:
    """Cumulative frequencies of the step symbol: ``max(2**(14 - |s - h|), 16)`` for each step
    ``s`` but the header's ``h``, which takes the rest (at least half): a stream's images cost
    3 bits one step from the header, 4 bits two away, and so on."""
    freqs = [max(1 << max(14 - abs(s - header_index), 0), 16) for s in range(n_steps)]
    freqs[header_index] = TOTAL - (sum(freqs) - freqs[header_index])
    return (0, *np.cumsum(freqs).tolist())


BAND_CDF = [0, *np.cumsum([_OTHER_BAND] * LOSSLESS_BAND + [TOTAL - _OTHER_BAND * LOSSLESS_BAND]).tolist()]
"""Cumulative frequencies of the band symbol: 256 for bands 0..126, 33,024 for band 127."""


@dataclass(frozen=True)
class ContextTable2(binary_context.ContextTable):
    """Context -> 16-bit ink frequency (32,768 entries), and what must produce the levels; the
    JSON form and its reader are layout 1's."""

    SECTION: ClassVar[str] = "binary_context2"

    p1_freq: tuple[int, ...]
    runtime: str
    precision: str
    step_index: int = 0
    freq_array: np.ndarray = field(init=False, repr=False, compare=False)  # p1_freq as int64, for numpy lookups
    ink_bits: np.ndarray = field(init=False, repr=False, compare=False)  # -log2 P(ink | context)
    background_bits: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        f = self.p1_freq
        if len(f) != CONTEXTS or not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x < TOTAL for x in f):
            raise ManifestError(f"binary_context2.p1_freq must be {CONTEXTS} integers in 1..65535")
        if not isinstance(self.step_index, int) or not 0 <= self.step_index < MAX_STEPS:
            raise ManifestError(f"binary_context2.step_index must be an integer 0..{MAX_STEPS - 1}")
        object.__setattr__(self, "p1_freq", tuple(f))
        object.__setattr__(self, "freq_array", np.asarray(f, np.int64))
        object.__setattr__(self, "ink_bits", -np.log2(self.freq_array / TOTAL))
        object.__setattr__(self, "background_bits", -np.log2(1 - self.freq_array / TOTAL))


def contexts(recon: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Context index of every pixel of a batch (N, H, W) given the full reconstruction."""
    n, h, w = recon.shape
    p = np.zeros((n, h + 2, w + 4), np.int64)
    p[:, 2:, 2:-2] = recon
    verdict = np.zeros((n, h + 2, w + 4), np.int64)
    verdict[:, 2:, 2:-2] = levels >= 0
    wrong = p ^ verdict

    def at(a, dr: int, dc: int) -> np.ndarray:
        return a[:, 2 + dr : 2 + dr + h, 2 + dc : 2 + dc + w]

    nbrs = at(p, 0, -1) + 2 * at(p, -1, 0) + 4 * at(p, -1, -1) + 8 * at(p, -1, 1) + 16 * at(p, 0, -2)
    nbrs = nbrs + 32 * at(p, -2, 0)
    errs = at(wrong, 0, -1) + 2 * at(wrong, -1, 0) + 4 * at(wrong, -1, -1) + 8 * at(wrong, -1, 1)
    return _level_base(levels) + nbrs * 16 + errs


def _level_base(levels: np.ndarray) -> np.ndarray:
    return ((levels.astype(np.int64) + 128) >> LEVEL_SHIFT) * PATTERNS


def build_table(
    levels: np.ndarray, bits: np.ndarray, *, runtime="litert", precision="int8", step_index=0
) -> ContextTable2:
    """Estimate ``p1_freq`` from training int8 levels and true bits, with backoff:
    level (prior: the level's nominal probability) -> level x neighbours -> x disagreements."""
    bits = bits.astype(bool)
    ctx = contexts(bits, levels).ravel()
    ink = bits.ravel()

    def estimate(index, size, prior, weight):
        n = np.bincount(index, minlength=size).astype(np.float64)
        n1 = np.bincount(index[ink], minlength=size).astype(np.float64)
        return (n1 + weight * prior) / (n + weight)

    level = ctx // PATTERNS
    nominal = (np.arange(LEVELS) * (1 << LEVEL_SHIFT) + (1 << (LEVEL_SHIFT - 1)) + 0.5) / 256
    p_level = estimate(level, LEVELS, nominal, 2.0)
    p_nbrs = estimate(ctx // 16, LEVELS * 64, np.repeat(p_level, 64), 2.0)
    p = estimate(ctx, CONTEXTS, np.repeat(p_nbrs, 16), 4.0)
    freq = tuple(int(f) for f in np.clip(np.rint(p * TOTAL), 1, TOTAL - 1))
    return ContextTable2(freq, runtime, precision, step_index)


def pixel_bits(table: ContextTable2, bits: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Ideal pixel bits per image of lossless codes (float64 (N,))."""
    return pixel_bits_by_step(table, bits, [levels])[0]


def pixel_bits_by_step(table: ContextTable2, bits: np.ndarray, levels_by_step) -> np.ndarray:
    """:func:`pixel_bits` for the same images (N, H, W) under each step's levels: (steps, N).
    The neighbour part of the contexts is computed once (the encoder's step search)."""
    nbrs = neighbour_part(bits)
    return np.stack([pixel_bits_given(table, bits, nbrs, levels) for levels in levels_by_step])


def neighbour_part(bits: np.ndarray) -> np.ndarray:
    """What every pixel's lossless context takes from the true bits alone, computed once for
    all steps: int16 (N, 6, H, W) = [neighbour pattern x 16, W, N, NW, NE, the pixel itself]."""
    n, h, w = bits.shape
    p = np.zeros((n, h + 2, w + 4), np.int16)
    p[:, 2:, 2:-2] = bits
    west, north, nw, ne = p[:, 2:, 1:-3], p[:, 1:-1, 2:-2], p[:, 1:-1, 1:-3], p[:, 1:-1, 3:-1]
    pattern = west + 2 * north + 4 * nw + 8 * ne + 16 * p[:, 2:, :-4] + 32 * p[:, :-2, 2:-2]
    return np.stack([pattern * 16, west, north, nw, ne, bits.astype(np.int16)], axis=1)


def _verdict_shifts(levels: np.ndarray) -> np.ndarray:
    v = np.zeros((len(levels), levels.shape[1] + 2, levels.shape[2] + 4), np.int16)
    v[:, 2:, 2:-2] = levels >= 0
    return v[:, 2:, 1:-3], v[:, 1:-1, 2:-2], v[:, 1:-1, 1:-3], v[:, 1:-1, 3:-1]


def pixel_bits_given(table: ContextTable2, bits: np.ndarray, nbrs: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Ideal pixel bits per image (N,) of lossless codes, given :func:`neighbour_part`."""
    vw, vn, vnw, vne = _verdict_shifts(levels)
    errs = (nbrs[:, 1] ^ vw) + 2 * (nbrs[:, 2] ^ vn) + 4 * (nbrs[:, 3] ^ vnw) + 8 * (nbrs[:, 4] ^ vne)
    ctx = _level_base(levels) + (nbrs[:, 0] + errs)
    cost = np.where(nbrs[:, 5].astype(bool), table.ink_bits[ctx], table.background_bits[ctx])
    return cost.reshape(len(bits), -1).sum(axis=1)


def header_bits(index: int, header_index: int, n_steps: int, band: int) -> float:
    """Ideal bits of the step and band symbols."""
    s, b = step_cdf(header_index, n_steps), BAND_CDF
    return 32 - math.log2(s[index + 1] - s[index]) - math.log2(b[band + 1] - b[band])


def encode_one(
    index: int,
    header_index: int,
    n_steps: int,
    symbols,
    bits,
    levels,
    ct: CdfTable,
    table: ContextTable2,
    band: int,
    lie: float = 0.0,
    lie_at=(),
) -> tuple[bytes, np.ndarray]:
    """``(payload, reconstruction)``: the payload (check || range code) of latent ``symbols`` at
    step ``index``, ``bits`` and ``levels`` (H, W), and the image the receiver will decode.

    The encoder codes a pixel as its likely value instead of the truth where the truth costs
    ``lie`` bits more, and at the raster indices ``lie_at`` (see :func:`costliest`)."""
    enc = RangeEncoder()
    cdf = step_cdf(header_index, n_steps)
    enc.encode(cdf[index], cdf[index + 1] - cdf[index])
    enc.encode(BAND_CDF[band], BAND_CDF[band + 1] - BAND_CDF[band])
    encode_row(enc, as_symbols(symbols, len(ct.lo)), ct)
    if (
        band == LOSSLESS_BAND and lie <= 0 and not len(lie_at)
    ):  # every pixel coded: contexts from the true bits, all at once
        recon = bits.astype(bool)
        f = table.freq_array[contexts(recon[None], levels[None])[0]].ravel()
        ink = recon.ravel()
        _encode_pixels(enc, f.tolist(), ink.tolist())
    else:
        recon = _encode_band(enc, bits, levels, table, band, lie, frozenset(lie_at))
    return image_check(recon) + enc.finish(), recon.astype(np.uint8)


def _encode_pixels(enc: RangeEncoder, freqs, inks) -> None:
    """:meth:`RangeEncoder.encode` of each pixel's slot (ink ``(0, f)``, background
    ``(f, TOTAL - f)``), inlined: the same arithmetic, ~2x faster than generic slices."""
    low, rng, out = enc._low, enc._range, enc._out
    top, mask = 1 << 24, (1 << 32) - 1
    for f, b in zip(freqs, inks):
        r = rng >> 16
        rf = r * f
        if b:
            rng = rf
        else:
            low += rf
            if low >> 32:  # carry into the settled bytes
                j = len(out) - 1
                while out[j] == 0xFF:
                    out[j] = 0
                    j -= 1
                out[j] += 1
                low &= mask
            rng = (r << 16) - rf
        while rng < top:
            out.append(low >> 24)
            low = (low << 8) & mask
            rng <<= 8
    enc._low, enc._range = low, rng


def _row_above(prev2, prev, eprev, w):
    """Per column, the context part from the two rows above (N, NW, NE, NN and their
    disagreements), so that the per-pixel loop only adds the left neighbours."""
    return [
        16 * (2 * prev[c] + 4 * prev[c - 1] + 8 * prev[c + 1] + 32 * prev2[c])
        + 2 * eprev[c]
        + 4 * eprev[c - 1]
        + 8 * eprev[c + 1]
        for c in range(2, w + 2)
    ]


def _encode_band(
    enc: RangeEncoder, bits, levels, table: ContextTable2, band: int, lie: float, lie_at: frozenset = frozenset()
) -> np.ndarray:
    """Code the pixels the band selects, in raster order, lying where it saves ``lie`` bits;
    return the receiver's reconstruction."""
    h, w = levels.shape
    base = _level_base(levels).ravel().tolist()
    verdict = (levels >= 0).astype(np.int64).ravel().tolist()
    truth = bits.astype(np.int64).ravel().tolist()
    freq, cut, encode = table.p1_freq, CUT[band], enc.encode
    # lying pays where log2(p(likely) / p(true)) > lie, i.e. p(true) * 2**lie < p(likely)
    ratio = 2.0**lie if lie > 0 else 0.0
    prev2, prev, eprev = [0] * (w + 4), [0] * (w + 4), [0] * (w + 4)
    out = [0] * (h * w)
    i = 0
    for _ in range(h):
        up = _row_above(prev2, prev, eprev, w)
        cur, ecur = [0] * (w + 4), [0] * (w + 4)
        b1 = b2 = e1 = 0  # W, WW and W's disagreement
        for c in range(w):
            f = freq[base[i] + up[c] + 16 * b1 + 256 * b2 + e1]
            likely = 1 if f >= HALF else 0
            if (f if f < HALF else TOTAL - f) >= cut:
                b = truth[i]
                if b != likely:
                    p_true, p_likely = (f, TOTAL - f) if b else (TOTAL - f, f)
                    if (ratio and p_true * ratio < p_likely) or i in lie_at:
                        b = likely
                if b:
                    encode(0, f)
                else:
                    encode(f, TOTAL - f)
            else:
                b = likely
            e1 = b ^ verdict[i]
            cur[c + 2], ecur[c + 2] = b, e1
            b2, b1 = b1, b
            out[i] = b
            i += 1
        prev2, prev, eprev = prev, cur, ecur
    return np.asarray(out, np.uint8).reshape(h, w)


def costliest(table: ContextTable2, bits: np.ndarray, levels: np.ndarray, k: int, min_bits: float = 1.0):
    """Raster indices of the ``k`` pixels of one image (H, W) whose true value costs most over
    their likely one under lossless contexts (at least ``min_bits`` more): where ``k`` wrong
    pixels save the most bytes (the contexts after them change, so this is a good guess)."""
    f = table.freq_array[contexts(bits[None].astype(bool), levels[None])[0]].ravel() / TOTAL
    truth = bits.ravel().astype(bool)
    likely = f >= 0.5
    saving = np.where(truth != likely, np.abs(np.log2(f) - np.log2(1 - f)), 0.0)
    order = np.argsort(-saving, kind="stable")[:k]
    return order[saving[order] >= min_bits].tolist()


def start_decoding(payload: bytes, header_index: int, tables: list[CdfTable]):
    """Phase 1: ``(step index, band, latent symbols, range decoder, check)``."""
    if len(payload) < CHECK_BYTES:
        raise TruncatedCodeError(f"a binary residual payload is at least {CHECK_BYTES} bytes (its image check)")
    dec = RangeDecoder(payload[CHECK_BYTES:])
    index = dec.decode(step_cdf(header_index, len(tables)))
    band = dec.decode(BAND_CDF)
    return index, band, decode_row(dec, tables[index]), dec, payload[:CHECK_BYTES]


def finish_decoding(dec: RangeDecoder, check: bytes, levels: np.ndarray, table: ContextTable2, band: int) -> np.ndarray:
    """One image's pixels (uint8 0/1, (H, W)) under the receiver's own int8 ``levels``."""
    if CUT[band] <= 1:  # every pixel coded (lossless): the short loop
        return verified(dec, _decode_all(dec, levels, table), check, table)
    h, w = levels.shape
    base = _level_base(levels).ravel().tolist()
    verdict = (levels >= 0).astype(np.int64).ravel().tolist()
    freq, cut = table.p1_freq, CUT[band]
    data, n_data = dec._data, len(dec._data)
    code, rng, pos = dec._code, dec._range, dec._pos  # the range decoder, inlined: ~3x faster
    top = 1 << 24
    prev2, prev, eprev = [0] * (w + 4), [0] * (w + 4), [0] * (w + 4)
    out = [0] * (h * w)
    i = 0
    for _ in range(h):
        up = _row_above(prev2, prev, eprev, w)
        cur, ecur = [0] * (w + 4), [0] * (w + 4)
        b1 = b2 = e1 = 0
        for c in range(w):
            f = freq[base[i] + up[c] + 16 * b1 + 256 * b2 + e1]
            if (f if f < HALF else TOTAL - f) >= cut:
                r = rng >> 16
                target = code // r
                if target >= TOTAL:
                    raise CorruptCodeError("the code points outside every symbol's interval: damaged data")
                if target < f:
                    b = 1
                    rng = r * f
                else:
                    b = 0
                    code -= r * f
                    rng = r * (TOTAL - f)
                while rng < top:
                    code = (code << 8) | (data[pos] if pos < n_data else 0)
                    rng <<= 8
                    pos += 1
            else:
                b = 1 if f >= HALF else 0
            e1 = b ^ verdict[i]
            cur[c + 2], ecur[c + 2] = b, e1
            b2, b1 = b1, b
            out[i] = b
            i += 1
        prev2, prev, eprev = prev, cur, ecur
    dec._code, dec._range, dec._pos = code, rng, pos
    return verified(dec, np.asarray(out, np.uint8).reshape(h, w), check, table)


def _decode_all(dec: RangeDecoder, levels: np.ndarray, table: ContextTable2) -> np.ndarray:
    """:func:`finish_decoding`'s pixels when the band codes every pixel, unchecked: the same
    arithmetic, arranged for CPython. Each pixel is kept as ``16 * bit + disagreement``, which
    is also what its right neighbour's context takes from it (plus 256 x the one before), so
    a row's context parts from the two rows above come from one comprehension; the division
    of the range decoder becomes a product (``code < r * f`` is ``code // r < f``)."""
    h, w = levels.shape
    base = _level_base(levels).ravel().tolist()
    verdict = (levels >= 0).astype(np.int64).ravel().tolist()
    freq = table.p1_freq
    data, n_data = dec._data, len(dec._data)
    code, rng, pos = dec._code, dec._range, dec._pos
    top = 1 << 24
    prev2 = prev = [0] * (w + 2)  # rows above, padded by a column each side
    rows = []
    for o in range(0, h * w, w):
        ups = [
            u + 2 * a + 4 * left + 8 * right + 32 * (nn & 16)
            for u, left, a, right, nn in zip(base[o : o + w], prev, prev[1:], prev[2:], prev2[1:])
        ]
        cur = [0]
        keep = cur.append
        side = b1 = 0  # the context part from W and WW
        for u, v in zip(ups, verdict[o : o + w]):
            f = freq[u + side]
            r = rng >> 16
            rf = r * f
            if code < rf:  # ink
                rng = rf
                a = 17 - v
                side = a + 256 * b1
                b1 = 1
            else:
                code -= rf
                rng = (r << 16) - rf
                if code >= rng:
                    raise CorruptCodeError("the code points outside every symbol's interval: damaged data")
                side = v + 256 * b1
                a = v
                b1 = 0
            keep(a)
            while rng < top:
                code = (code << 8) | (data[pos] if pos < n_data else 0)
                rng <<= 8
                pos += 1
        keep(0)
        rows.append(cur)
        prev2, prev = prev, cur
    dec._code, dec._range, dec._pos = code, rng, pos
    return (np.asarray(rows, np.uint8)[:, 1:-1] >> 4).astype(np.uint8)


def verified(dec: RangeDecoder, bits: np.ndarray, check: bytes, table: ContextTable2) -> np.ndarray:
    """``bits`` if the code ended canonically and the image passes its check, else the error."""
    if not dec.is_canonical():
        if image_check(bits) == check:  # the right pixels, then bytes the encoder never writes: damage
            raise CorruptCodeError(
                "binary residual code is not what the encoder writes (extra, missing or changed bytes): damaged data"
            )
        raise LosslessMismatchError(
            "the binary residual code does not end where this decoder's probabilities say: this device's int8 "
            f"decoder does not reproduce the sender's (these codes need {table.runtime} {table.precision} on both "
            "sides, same build), or the data is damaged"
        )
    if image_check(bits) != check:
        raise LosslessMismatchError(
            "the decoded image fails its check: this device's int8 decoder does not reproduce the sender's "
            f"probabilities (these codes need {table.runtime} {table.precision} on both sides, same build), "
            "or the data is damaged"
        )
    return bits


def finish_many(decoders, checks, levels: np.ndarray, table: ContextTable2, bands) -> np.ndarray:
    """Every image's pixels (uint8 0/1, (N, H, W)), verified; in lanes from
    :data:`LANE_THRESHOLD` images on. Errors name the image."""
    if len(decoders) < LANE_THRESHOLD:
        out = []
        for i, (d, c, v, b) in enumerate(zip(decoders, checks, levels, bands, strict=True)):
            try:
                out.append(finish_decoding(d, c, v, table, b))
            except CodeError as err:
                raise about_image(err, i) from err
        return np.stack(out)
    out, damaged = finish_lanes(decoders, levels, table, bands)
    for i, (d, c, bits) in enumerate(zip(decoders, checks, out, strict=True)):
        try:
            if damaged[i]:  # in image order, as the one-image path would refuse it
                raise CorruptCodeError("the code points outside every symbol's interval: damaged data")
            verified(d, bits, c, table)
        except CodeError as err:
            raise about_image(err, i) from err
    return out


LANE_THRESHOLD = 128
"""From this many images on, :func:`finish_lanes` decodes them in numpy lock-step (one step
per pixel position costs ~20 numpy calls whatever the batch, so it pays only for big batches)."""


def finish_lanes(
    decoders: list[RangeDecoder], levels: np.ndarray, table: ContextTable2, bands
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`finish_decoding`'s pixels for many images (N, H, W) at once, one numpy step per
    pixel position (the same arithmetic; the caller verifies ends and checks): uint8 0/1, and
    per image whether its code pointed outside every slice (damaged; its pixels are junk)."""
    n, h, w = levels.shape
    base = _level_base(levels).reshape(n, h * w).T.copy()  # (H*W, N), pixel-major
    verdict = (levels >= 0).reshape(n, h * w).T.astype(np.int64)
    cut = np.asarray([CUT[b] for b in bands], np.int64)
    freq = table.freq_array
    rec = np.zeros((h + 2, w + 4, n), np.int64)
    err = np.zeros((h + 2, w + 4, n), np.int64)
    lanes = LaneDecoder(decoders, steps=h * w)
    i = 0
    for r in range(2, h + 2):
        up, up2, eup = rec[r - 1], rec[r - 2], err[r - 1]
        above = 16 * (2 * up[2:-2] + 4 * up[1:-3] + 8 * up[3:-1] + 32 * up2[2:-2]) + 2 * eup[2:-2] + 4 * eup[1:-3]
        above += 8 * eup[3:-1]
        row, erow = rec[r], err[r]
        for c in range(2, w + 2):
            f = freq[base[i] + above[c - 2] + 16 * row[c - 1] + 256 * row[c - 2] + erow[c - 1]]
            b = (f >= HALF).astype(np.int64)
            coded = np.minimum(f, TOTAL - f) >= cut
            k = np.count_nonzero(coded)
            if k:
                idx = None if k == n else np.flatnonzero(coded)
                fc = f.astype(np.uint64) if idx is None else f[idx].astype(np.uint64)
                target, unit = lanes.targets(idx)
                ink = target < fc
                lanes.advance(unit, np.where(ink, 0, fc).astype(np.uint64), np.where(ink, fc, _TOTAL64 - fc), idx)
                if idx is None:
                    b = ink.astype(np.int64)
                else:
                    b[idx] = ink
            row[c] = b
            erow[c] = b ^ verdict[i]
            i += 1
    for j, d in enumerate(decoders):
        d._code, d._range, d._pos = int(lanes.code[j]), int(lanes.rng[j]), int(lanes.pos[j])
    return rec[2:, 2:-2].transpose(2, 0, 1).astype(np.uint8), lanes.bad
