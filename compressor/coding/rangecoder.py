"""A small integer range coder with minimal termination.

Why a hand-written coder: codes must decode bit-identically on every machine, so all
arithmetic is on Python ints (no floats, no platform-dependent library), and our
messages are ~6 bytes, so the usual 4-byte flush of textbook coders would cost more
than half the message. The termination here costs at most one byte (plus a few
hundredths of a bit) over the ideal ``-log2 P`` bits.

Model: frequencies are integers out of ``TOTAL = 2**16`` (``PRECISION`` bits). A
symbol is given to the encoder as ``(start, freq)`` -- its slice of ``[0, TOTAL)`` --
and recovered by the decoder from a cumulative list ``cdf`` (``cdf[0] == 0``,
``cdf[-1] == TOTAL``, strictly increasing), symbol ``s`` owning
``[cdf[s], cdf[s + 1])``.

Encoder: ``range`` is 32 bits and is renormalised one byte at a time while it is
below ``2**24``, moving the top byte of the 32-bit ``low`` window into the settled
output; a carry out of the window ripples into the settled bytes (a classic
carry-propagating coder), so encoding stays linear in the message length. After
``k`` renormalisations the interval is ``[settled * 2**32 + low, ... + range)`` in
units of ``2**-(32 + 8k)``.

Termination: :meth:`RangeEncoder.finish` returns the *shortest* byte string ``V``
whose zero-padded value lies in the final interval (the smallest such value at that
length), which never ends in a zero byte. The decoder reads past the end as zeros.

Decoder: ``code`` (offset of the padded input inside the interval) and ``range``
stay below ``2**32``, so the decoder ports to C with ``uint32_t``/``uint64_t``.
Every symbol reads at most two bytes, so loops are bounded by the number of symbols
decoded. :meth:`RangeDecoder.is_canonical` tells whether the input is exactly what
the encoder would have written for the decoded symbols -- no unused trailing bytes,
no other in-interval value -- which rejects most damaged messages.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from compressor.errors import CorruptCodeError

PRECISION = 16  # encode_all and decode_message spell it out as a literal, for speed
TOTAL = 1 << PRECISION
MAX_BITS = 16
"""Most raw bits one :meth:`RangeEncoder.encode_bits` call may carry."""

_TOP = 1 << 24
_MASK32 = (1 << 32) - 1
_INITIAL_RANGE = 0xFFFFFFFF  # fits uint32 in a C port; wastes 2**-32 of the space


class RangeEncoder:
    """Encode symbols given as ``(start, freq)`` slices of ``[0, TOTAL)``.

    >>> enc = RangeEncoder()
    >>> enc.encode(0, 40000); enc.encode_bits(5, 3)
    >>> RangeDecoder(enc.finish()).decode([0, 40000, TOTAL])
    0
    """

    __slots__ = ("_low", "_range", "_out")

    def __init__(self) -> None:
        self._low = 0  # the 32-bit window below the settled bytes; < 2**32 between calls
        self._range = _INITIAL_RANGE
        self._out = bytearray()  # settled bytes (a later carry may still add one to them)

    def _add(self, low: int) -> int:
        """Propagate a carry out of the 32-bit window into the settled bytes."""
        if low >> 32:
            out = self._out
            i = len(out) - 1
            while out[i] == 0xFF:  # a carry out of an all-0xFF tail ripples left
                out[i] = 0
                i -= 1
            out[i] += 1
            low &= _MASK32
        return low

    def _renormalise(self, low: int, rng: int) -> None:
        out = self._out
        while rng < _TOP:
            out.append(low >> 24)
            low = (low << 8) & _MASK32
            rng <<= 8
        self._low = low
        self._range = rng

    def encode(self, start: int, freq: int) -> None:
        """Narrow to the slice ``[start, start + freq)`` out of ``TOTAL``."""
        if start < 0 or freq <= 0 or start + freq > TOTAL:
            raise ValueError(f"symbol slice [{start}, {start + freq}) must be non-empty and lie inside [0, {TOTAL})")
        r = self._range >> PRECISION
        low = self._low + r * start
        if low >> 32:
            low = self._add(low)
        rng = r * freq
        if rng < _TOP:
            self._renormalise(low, rng)
        else:
            self._low = low
            self._range = rng

    def encode_slices(self, slices: Sequence[tuple[int, int]]) -> None:
        """:meth:`encode` for each ``(start, freq)`` of ``slices``, with the state in locals.

        The hot loop of the entropy coder: the slices come from a validated table, so they
        are not checked again. The arithmetic is :meth:`encode`'s, step for step.
        """
        low, rng, out = self._low, self._range, self._out
        for start, freq in slices:
            r = rng >> PRECISION
            low += r * start
            if low >> 32:
                low = self._add(low)
            rng = r * freq
            while rng < _TOP:
                out.append(low >> 24)
                low = (low << 8) & _MASK32
                rng <<= 8
        self._low, self._range = low, rng

    def encode_bits(self, value: int, nbits: int) -> None:
        """Append ``value`` as ``nbits`` uniform bits (``1 <= nbits <= MAX_BITS``)."""
        if not 1 <= nbits <= MAX_BITS or not 0 <= value < (1 << nbits):
            raise ValueError(f"value {value} does not fit in 1..{MAX_BITS} bits ({nbits})")
        r = self._range >> nbits
        low = self._low + r * value
        if low >> 32:
            low = self._add(low)
        self._renormalise(low, r)

    def finish(self) -> bytes:
        """Return the shortest code for everything encoded so far.

        The value with the most trailing zero bytes in ``[low, low + range)`` is found
        from the highest bit where ``low - 1`` and ``low + range - 1`` differ; its
        trailing zero bytes are dropped because the decoder pads with zeros. The
        encoder is left unchanged, so more symbols may follow.
        """
        shifts = len(self._out)
        low = (int.from_bytes(self._out, "big") << 32) | self._low
        if low == 0:
            return b""
        high = low + self._range - 1
        zero_bytes = (((low - 1) ^ high).bit_length() - 1) >> 3
        value = ((low - 1) >> (8 * zero_bytes)) + 1
        return value.to_bytes(4 + shifts - zero_bytes, "big")


#: Beyond this many slices :func:`encode_all` keeps a 32-bit ``low`` (see there).
_LONG_SLICES = 256


def encode_all(slices: Sequence[tuple[int, int]]) -> bytes:
    """A fresh :class:`RangeEncoder` given ``slices``, then :meth:`RangeEncoder.finish`: the
    same bytes, in one function with the state in locals (a message's whole code).

    Here ``low`` is one Python int, the settled bytes and the 32-bit window together, so a
    carry needs no propagating and renormalising is a shift: the same interval, hence the same
    bytes, with less per symbol. A symbol renormalises by at most two bytes (``range >> 16``
    is at least ``2**8`` and ``freq`` at least 1). The slices come from a validated table and
    are not checked again.

    That one int grows with the code, so each shift costs the code so far: fine for a message's
    few dozen symbols, quadratic on long lists (100,000 slices: seconds), which therefore go
    through :meth:`RangeEncoder.encode_slices` (32-bit ``low``, the same bytes).
    """
    if len(slices) > _LONG_SLICES:
        enc = RangeEncoder()
        enc.encode_slices(slices)
        return enc.finish()
    low, rng, length = 0, _INITIAL_RANGE, 4  # length: bytes of the settled part and the window
    for start, freq in slices:
        r = rng >> 16  # PRECISION
        low += r * start
        rng = r * freq
        if rng < 16777216:  # _TOP, as a literal: this loop is most of a message's encoding time
            if rng < 65536:
                low <<= 16
                rng <<= 16
                length += 2
            else:
                low <<= 8
                rng <<= 8
                length += 1
    if low == 0:
        return b""
    zero_bytes = (((low - 1) ^ (low + rng - 1)).bit_length() - 1) >> 3  # RangeEncoder.finish
    return (((low - 1) >> (8 * zero_bytes)) + 1).to_bytes(length - zero_bytes, "big")


def decoding_tables(
    cdfs: Sequence[Sequence[int]], escapes: Sequence[int], values: Sequence[Sequence] | None = None
) -> tuple[list[list[int]], list[list[tuple[int, int, object] | None]]]:
    """The tables :func:`decode_message` runs on, made once per distribution: per cdf, its ends
    (``cdf[1:]``, so that ``bisect_right`` finds the symbol itself) and each symbol's
    ``(start, freq, value)``, where ``value`` is ``values[k][s]`` (the index ``s`` itself if
    ``values`` is None) and the escape (index ``escapes[k]``) has None.

    A value may be whatever the caller wants each symbol to become (the symbol, or the
    decoder network's input level of it), so no second pass over the decoded list is needed.
    """
    uppers, entries = [], []
    for k, (cdf, escape) in enumerate(zip(cdfs, escapes)):
        own = range(len(cdf) - 1) if values is None else values[k]
        uppers.append(list(cdf[1:]))
        entries.append([None if s == escape else (cdf[s], cdf[s + 1] - cdf[s], own[s]) for s in range(len(cdf) - 1)])
    return uppers, entries


def decode_message(data: bytes, uppers: Sequence[Sequence[int]], entries: Sequence[Sequence]) -> list | None:
    """The values of ``len(uppers)`` symbols decoded from the whole of ``data``, one per
    distribution of :func:`decoding_tables`, when none of them is an escape and ``data`` is
    canonical; else ``None``, and the caller decodes again with :class:`RangeDecoder`, which
    handles escapes and names what is wrong.

    The arithmetic is :meth:`RangeDecoder.decode`'s, step for step, and the final test is
    :meth:`RangeDecoder.is_canonical`'s. What that code tests per symbol is left here to the
    tables: a code pointing past ``TOTAL`` finds no entry (``IndexError``), an escape finds None
    (``TypeError``); and ``data`` is padded with the zeros the decoder reads past its end (at
    most two bytes per symbol), so reading needs no test either.
    """
    n, reach = len(data), 4 + 2 * len(uppers)
    if n > reach:  # bytes no symbol can read: not canonical (and not copied)
        return None
    padded = data + bytes(reach)
    code = int.from_bytes(padded[:4], "big")
    rng, pos = _INITIAL_RANGE, 4
    found = []
    append, search = found.append, bisect_right  # locals: this loop is most of decoding
    try:
        for upper, entry in zip(uppers, entries):
            r = rng >> 16  # PRECISION
            start, freq, value = entry[search(upper, code // r)]
            code -= r * start
            rng = r * freq
            if rng < 16777216:  # _TOP
                if rng < 65536:
                    code = (code << 16) | (padded[pos] << 8) | padded[pos + 1]
                    rng <<= 16
                    pos += 2
                else:
                    code = (code << 8) | padded[pos]
                    rng <<= 8
                    pos += 1
            append(value)
    except (IndexError, TypeError):
        return None
    # RangeDecoder.is_canonical, with at least one symbol decoded
    if n == 0:
        return found
    gap = pos - n
    last = data[-1]
    if gap < 0 or last == 0:
        return None
    if gap < 4:
        unit = 1 << (8 * gap)
        if not (code < unit and (256 - last) * unit >= rng - code):
            return None
    return found


class RangeDecoder:
    """Decode what :class:`RangeEncoder` wrote, call for call.

    The caller must make the same sequence of ``decode``/``decode_bits`` calls, with
    the same distributions, as the encoder made. Damaged input never raises anything
    but :class:`~compressor.errors.CorruptCodeError`; it may also decode to some
    symbols, which :meth:`is_canonical` then usually refuses.
    """

    __slots__ = ("_data", "_pos", "_code", "_range")

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        self._data = bytes(data)
        self._code = int.from_bytes(self._data[:4].ljust(4, b"\0"), "big")
        self._range = _INITIAL_RANGE
        self._pos = 4

    @property
    def bytes_read(self) -> int:
        """Bytes pulled so far, counting the zeros read past the end of the input."""
        return self._pos

    def decode(self, cdf: Sequence[int]) -> int:
        """Return the index ``s`` of the next symbol, ``cdf[s] <= target < cdf[s+1]``.

        ``cdf`` must be valid (see the module docstring): it is trusted, the input
        bytes are not.
        """
        code = self._code
        r = self._range >> PRECISION
        target = code // r
        if target >= TOTAL:
            raise CorruptCodeError("the code points outside every symbol's interval: damaged data")
        s = bisect_right(cdf, target) - 1
        start = cdf[s]
        code -= r * start
        rng = r * (cdf[s + 1] - start)
        if rng < _TOP:
            self._renormalise(code, rng)
        else:
            self._code = code
            self._range = rng
        return s

    def decode_until(self, cdfs: Sequence[Sequence[int]], stops: Sequence[int]) -> list[int]:
        """:meth:`decode` with ``cdfs[0]``, ``cdfs[1]``, ... with the state in locals.

        Stops after the first symbol ``k`` whose index equals ``stops[k]`` (the caller's
        escape, which needs other calls before the next symbol) or after the last ``cdf``;
        returns the indices decoded. The arithmetic is :meth:`decode`'s, step for step.
        """
        code, rng, data, pos = self._code, self._range, self._data, self._pos
        n = len(data)
        found = []
        append = found.append
        for cdf, stop in zip(cdfs, stops):
            r = rng >> PRECISION
            target = code // r
            if target >= TOTAL:
                self._code, self._range, self._pos = code, rng, pos
                raise CorruptCodeError("the code points outside every symbol's interval: damaged data")
            s = bisect_right(cdf, target) - 1
            start = cdf[s]
            code -= r * start
            rng = r * (cdf[s + 1] - start)
            while rng < _TOP:
                code = (code << 8) | (data[pos] if pos < n else 0)
                rng <<= 8
                pos += 1
            append(s)
            if s == stop:
                break
        self._code, self._range, self._pos = code, rng, pos
        return found

    def _renormalise(self, code: int, rng: int) -> None:
        """Shift in input bytes (zeros past the end) until ``range >= 2**24``."""
        data = self._data
        pos = self._pos
        n = len(data)
        while rng < _TOP:
            code = (code << 8) | (data[pos] if pos < n else 0)
            rng <<= 8
            pos += 1
        self._pos = pos
        self._code = code
        self._range = rng

    def decode_bits(self, nbits: int) -> int:
        """Return ``nbits`` uniform bits written by :meth:`RangeEncoder.encode_bits`."""
        if not 1 <= nbits <= MAX_BITS:
            raise ValueError(f"nbits must be in 1..{MAX_BITS}, got {nbits}")
        code = self._code
        r = self._range >> nbits
        value = code // r
        if value >> nbits:
            raise CorruptCodeError("the code points outside the raw-bits interval: damaged data")
        self._renormalise(code - r * value, r)
        return value

    def is_canonical(self) -> bool:
        """Whether the input equals ``RangeEncoder.finish()`` for the symbols decoded.

        Equivalent to re-encoding and comparing bytes, but O(1): with ``L`` input
        bytes and ``gap`` zero bytes padded after them, the input is canonical iff it
        does not end in a zero byte, it is the smallest ``L``-byte value in the
        interval (``code < 256**gap``) and dropping its last byte leaves no value in
        the interval (``(256 - last) * 256**gap >= range - code``). With four or more
        padded bytes both hold trivially, so the arithmetic fits in 64 bits.
        """
        code = self._code
        rng = self._range
        if code >= rng:  # only before the first symbol
            return False
        n = len(self._data)
        if n == 0:
            return True
        gap = self._pos - n
        last = self._data[-1]
        if gap < 0 or last == 0:
            return False
        if gap >= 4:
            return True
        unit = 1 << (8 * gap)
        return code < unit and (256 - last) * unit >= rng - code
