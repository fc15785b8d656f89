"""Integer frequency tables for the quantized latents, and the per-image codes.

Workflow:

1. Export time: quantize the training latent means with a step ``Δ`` to integer
   symbols ``q = rint(mean / Δ)``, shape ``(N, D)``, and call :func:`build_table`
   once per step. The resulting :class:`CdfTable` is stored in the bundle with
   :meth:`CdfTable.to_json`.
2. Device: load it with :meth:`CdfTable.from_json` (strictly validated, because the
   same table must drive encoder and decoder bit for bit).
3. :func:`encode_symbols` turns one image's ``D`` symbols into a few bytes with the
   range coder; :func:`decode_symbols` reverses it and refuses any byte string that
   the encoder could not have produced (``CorruptCodeError``).
4. :func:`encode_raw`/:func:`decode_raw` pack the same symbols with a fixed number of
   bits per dimension, for when predictability matters more than size.

Each dimension ``d`` codes the symbols ``lo[d] .. hi[d]`` plus one ESCAPE symbol.
A symbol outside the table is sent as ESCAPE, one direction bit (below ``lo`` /
above ``hi``) and its distance ``>= 1`` beyond that edge in Elias-gamma form (each
unary bit and then the mantissa as uniform bits). Because the distance is at least
one, no symbol has two codes, which is what makes the canonical check exact.
Symbols are limited to ``|q| <= 2**15`` (``MAX_ABS_SYMBOL``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressor.coding.rangecoder import (
    PRECISION,
    TOTAL,
    RangeDecoder,
    RangeEncoder,
    decode_message,
    decoding_tables,
    encode_all,
)
from compressor.errors import CorruptCodeError, ManifestError, RateError, TruncatedCodeError

MAX_ABS_SYMBOL = 1 << 15
MAX_TABLE_SYMBOLS = 4096
"""Most in-table symbols per dimension (the ESCAPE entry comes on top)."""
MAX_DIMS = 1024
MAX_JOINT_IMAGES = 1 << 20
_MAX_GAMMA_ZEROS = 16  # escape distances are <= 2**16, i.e. at most 17 bits
_JSON_KEYS = frozenset({"precision", "lo", "freqs"})


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_table(lo: Any, freqs: Any) -> None:
    """Raise ManifestError naming the first thing wrong with ``lo``/``freqs``."""
    if not isinstance(lo, (list, tuple)) or not isinstance(freqs, (list, tuple)):
        raise ManifestError("entropy table: 'lo' and 'freqs' must be lists")
    if not 1 <= len(lo) <= MAX_DIMS:
        raise ManifestError(f"entropy table: needs 1..{MAX_DIMS} dimensions, got {len(lo)}")
    if len(freqs) != len(lo):
        raise ManifestError(f"entropy table: 'lo' has {len(lo)} dimensions but 'freqs' has {len(freqs)}")
    for d, (low, row) in enumerate(zip(lo, freqs, strict=True)):
        if not _is_int(low):
            raise ManifestError(f"entropy table dim {d}: lo must be an int, got {low!r}")
        if not isinstance(row, (list, tuple)):
            raise ManifestError(f"entropy table dim {d}: freqs must be a list of ints")
        n = len(row) - 1
        if not 1 <= n <= MAX_TABLE_SYMBOLS:
            raise ManifestError(
                f"entropy table dim {d}: needs 1..{MAX_TABLE_SYMBOLS} symbols plus ESCAPE, got {len(row)} frequencies"
            )
        if low < -MAX_ABS_SYMBOL or low + n - 1 > MAX_ABS_SYMBOL:
            raise ManifestError(f"entropy table dim {d}: symbols {low}..{low + n - 1} exceed ±{MAX_ABS_SYMBOL}")
        if not all(_is_int(f) and f >= 1 for f in row):
            raise ManifestError(f"entropy table dim {d}: every frequency must be an int >= 1")
        if sum(row) != TOTAL:
            raise ManifestError(f"entropy table dim {d}: frequencies sum to {sum(row)}, expected {TOTAL}")


@dataclass(frozen=True)
class CdfTable:
    """Per-dimension integer distributions for one quantization step.

    ``lo[d]`` is the smallest in-table symbol of dimension ``d``; ``freqs[d]`` holds
    the frequencies of ``lo[d], lo[d] + 1, ..., hi[d]`` followed by ESCAPE, each
    ``>= 1``, summing to exactly ``2**16``. Lists are converted to tuples and the
    table is validated on construction (``ManifestError``). The cumulative lists
    the coder needs are precomputed once and are not part of equality or JSON.
    """

    lo: tuple[int, ...]
    freqs: tuple[tuple[int, ...], ...]
    _rows: tuple[tuple[int, int, list[int]], ...] = field(init=False, repr=False, compare=False)
    _raw: tuple[tuple[int, int, int], ...] = field(init=False, repr=False, compare=False)
    _cdfs: tuple[list[int], ...] = field(init=False, repr=False, compare=False)
    _slices: tuple[tuple[int, int, list[tuple[int, int]]], ...] = field(init=False, repr=False, compare=False)
    _sizes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _decoding: tuple[list[list[int]], list[list]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_table(self.lo, self.freqs)
        lo = tuple(self.lo)
        freqs = tuple(tuple(row) for row in self.freqs)
        rows = []
        for low, row in zip(lo, freqs, strict=True):
            cdf = [0]
            for f in row:
                cdf.append(cdf[-1] + f)
            rows.append((low, len(row) - 1, cdf))
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "freqs", freqs)
        object.__setattr__(self, "_rows", tuple(rows))
        raw = tuple((low, n, max(1, (n - 1).bit_length())) for low, n, _ in rows)
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_cdfs", tuple(cdf for _, _, cdf in rows))
        # per dimension: lo, size, and each symbol's (start, freq) slice, ESCAPE's last
        slices = tuple((low, n, [(cdf[i], cdf[i + 1] - cdf[i]) for i in range(n + 1)]) for low, n, cdf in rows)
        object.__setattr__(self, "_slices", slices)
        object.__setattr__(self, "_sizes", tuple(n for _, n, _ in rows))
        symbols = [range(low, low + n) for low, n, _ in rows]  # ESCAPE (index n) has no value
        object.__setattr__(self, "_decoding", decoding_tables(self._cdfs, self._sizes, symbols))

    @property
    def dims(self) -> int:
        return len(self.lo)

    @property
    def hi(self) -> tuple[int, ...]:
        """Largest in-table symbol per dimension."""
        return tuple(low + n - 1 for low, n, _ in self._rows)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of in-table symbols per dimension (ESCAPE not counted)."""
        return self._sizes

    @property
    def cdfs(self) -> tuple[list[int], ...]:
        """Each dimension's cumulative starts (ESCAPE last), the table's own lists: shared, not
        copied (unlike :meth:`cdf`), because the batch-1 decoder builds its per-step decoding
        tables from them once. Read only; do not modify."""
        return self._cdfs

    @property
    def decoding_tables(self) -> tuple[list[list[int]], list[list]]:
        """:func:`~compressor.coding.rangecoder.decode_message`'s tables for this table's
        symbols, made once at construction: shared so that every whole-message decode
        (:func:`decode_symbols`, the tests) uses the very tables built here. Read only."""
        return self._decoding

    def slices_of(self, symbols: list[int]) -> list[tuple[int, int]] | None:
        """Each symbol's ``(start, freq)`` slice, or None if one of them needs an escape."""
        out = []
        append = out.append
        for (lo, n, own), s in zip(self._slices, symbols):
            i = s - lo
            if not 0 <= i < n:
                return None
            append(own[i])
        return out

    def slices_by_symbol(self, symbols: Sequence[int]) -> list[list[tuple[int, int] | None]]:
        """Per dimension, the ``(start, freq)`` slice of each of ``symbols`` (None where it needs an
        escape): a lookup table for callers whose symbols can only take these values."""
        return [[own[s - lo] if 0 <= s - lo < n else None for s in symbols] for lo, n, own in self._slices]

    def cdf(self, d: int) -> list[int]:
        """Cumulative starts of dimension ``d`` (ESCAPE last); a copy, safe to keep."""
        return list(self._rows[d][2])

    def to_json(self) -> dict[str, Any]:
        return {
            "precision": PRECISION,
            "lo": list(self.lo),
            "freqs": [list(row) for row in self.freqs],
        }

    @classmethod
    def from_json(cls, obj: Any) -> CdfTable:
        """Build a table from :meth:`to_json` output, refusing anything else."""
        if not isinstance(obj, dict):
            raise ManifestError(f"entropy table must be a JSON object, got {type(obj).__name__}")
        keys = set(obj)
        if keys != _JSON_KEYS:
            missing = sorted(_JSON_KEYS - keys)
            extra = sorted(str(k) for k in keys - _JSON_KEYS)
            raise ManifestError(
                f"entropy table keys: missing {missing}, unexpected {extra}; expected precision, lo, freqs"
            )
        precision = obj["precision"]
        if not _is_int(precision) or precision != PRECISION:
            raise ManifestError(
                f"entropy table precision is {precision!r}; this library reads only {PRECISION}-bit tables"
            )
        if not isinstance(obj["lo"], list) or not isinstance(obj["freqs"], list):
            raise ManifestError("entropy table: 'lo' and 'freqs' must be JSON arrays")
        if not all(isinstance(row, list) for row in obj["freqs"]):
            raise ManifestError("entropy table: each 'freqs' entry must be a JSON array")
        return cls(lo=obj["lo"], freqs=obj["freqs"])


# --- building tables (export time) ---------------------------------------------------
def _gaussian_bins(lo: int, hi: int, mu: float, sigma: float) -> np.ndarray:
    """Mass of N(mu, sigma) on each integer bin ``[k - 0.5, k + 0.5)``, k = lo..hi."""
    scale = 1.0 / (sigma * math.sqrt(2.0))
    cum = [0.5 * math.erf((k - 0.5 - mu) * scale) for k in range(lo, hi + 2)]
    mass = np.diff(np.asarray(cum, dtype=np.float64))
    return np.maximum(mass, 0.0)


def quantize_pmf(pmf: np.ndarray, total: int = TOTAL) -> list[int]:
    """Integer frequencies, each >= 1, summing to exactly ``total``.

    Every entry first gets 1 (so nothing is impossible); the remaining
    ``total - len(pmf)`` units are shared by largest remainders, ties to the lower
    index, which makes the result deterministic for a given ``pmf``.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 1 or not 1 <= p.size <= total or not np.all(np.isfinite(p)):
        raise ValueError("pmf must be a finite 1-D array with 1..total entries")
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError("pmf must be non-negative with a positive sum")
    spare = total - p.size
    scaled = p / p.sum() * spare
    freqs = np.floor(scaled).astype(np.int64)
    left = spare - int(freqs.sum())
    if left > 0:
        order = np.argsort(-(scaled - freqs), kind="stable")
        freqs[order[:left]] += 1
    freqs += 1
    diff = total - int(freqs.sum())  # float round-off only: a unit or two
    if diff:
        k = int(np.argmax(freqs))
        freqs[k] += diff
    return [int(f) for f in freqs]


def build_table(
    symbols: np.ndarray,
    *,
    prior_weight: float = 0.02,
    escape_prob: float = 2.0**-11,
    margin_sigmas: float = 0.5,
    min_sigma: float = 0.5,
    max_symbols: int = MAX_TABLE_SYMBOLS,
) -> CdfTable:
    """Estimate a :class:`CdfTable` from training symbols of shape ``(N, D)``.

    The table must serve unseen images, so per dimension:

    * Range: training ``min .. max`` widened by ``max(1, ceil(margin_sigmas * σ))``
      on both sides (at most ``max_symbols`` symbols, centred on the mean), because
      test latents stray a little past the training extremes. Anything further out
      is escaped, which keeps the table (and raw mode's bit width) small.
    * Shape: the empirical histogram mixed with a discretized Gaussian
      ``N(mean, max(std, min_sigma))``, weight ``w = max(prior_weight, n / (N + n))``
      on the Gaussian (``n`` in-table symbols: about one pseudo-count per symbol, so
      small samples lean on the smooth prior). Unseen symbols inside the range thus
      get a mass that follows the fitted tails instead of the 1/65536 floor.
    * ESCAPE gets ``escape_prob`` (2**-11: ~0.0007 bit per in-table symbol), every
      other frequency is scaled by ``1 - escape_prob``; then :func:`quantize_pmf`.

    Deterministic for a given input (on one platform: ``math.erf`` may differ in the
    last ulp elsewhere, which is harmless because the stored JSON table, not this
    function, is what encoder and decoder share). ``symbols`` must be an integer array with
    ``|q| <= 2**15`` (``RateError`` otherwise: the step is too small).
    """
    arr = np.asarray(symbols)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"symbols must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1 or not 1 <= arr.shape[1] <= MAX_DIMS:
        raise ValueError(f"symbols must have shape (N >= 1, 1 <= D <= {MAX_DIMS}), got {arr.shape}")
    if not 0.0 <= prior_weight <= 1.0 or not 0.0 < escape_prob < 0.5:
        raise ValueError("need 0 <= prior_weight <= 1 and 0 < escape_prob < 0.5")
    if not margin_sigmas >= 0.0 or not min_sigma > 0.0:
        raise ValueError("need margin_sigmas >= 0 and min_sigma > 0")
    if not 1 <= max_symbols <= MAX_TABLE_SYMBOLS:
        raise ValueError(f"max_symbols must be in 1..{MAX_TABLE_SYMBOLS}")
    arr = arr.astype(np.int64)
    if int(np.abs(arr).max()) > MAX_ABS_SYMBOL:
        raise RateError(
            f"symbols reach {int(np.abs(arr).max())}, beyond ±{MAX_ABS_SYMBOL}: "
            "the quantization step is too small; use a larger step"
        )
    n_rows = arr.shape[0]
    lo_list: list[int] = []
    freq_rows: list[list[int]] = []
    for col in arr.T:
        mu = float(col.mean())
        sigma = max(float(col.std()), min_sigma)
        ext = max(1, math.ceil(margin_sigmas * sigma))
        lo = max(int(col.min()) - ext, -MAX_ABS_SYMBOL)
        hi = min(int(col.max()) + ext, MAX_ABS_SYMBOL)
        if hi - lo + 1 > max_symbols:
            lo = min(max(round(mu) - max_symbols // 2, lo), hi - max_symbols + 1)
            hi = lo + max_symbols - 1
        n = hi - lo + 1
        inside = col[(col >= lo) & (col <= hi)] - lo
        hist = np.bincount(inside, minlength=n).astype(np.float64) / n_rows
        gauss = _gaussian_bins(lo, hi, mu, sigma)
        gauss = gauss / gauss.sum() if gauss.sum() > 0 else np.full(n, 1.0 / n)
        w = max(prior_weight, n / (n_rows + n))
        pmf = (1.0 - w) * hist + w * gauss
        pmf = np.append(pmf / pmf.sum() * (1.0 - escape_prob), escape_prob)
        lo_list.append(lo)
        freq_rows.append(quantize_pmf(pmf))
    return CdfTable(lo=tuple(lo_list), freqs=tuple(tuple(r) for r in freq_rows))


# --- entropy-coded symbols (device) --------------------------------------------------
def as_symbols(symbols: Sequence[int] | np.ndarray, dims: int) -> list[int]:
    if isinstance(symbols, np.ndarray):
        if symbols.dtype.kind not in "iu" or symbols.ndim != 1:
            raise TypeError(f"symbols must be a 1-D integer array, got {symbols.dtype} {symbols.shape}")
        out = symbols.tolist()
    else:
        try:
            out = [operator.index(s) for s in symbols]
        except TypeError:
            raise TypeError("symbols must be integers (quantize latents first)") from None
    if len(out) != dims:
        raise ValueError(f"expected {dims} symbols (one per dimension), got {len(out)}")
    return out


def _encode_escape(enc: RangeEncoder, s: int, lo: int, hi: int, d: int) -> None:
    if not -MAX_ABS_SYMBOL <= s <= MAX_ABS_SYMBOL:
        raise RateError(
            f"symbol {s} of dimension {d} is beyond ±{MAX_ABS_SYMBOL}: the "
            "quantization step is too small for this image; use a larger step"
        )
    if s < lo:
        enc.encode_bits(0, 1)
        dist = lo - s
    else:
        enc.encode_bits(1, 1)
        dist = s - hi
    zeros = dist.bit_length() - 1
    for _ in range(zeros):
        enc.encode_bits(0, 1)
    enc.encode_bits(1, 1)
    if zeros:
        enc.encode_bits(dist - (1 << zeros), zeros)


def _decode_escape(dec: RangeDecoder, lo: int, hi: int) -> int:
    above = dec.decode_bits(1)
    zeros = 0
    while not dec.decode_bits(1):
        zeros += 1
        if zeros > _MAX_GAMMA_ZEROS:
            raise CorruptCodeError("escape value is impossibly long: damaged data")
    dist = (1 << zeros) + (dec.decode_bits(zeros) if zeros else 0)
    s = hi + dist if above else lo - dist
    if not -MAX_ABS_SYMBOL <= s <= MAX_ABS_SYMBOL:
        raise CorruptCodeError(f"escaped symbol {s} is out of range: damaged data")
    return s


def encode_row(enc: RangeEncoder, syms: list[int], table: CdfTable) -> None:
    slices = []
    append = slices.append
    for d, ((lo, n, own), s) in enumerate(zip(table._slices, syms, strict=True)):
        i = s - lo
        if 0 <= i < n:
            append(own[i])
        else:
            append(own[n])
            enc.encode_slices(slices)
            slices.clear()
            _encode_escape(enc, s, lo, lo + n - 1, d)
    enc.encode_slices(slices)


def decode_row(dec: RangeDecoder, table: CdfTable) -> list[int]:
    rows, cdfs, sizes = table._rows, table.cdfs, table.sizes
    out: list[int] = []
    d, dims = 0, len(rows)
    while d < dims:
        found = dec.decode_until(cdfs[d:] if d else cdfs, sizes[d:] if d else sizes)
        for i in found:
            lo, n, _ = rows[d]
            out.append(lo + i if i < n else _decode_escape(dec, lo, lo + n - 1))
            d += 1
    return out


def check_canonical(dec: RangeDecoder) -> None:
    if not dec.is_canonical():
        raise CorruptCodeError(
            "entropy code is not what the encoder writes (extra, missing or changed bytes): damaged data"
        )


def encode_symbols(symbols: Sequence[int] | np.ndarray, table: CdfTable) -> bytes:
    """Entropy-code one image's ``D`` integer symbols under ``table``.

    Raises ``RateError`` for a symbol beyond ``±2**15`` (step too small).
    """
    syms = as_symbols(symbols, len(table.lo))
    slices = table.slices_of(syms)
    if slices is not None:  # no escape: the whole message in one loop
        return encode_all(slices)
    enc = RangeEncoder()
    encode_row(enc, syms, table)
    return enc.finish()


def decode_symbols(payload: bytes, table: CdfTable) -> list[int]:
    """Inverse of :func:`encode_symbols`.

    Raises ``CorruptCodeError`` unless ``payload`` is byte for byte what
    :func:`encode_symbols` writes for the decoded symbols; this refuses most damaged
    messages even though the range coder itself has no redundancy.
    """
    if isinstance(payload, bytes):
        found = decode_message(payload, *table.decoding_tables)
        if found is not None:  # no escape and canonical: the everyday message
            return found
    dec = RangeDecoder(payload)  # escapes, and every refusal with its reason
    out = decode_row(dec, table)
    check_canonical(dec)
    return out


def joint_count_fits(table: CdfTable, block_bytes: int, count: int) -> bool:
    """Whether a joint block of ``block_bytes`` bytes may announce ``count`` images.

    The header's count is checksummed but not trusted: it must pass this guard before the
    decoder loops. With ``S = sum over d of (2**16 - max(freqs[d]))`` the rule is
    ``1 <= count <= MAX_JOINT_IMAGES`` and ``(count - 1) * S <= 2**16 * (8 * block_bytes + 40)``.
    ``S / 2**16`` is a lower bound (``1 - p <= -log2 p``) on the bits every image costs, so the
    guard only bites when the block ends in far more zero bytes than chance gives; the
    encoder refuses such a batch (:func:`encode_joint`) instead of writing a block no decoder
    accepts. Integer arithmetic, so every decoder draws the line at the same count.
    """
    if not 1 <= count <= MAX_JOINT_IMAGES:
        return False
    spread = sum(TOTAL - max(row) for row in table.freqs)
    return (count - 1) * spread <= TOTAL * (8 * block_bytes + 40)


def encode_joint(rows: Sequence[Sequence[int]] | np.ndarray, table: CdfTable) -> bytes:
    """Entropy-code many images' symbols as one code (a *joint* stream block).

    One termination for the whole batch instead of one per image, and no per-image
    lengths: about 1.3 bytes per image smaller than separate payloads, at the price of
    random access (an image is only reachable by decoding those before it).
    """
    enc = RangeEncoder()
    dims = len(table.lo)
    count = 0
    for row in rows:
        encode_row(enc, as_symbols(row, dims), table)
        count += 1
    block = enc.finish()
    if not joint_count_fits(table, len(block), count):
        raise RateError(
            f"these {count} images code to a {len(block)}-byte joint block, shorter than a decoder accepts for "
            "that many images (docs/format.md, joint count guard): send them as a plain stream (joint=False)"
        )
    return block


def decode_joint(block: bytes, table: CdfTable, count: int) -> list[list[int]]:
    """Inverse of :func:`encode_joint`; ``count`` comes from the (checksummed) header."""
    if count < 1:
        raise CorruptCodeError("a joint block holds at least one image")
    if not joint_count_fits(table, len(block), count):
        raise CorruptCodeError(f"a {len(block)}-byte block cannot hold {count} images: damaged data")
    dec = RangeDecoder(block)
    out = [decode_row(dec, table) for _ in range(count)]
    check_canonical(dec)
    return out


def ideal_bits(symbols: Sequence[int] | np.ndarray, table: CdfTable) -> float:
    """``-log2`` of the table's probability of ``symbols``, escape bits included."""
    syms = as_symbols(symbols, len(table.lo))
    bits = 0.0
    for (lo, n, cdf), s in zip(table._rows, syms, strict=True):
        i = s - lo
        if 0 <= i < n:
            bits += PRECISION - math.log2(cdf[i + 1] - cdf[i])
        else:
            dist = lo - s if s < lo else s - (lo + n - 1)
            bits += PRECISION - math.log2(TOTAL - cdf[n]) + 2 * dist.bit_length()
    return bits


# --- raw bit-packing -----------------------------------------------------------------
def raw_bits(table: CdfTable) -> list[int]:
    """Bits per dimension in raw mode: ``ceil(log2(size))``, at least 1."""
    return [b for _, _, b in table._raw]


def encode_raw(symbols: Sequence[int] | np.ndarray, table: CdfTable) -> bytes:
    """Pack symbols, clamped into ``lo..hi``, MSB-first at :func:`raw_bits` each.

    The size is fixed per table (``ceil(sum(bits) / 8)`` bytes), which is the point
    of raw mode; the last byte is zero-padded.
    """
    syms = as_symbols(symbols, len(table.lo))
    acc = 0
    total = 0
    for (lo, n, b), s in zip(table._raw, syms, strict=True):
        v = s - lo
        if v < 0:
            v = 0
        elif v >= n:
            v = n - 1
        acc = (acc << b) | v
        total += b
    pad = -total % 8
    return (acc << pad).to_bytes((total + pad) // 8, "big")


def decode_raw(payload: bytes, table: CdfTable) -> list[int]:
    """Inverse of :func:`encode_raw`; refuses wrong lengths, padding and values."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    total = sum(b for _, _, b in table._raw)
    pad = -total % 8
    size = (total + pad) // 8
    if len(payload) < size:
        raise TruncatedCodeError(f"raw code needs {size} bytes, got {len(payload)}")
    if len(payload) > size:
        raise CorruptCodeError(f"raw code needs {size} bytes, got {len(payload)}")
    acc = int.from_bytes(payload, "big")
    if acc & ((1 << pad) - 1):
        raise CorruptCodeError("raw code has non-zero padding bits: damaged data")
    acc >>= pad
    out = []
    shift = total
    for lo, n, b in table._raw:
        shift -= b
        v = (acc >> shift) & ((1 << b) - 1)
        if v >= n:
            raise CorruptCodeError(f"raw value {v} exceeds the table's {n} symbols")
        out.append(lo + v)
    return out
