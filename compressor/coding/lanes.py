"""Many independent range coders stepped together with numpy: one lane per image.

Why: a residual code has one symbol per pixel (784 for a 28x28 image), and a pure-Python
coder spends about a microsecond per symbol. When a batch of images is coded, each image
has its own range code, so the K codes can advance in lock-step: one numpy operation does
the same arithmetic step for all K lanes. Nothing changes in the bytes: every lane runs
exactly the arithmetic of :class:`compressor.coding.rangecoder.RangeEncoder` /
:class:`~compressor.coding.rangecoder.RangeDecoder` (same 32-bit window, same renormalisation,
same minimal termination), so a lane's output is byte-identical to the scalar coder fed
the same ``(start, freq)`` slices, and either can decode the other's codes.

Lanes start from a scalar coder's state (:meth:`LaneEncoder.from_scalar`), so a payload can
code its few latent symbols with the scalar coder and continue with its pixels here.

Carries: a lane's settled bytes are kept as integer *digits* that may exceed 255 (a carry
adds one to the last settled digit); :meth:`LaneEncoder.finish` resolves them once, with
Python integers, so the hot loop never ripples a carry.
"""

from __future__ import annotations

import numpy as np

from compressor.coding.rangecoder import PRECISION, RangeDecoder, RangeEncoder

_TOP = np.uint64(1 << 24)
_MASK32 = np.uint64((1 << 32) - 1)
_P = np.uint64(PRECISION)
_P_TOTAL_MINUS_1 = np.uint64((1 << PRECISION) - 1)
_SH8 = np.uint64(8)
_SH24 = np.uint64(24)
_SH32 = np.uint64(32)
_SH16 = np.uint64(16)
_SH3 = np.uint64(3)
_TOP16 = np.uint64(1 << 16)
_BYTE = np.uint64(0xFF)
_TWO = np.uint64(2)
MAX_RENORM = 2
"""Bytes one step can move: range >= 2**24 before, >= 2**8 after (freq >= 1), so a step
renormalises by 0, 1 or 2 bytes, which the lanes do in one go rather than in a loop."""


class LaneEncoder:
    """K range encoders; ``encode(starts, freqs)`` narrows every lane (or a subset) at once."""

    def __init__(self, k: int, capacity: int):
        self.k = k
        self.capacity = capacity
        self.low = np.zeros(k, np.uint64)
        self.rng = np.full(k, 0xFFFFFFFF, np.uint64)
        self.pos = np.zeros(k, np.int64)
        self.digits = np.zeros(k * capacity, np.uint64)  # lane-major, digit j of lane i at i*capacity + j
        self._base = np.arange(k, dtype=np.int64) * capacity

    @classmethod
    def from_scalar(cls, encoders: list[RangeEncoder], symbols_left: int) -> LaneEncoder:
        """Continue ``encoders`` (one per lane) for at most ``symbols_left`` more slices."""
        settled = [bytes(e._out) for e in encoders]
        lanes = cls(len(encoders), max(map(len, settled)) + MAX_RENORM * symbols_left + 8)
        for i, (e, out) in enumerate(zip(encoders, settled, strict=True)):
            lanes.low[i] = e._low
            lanes.rng[i] = e._range
            lanes.pos[i] = len(out)
            lanes.digits[i * lanes.capacity : i * lanes.capacity + len(out)] = np.frombuffer(out, np.uint8)
        return lanes

    def encode(self, starts: np.ndarray, freqs: np.ndarray, lanes: np.ndarray | None = None) -> None:
        """Narrow each lane to its slice ``[start, start + freq)`` of ``[0, TOTAL)``.

        ``starts``/``freqs`` are uint64, one per lane (or per entry of ``lanes``, an index
        array, to step only those). Slices are trusted: callers build them from valid tables.
        """
        if lanes is None:
            low, rng, pos, base = self.low, self.rng, self.pos, self._base
        else:
            low, rng, pos, base = self.low[lanes], self.rng[lanes], self.pos[lanes], self._base[lanes]
        r = rng >> _P
        low = low + r * starts
        at = base + pos
        # a carry out of the 32-bit window adds one to the last settled digit; branch-free: every
        # lane adds its carry bit (a lane with no settled digit yet cannot carry, so its 0 lands
        # harmlessly in the slack of another lane)
        self.digits[at - 1] += low >> _SH32
        low &= _MASK32
        rng = r * freqs
        # renormalise by 0, 1 or 2 bytes at once: both candidate bytes are written, only
        # ``count`` of them are kept (a later byte overwrites a discarded one)
        count = (rng < _TOP).astype(np.uint64) + (rng < _TOP16)
        self.digits[at] = low >> _SH24
        self.digits[at + 1] = (low >> _SH16) & _BYTE
        shift = count << _SH3
        low = (low << shift) & _MASK32
        rng = rng << shift
        pos = pos + count.astype(np.int64)
        if lanes is None:
            self.low, self.rng, self.pos = low, rng, pos
        else:
            self.low[lanes], self.rng[lanes], self.pos[lanes] = low, rng, pos

    def finish(self) -> list[bytes]:
        """Every lane's shortest code, exactly as :meth:`RangeEncoder.finish` would write it."""
        out = []
        for i in range(self.k):
            n = int(self.pos[i])
            d = self.digits[i * self.capacity : i * self.capacity + n]
            settled = int.from_bytes((d & 0xFF).astype(np.uint8).tobytes(), "big")
            high_part = d >> 8
            if high_part.any():  # carries: digits above 255 (each < 2**16 for any real code)
                settled += int.from_bytes(high_part.astype(np.uint8).tobytes(), "big") << 8
            out.append(shortest_code(settled, n, int(self.low[i]), int(self.rng[i])))
        return out


def shortest_code(settled: int, shifts: int, low32: int, rng: int) -> bytes:
    """The termination of :meth:`RangeEncoder.finish` for an interval given by its parts."""
    low = (settled << 32) + low32
    if low == 0:
        return b""
    high = low + rng - 1
    zero_bytes = (((low - 1) ^ high).bit_length() - 1) >> 3
    value = ((low - 1) >> (8 * zero_bytes)) + 1
    return value.to_bytes(4 + shifts - zero_bytes, "big")


class LaneDecoder:
    """K range decoders over K byte strings, stepped together; mirrors :class:`LaneEncoder`."""

    def __init__(self, decoders: list[RangeDecoder], steps: int | None = None):
        """``steps``: the most slices any lane will decode (each reads at most 2 bytes), so
        the buffer holds only the bytes a lane can reach: a damaged payload padded with
        megabytes costs no memory (None: every byte of every payload)."""
        self.k = len(decoders)
        longest = max(len(d._data) for d in decoders)
        if steps is not None:
            longest = min(longest, max(d._pos for d in decoders) + 2 * steps)
        width = longest + 8
        data = np.zeros((self.k, width), np.uint8)
        for i, d in enumerate(decoders):
            part = d._data[:longest]
            data[i, : len(part)] = np.frombuffer(part, np.uint8)
        self.width = width
        self.data = data.ravel().astype(np.uint64)
        self.bad = np.zeros(self.k, bool)  # lanes whose code pointed outside every slice: damaged
        self.code = np.array([d._code for d in decoders], np.uint64)
        self.rng = np.array([d._range for d in decoders], np.uint64)
        self.pos = np.array([d._pos for d in decoders], np.int64)
        self._base = np.arange(self.k, dtype=np.int64) * width

    def targets(self, lanes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(target, r)``: each lane's position in ``[0, TOTAL)`` and its range unit."""
        code = self.code if lanes is None else self.code[lanes]
        rng = self.rng if lanes is None else self.rng[lanes]
        r = rng >> _P
        target = code // r
        if np.count_nonzero(target >> _P):  # count_nonzero: ~10x cheaper than .any() on short arrays
            # damaged lanes are marked, not raised here, so that the caller names the first
            # image in order; they step on with a clamped target (their pixels are discarded)
            over = (target >> _P) != 0
            if lanes is None:
                self.bad |= over
            else:
                self.bad[lanes] |= over
            target = np.minimum(target, _P_TOTAL_MINUS_1)
        return target, r

    def advance(self, r: np.ndarray, starts: np.ndarray, freqs: np.ndarray, lanes: np.ndarray | None = None) -> None:
        """Consume the decoded slices (same ``r`` as :meth:`targets` returned)."""
        if lanes is None:
            code, pos, base = self.code, self.pos, self._base
        else:
            code, pos, base = self.code[lanes], self.pos[lanes], self._base[lanes]
        code = code - r * starts
        rng = r * freqs
        count = (rng < _TOP).astype(np.uint64) + (rng < _TOP16)
        at = base + np.minimum(pos, self.width - 2)  # damaged input may read far past its end: zeros
        two = (self.data[at] << _SH8) | self.data[at + 1]  # the next two input bytes (zeros past the end)
        code = ((code << _SH16) | two) >> ((_TWO - count) << _SH3)
        rng = rng << (count << _SH3)
        pos = pos + count.astype(np.int64)
        if lanes is None:
            self.code, self.rng, self.pos = code, rng, pos
        else:
            self.code[lanes], self.rng[lanes], self.pos[lanes] = code, rng, pos
