"""Residual codes of a batch of images at once, in pure numpy: the same bytes as the Python loop.

Why: a 28x28 image has 784 pixel symbols and a Python range coder spends about a microsecond
on each. A numpy step costs about the same whatever the number of lanes (one lane = one
image's range code), so the batch path does each pixel position of all images in one step
and keeps the number of numpy calls per step small: that call count, not the arithmetic,
is the cost. Nothing needs a compiler, so aarch64 devices run it as they are.

**Encoder** (:func:`encode_slices`). A range encoder's ``range`` evolves independently of
``low``: ``r = range >> 16; range = r * freq``, then renormalised by 0, 1 or 2 bytes. So the
lanes step only the unit ``r`` (four numpy calls per pixel), recording each step's ``r``; the
byte shifts follow from ``r * freq`` for all pixels at once afterwards. The settled output
and ``low`` together are one big integer
``V <- (V + r * start) * 256**shift``, so after the loop ``V`` is a sum of the terms
``r_k * start_k`` (each < 2**32) at known byte offsets: one ``bincount`` adds them per lane
and six ``int.from_bytes`` calls per lane turn the digit sums into Python integers, whose
carries the addition resolves. The termination is :meth:`RangeEncoder.finish`'s.

**Decoder** (:class:`PixelLanes`). One :meth:`PixelLanes.decode` call decodes one symbol
per lane under each lane's context row: a sorted search over all rows of the table (row
``j`` offset by ``j << 17``), a 65536-entry table for the renormalisation shift and 16-bit
input windows read by byte position, about twenty numpy calls. A target outside
``[0, 2**16)`` (damaged input) is remembered per lane and reported as
:class:`~compressor.errors.CorruptCodeError` by :meth:`PixelLanes.finish`; until then the
lane decodes harmlessly into garbage (every index stays in range, ``range`` stays sane) that
the caller never returns.
"""

from __future__ import annotations

import numpy as np

from compressor.coding.lanes import shortest_code
from compressor.coding.rangecoder import PRECISION, RangeDecoder, RangeEncoder
from compressor.errors import CorruptCodeError, about_image

_SHIFT = np.zeros(1 << 16, np.int64)
"""Renormalisation shift in bits, by ``range >> 16`` after a step: range >= 2**24 needs none,
2**16 <= range < 2**24 one byte, range < 2**16 two (range >= 2**8 always, as freq >= 1)."""
_SHIFT[:256] = 8
_SHIFT[0] = 16
_BYTES = np.array([0] * 8 + [1] * 8 + [2], np.int64)  # by shift in bits
_DOWN = PRECISION - _SHIFT
"""``((x << shift) >> 16) == x >> (16 - shift)``, by ``x >> 16``: the next step's range unit."""
_RSHIFT = 16 - np.arange(17, dtype=np.int64)  # 16 - shift: the input bits a shift takes in
_MASK32 = (1 << 32) - 1
_P = np.array(PRECISION, np.int64)
"""Constants of the hot loop as 0-d arrays: numpy handles an array operand in about half the
time of a Python int or a numpy scalar (~0.5 against ~1.1 µs on 64 lanes), and a step is
nothing but such calls."""


def encode_slices(
    encoders: list[RangeEncoder],
    start: np.ndarray,
    freq: np.ndarray,
    esc: np.ndarray,
    raw_start: np.ndarray,
    raw_freq,
) -> list[bytes]:
    """Continue every encoder (one per image, latent symbols already in) with its image's
    slices and finish it: ``start``/``freq``/``esc``/``raw_start`` are (N, P), one pixel per
    column; where ``esc``, the pixel's slice is followed by ``(raw_start, raw_freq)``
    (``raw_freq``: an int, or one per image)."""
    raw_freq = np.broadcast_to(np.asarray(raw_freq, np.int64), (len(encoders),))
    k, p = start.shape
    rng = np.array([e._range for e in encoders], np.int64)
    st = np.ascontiguousarray(start.T, np.int64)
    fr = np.ascontiguousarray(freq.T, np.int64)
    # units[j] = r of pixel j's slice (range >> 16 before it); the loop steps r alone:
    # r' = ((r * freq) << shift) >> 16 = (r * freq) >> (16 - shift), four numpy calls a pixel;
    # the shifts themselves are recomputed from r * freq for all pixels at once afterwards
    units = np.empty((p + 1, k), np.int64)
    np.right_shift(rng, PRECISION, out=units[0])
    esc_t = np.ascontiguousarray(esc.T)
    escaping = np.flatnonzero(esc_t.any(axis=1)).tolist()
    escaped = bool(escaping)
    esc_units = np.zeros((p, k), np.int64)
    esc_shifts = np.zeros((p, k), np.int64)
    table, down = _SHIFT, _DOWN
    next_escape = escaping.pop(0) if escaping else -1
    unit = units[0]
    for j, (f, following) in enumerate(zip(fr, units[1:])):  # row views, no indexing per step
        t = unit * f
        unit = following
        if j == next_escape:
            rng = t << table[t >> PRECISION]
            idx = np.flatnonzero(esc_t[j])
            re = rng[idx] >> PRECISION
            sub = re * raw_freq[idx]
            se = table[sub >> PRECISION]
            rng[idx] = sub << se
            esc_units[j, idx] = re
            esc_shifts[j, idx] = se
            np.right_shift(rng, PRECISION, out=units[j + 1])
            next_escape = escaping.pop(0) if escaping else -1
        else:
            np.right_shift(t, down[t >> _P], out=following)
    if p and not esc_t[p - 1].any():  # the final range, for the termination
        rng = t << table[t >> PRECISION]
    units = units[:p]
    shifts = table[(units * fr) >> PRECISION]
    # byte offsets: each step shifts after adding its term, an escape slice after its pixel's
    main_bytes = shifts >> 3
    step_bytes = main_bytes + (esc_shifts >> 3) if escaped else main_bytes
    done = np.cumsum(step_bytes, axis=0)  # bytes shifted up to and including pixel j
    total = done[-1] if p else np.zeros(k, np.int64)
    width = int(total.max(initial=0)) + 1
    end = total + np.arange(k, dtype=np.int64) * width  # lane i's digit 0 sits at i * width
    at_main = (end - done) + step_bytes  # digit of pixel j's term: total minus bytes shifted before it
    positions, weights = at_main.ravel(), (units * st).ravel()
    if escaped:
        j, i = np.nonzero(esc_t)
        positions = np.concatenate((positions, at_main[j, i] - main_bytes[j, i]))
        weights = np.concatenate((weights, esc_units[j, i] * raw_start[i, j]))
    sums = np.bincount(positions, weights=weights, minlength=k * width)  # exact: each < 2**53
    digits = sums.astype(np.int64)
    planes = [((digits >> (8 * b)) & 0xFF).astype(np.uint8).tobytes() for b in range(6)]  # sums < 2**48
    out = []
    for i, enc in enumerate(encoders):
        v = (int.from_bytes(enc._out, "big") << 32 | enc._low) << (8 * int(total[i]))
        lo, hi = i * width, (i + 1) * width
        for b, plane in enumerate(planes):
            v += int.from_bytes(plane[lo:hi], "little") << (8 * b)
        out.append(shortest_code(v >> 32, len(enc._out) + int(total[i]), v & _MASK32, int(rng[i])))
    return out


class _Rows:
    """Lookup arrays of one or more :class:`~compressor.coding.residual.ErrorTable` for lane
    decoding, their context rows numbered on from one table to the next (table set 1's rows
    after set 0's when a batch mixes them).

    Indexed by ``searchsorted(search, (context << 17) + target, "right")``, i.e. one past the
    slot's global position. A target >= 2**16 (damaged input: before the first damage,
    ``code < range`` keeps targets below 2**16 + 256) lands one past its row's closing
    ``TOTAL``; that position is flagged like an ESCAPE, so the one rare-path check per step
    finds both, and :meth:`PixelLanes._escapes` tells them apart.
    """

    def __init__(self, tables):
        search, start, freq, symbol, escape, damaged = [], [[0]], [[1]], [[0]], [[False]], [[True]]
        first = 0
        for t in tables:
            contexts, width = t.cdf.shape  # width = 2T + 3 cumulative entries per row
            flat = t.cdf.ravel()
            search.append((t.cdf + (np.arange(first, first + contexts, dtype=np.int64) << 17)[:, None]).ravel())
            slot = np.tile(np.arange(width, dtype=np.int64), contexts)
            f = np.append(flat[1:] - flat[:-1], 1)
            closing = slot == width - 1
            f[closing] = 1
            start.append(flat)
            freq.append(f)
            symbol.append(np.where(closing, 0, slot - t.tail))
            escape.append(slot == width - 2)
            damaged.append(closing)
            first += contexts
        self.search = np.concatenate(search)
        self.start = np.concatenate(start).astype(np.int64)
        self.freq = np.concatenate(freq).astype(np.int64)
        self.symbol = np.concatenate(symbol).astype(np.int64)
        self.escape = np.concatenate(escape)
        self.damaged = np.concatenate(damaged)
        self.rare = self.escape | self.damaged  # what the per-step check looks for


def rows_of(*tables) -> _Rows:
    """The lane lookup arrays of one error table (or of several, rows numbered on), built
    once and kept on the first table."""
    cache = tables[0].__dict__.get("_lane_rows")
    if cache is None:
        cache = {}
        object.__setattr__(tables[0], "_lane_rows", cache)
    key = tuple(id(t) for t in tables[1:])
    hit = cache.get(key)
    if hit is None or any(a is not b for a, b in zip(hit[0], tables[1:])):
        hit = (tables[1:], _Rows(tables))
        cache[key] = hit
    return hit[1]


class PixelLanes:
    """K range decoders (one per image) decoding residual symbols in lock-step.

    ``tables``: one :class:`~compressor.coding.residual.ErrorTable`, or a list whose context
    rows are numbered on (see :class:`_Rows`); every table shares the error bound, hence
    ``m``, ``half`` and ``raw_shift``. ``images``: each lane's image number for error messages
    (default: the lane number)."""

    def __init__(
        self, decoders: list[RangeDecoder], tables, m: int, half: int, raw_shift: int, slices: int, images=None
    ):
        k = len(decoders)
        # every slice reads at most 2 bytes, so the input never runs past this width, and
        # bytes beyond it (a damaged payload padded with megabytes) are never copied
        width = max(d._pos for d in decoders) + 2 * slices + 8
        buf = np.zeros((k, width + 1), np.uint8)
        for i, d in enumerate(decoders):
            part = d._data[:width]
            buf[i, : len(part)] = np.frombuffer(part, np.uint8)
        window = buf[:, :-1].astype(np.int64)  # the 2 bytes at each position, built in place:
        window <<= 8  # the width is mostly slack for damaged lanes, and int64 temporaries of it
        window |= buf[:, 1:]  # took ~1.5 ms a 64-image batch
        self.window = window.ravel()
        self.base = np.arange(k, dtype=np.int64) * width
        self.decoders = decoders
        self.images = list(range(k)) if images is None else [int(i) for i in images]
        self.code = np.array([d._code for d in decoders], np.int64)
        self.rng = np.array([d._range for d in decoders], np.int64)
        self.at = self.base + np.array([d._pos for d in decoders], np.int64)  # next input byte, in window
        self.bad = np.zeros(k, bool)
        self.rows = rows = rows_of(*tables) if isinstance(tables, (list, tuple)) else rows_of(tables)
        self._search, self._freq, self._start = rows.search.searchsorted, rows.freq, rows.start
        self._symbol, self._rare = rows.symbol, rows.rare
        self.m, self.half, self.raw_shift = m, half, raw_shift

    def decode(self, context17: np.ndarray) -> np.ndarray:
        """One symbol per lane; ``context17`` = each lane's context row << 17. Returns ``s``."""
        r = self.rng >> _P
        g = self._search(context17 + self.code // r, "right")
        rng = r * self._freq[g]
        sh = _SHIFT[rng >> _P]
        self.rng = rng << sh
        self.code = ((self.code - r * self._start[g]) << sh) | (self.window[self.at] >> _RSHIFT[sh])
        self.at += _BYTES[sh]
        s = self._symbol[g]
        if np.count_nonzero(self._rare[g]):
            self._escapes(s, g)
        return s

    def _escapes(self, s: np.ndarray, g: np.ndarray) -> None:
        """Lanes whose symbol is an ESCAPE: read their uniform slot ``u`` (``s = u - M//2``);
        lanes that reached a row's end are damaged."""
        self.bad |= self.rows.damaged[g]
        idx = np.flatnonzero(self.rows.escape[g])
        r = self.rng[idx] >> _P
        u = (self.code[idx] // r) >> self.raw_shift
        self.bad[idx] |= u >= self.m
        u = np.minimum(u, self.m - 1)
        rng = r << self.raw_shift
        sh = _SHIFT[rng >> _P]
        self.rng[idx] = rng << sh
        self.code[idx] = ((self.code[idx] - r * (u << self.raw_shift)) << sh) | (self.window[self.at[idx]] >> (16 - sh))
        self.at[idx] += _BYTES[sh]
        s[idx] = u - self.half

    def finish(self) -> list[bool]:
        """Raise ``CorruptCodeError`` for a lane that was damaged; per lane, whether its input
        is exactly what the encoder writes (:meth:`RangeDecoder.is_canonical`)."""
        if np.count_nonzero(self.bad):
            i = min(self.images[j] for j in np.flatnonzero(self.bad))
            raise about_image(
                CorruptCodeError(
                    "the code points outside every symbol's interval, or an escape names an impossible value: "
                    "damaged data"
                ),
                i,
            )
        ok = []
        pos = self.at - self.base
        for i, d in enumerate(self.decoders):
            d._code, d._range, d._pos = int(self.code[i]), int(self.rng[i]), int(pos[i])
            ok.append(d.is_canonical())
        return ok


__all__ = ["PixelLanes", "encode_slices", "rows_of"]
