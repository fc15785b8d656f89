"""Binary lossless and near-lossless codes with causal context (residual mode, kind 1).

Lossless mode 2 codes every pixel under ``P(ink | int8 level)`` alone. Here the probability
also depends on the already-decoded neighbours W, N, NW, NE, WW, NN (6 bits): context =
``(v + 128) >> LEVEL_SHIFT`` (32 level buckets) x neighbours, one 16-bit ink frequency per
context in the bundle (``coding.json`` section ``binary_context``). Ideal pixel bytes on the
mnist5k test split: 12.3 with the level alone, 10.5 with W, N, NW, NE, 9.8 with WW, NN too.

Near-lossless knob: a pixel is coded only where the context model itself is unsure,
``min(f, 2**16 - f) >= CUT[band]`` (``f`` its context's ink frequency); elsewhere the receiver
takes the model's verdict, ink iff ``f >= 2**15``. The receiver computes the same from its own
levels and already-decoded neighbours, so only the band (one parameter byte, 0..127) is sent.
``CUT`` falls geometrically, by about 2**(-1/8) per band, from ``2**15`` (band 0: the lossy
floor, only exact coin flips coded) to 0 (band 127: every pixel, lossless). Ranking pixels by
the context model rather than by the raw level matters: the int8 levels take only ~40 values,
and the neighbours say much about where the decoder is wrong.

Determinism as in mode 2: integer tables, levels from the runtime/precision the section
names, a 16-bit check of the reconstructed image in every code
(:class:`~compressor.errors.LosslessMismatchError` on mismatch).

Payload (after the parameter byte): ``check (2 bytes) || range code`` holding the D latent
symbols, then each coded pixel in raster order as one binary slot: ink ``(0, f)``,
background ``(f, 2**16 - f)``, ``f = p1_freq[context]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from compressor.coding.entropy import CdfTable, as_symbols, encode_row
from compressor.coding.lossless import image_check
from compressor.coding.rangecoder import TOTAL, RangeDecoder, RangeEncoder
from compressor.coding.residual import encode_slices
from compressor.errors import CorruptCodeError, LosslessMismatchError, ManifestError

LEVEL_SHIFT = 3
NEIGHBOURS = 64
CONTEXTS = (256 >> LEVEL_SHIFT) * NEIGHBOURS
LOSSLESS_BAND = 127
HALF = TOTAL // 2


def _cuts() -> tuple[int, ...]:
    """``CUT[b]``: 2**15 shrunk by 60097 / 2**16 (~2**(-1/8)) per band, in integers; ``CUT[127] == 0``."""
    cuts = [HALF]
    for _ in range(LOSSLESS_BAND):
        cuts.append((cuts[-1] * 60097) >> 16)
    cuts[LOSSLESS_BAND] = 0
    return tuple(cuts)


CUT = _cuts()


@dataclass(frozen=True)
class ContextTable:
    """Context -> 16-bit ink frequency, and what must produce the levels.

    ``SECTION`` names its coding.json section; layout 2's table (``binary_context2``) shares this
    JSON form and these readers."""

    SECTION: ClassVar[str] = "binary_context"

    p1_freq: tuple[int, ...]
    runtime: str
    precision: str
    step_index: int = 0

    def __post_init__(self):
        f = self.p1_freq
        if len(f) != CONTEXTS or not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x < TOTAL for x in f):
            raise ManifestError(f"binary_context.p1_freq must be {CONTEXTS} integers in 1..65535")
        object.__setattr__(self, "p1_freq", tuple(f))

    @classmethod
    def from_json(cls, obj):
        try:
            return cls(tuple(obj["p1_freq"]), str(obj["runtime"]), str(obj["precision"]), int(obj.get("step_index", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"coding.json '{cls.SECTION}' section is malformed: {e}") from e

    def to_json(self) -> dict:
        return {
            "p1_freq": list(self.p1_freq),
            "runtime": self.runtime,
            "precision": self.precision,
            "step_index": self.step_index,
        }


def contexts(recon: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Context index of every pixel of a batch (N, H, W) given the full reconstruction."""
    n, h, w = recon.shape
    p = np.zeros((n, h + 2, w + 4), np.int64)
    p[:, 2:, 2:-2] = recon

    def at(dr: int, dc: int) -> np.ndarray:
        return p[:, 2 + dr : 2 + dr + h, 2 + dc : 2 + dc + w]

    nbrs = at(0, -1) + 2 * at(-1, 0) + 4 * at(-1, -1) + 8 * at(-1, 1) + 16 * at(0, -2) + 32 * at(-2, 0)
    return _level_base(levels) + nbrs


def _level_base(levels: np.ndarray) -> np.ndarray:
    """The first context index of each pixel's level bucket (int64, the shape of ``levels``)."""
    return ((levels.astype(np.int64) + 128) >> LEVEL_SHIFT) * NEIGHBOURS


def build_table(
    levels: np.ndarray, bits: np.ndarray, *, runtime="litert", precision="int8", step_index=0
) -> ContextTable:
    """Estimate ``p1_freq`` from training int8 levels and true bits (lossless contexts)."""
    ctx = contexts(bits.astype(bool), levels).ravel()
    ink = bits.astype(bool).ravel()
    n = np.bincount(ctx, minlength=CONTEXTS).astype(np.float64)
    n1 = np.bincount(ctx[ink], minlength=CONTEXTS).astype(np.float64)
    prior = ((np.arange(CONTEXTS) // NEIGHBOURS) * (1 << LEVEL_SHIFT) + (1 << (LEVEL_SHIFT - 1)) + 0.5) / 256
    p = (n1 + 2.0 * prior) / (n + 2.0)
    freq = tuple(int(f) for f in np.clip(np.rint(p * TOTAL), 1, TOTAL - 1))
    return ContextTable(freq, runtime, precision, step_index)


def ideal_bits(table: ContextTable, bits: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Ideal pixel bits per image of lossless codes (float64 (N,))."""
    f = np.asarray(table.p1_freq, np.float64)[contexts(bits.astype(bool), levels)] / TOTAL
    return -np.log2(np.where(bits, f, 1 - f)).reshape(len(bits), -1).sum(axis=1)


def encode_batch(latent_symbols, bits, levels, ct: CdfTable, table: ContextTable, band: int) -> list[bytes]:
    """Payloads (check || range code) for a batch of binary images (N, H, W)."""
    out = []
    for sym, b, v in zip(latent_symbols, bits, levels):
        enc = RangeEncoder()
        encode_row(enc, as_symbols(sym, len(ct.lo)), ct)
        if band == LOSSLESS_BAND:  # every pixel coded: contexts from the true bits, all at once
            recon = b.astype(np.uint8)
            f = np.asarray(table.p1_freq, np.int64)[contexts(recon[None].astype(bool), v[None])[0]].ravel()
            ink = recon.ravel().astype(bool)
            starts, freqs = np.where(ink, 0, f).tolist(), np.where(ink, f, TOTAL - f).tolist()
            encode_slices(enc, starts, freqs, [False] * len(starts), starts, 1)
        else:
            recon = _encode_band(enc, b, v, table, band)
        out.append(image_check(recon) + enc.finish())
    return out


def _encode_band(enc: RangeEncoder, bits: np.ndarray, levels: np.ndarray, table: ContextTable, band: int):
    """Code the pixels the band selects, in raster order; return the receiver's reconstruction."""
    h, w = levels.shape
    base = _level_base(levels).ravel().tolist()
    truth = bits.astype(np.int64).ravel().tolist()
    freq, cut, encode = table.p1_freq, CUT[band], enc.encode
    prev2, prev = [0] * (w + 4), [0] * (w + 4)  # the two rows above, padded by 2 on both sides
    out = [0] * (h * w)
    i = 0
    for _ in range(h):
        cur = [0] * (w + 4)
        for c in range(2, w + 2):
            k = cur[c - 1] + 2 * prev[c] + 4 * prev[c - 1] + 8 * prev[c + 1] + 16 * cur[c - 2] + 32 * prev2[c]
            f = freq[base[i] + k]
            if (f if f < HALF else TOTAL - f) >= cut:
                b = truth[i]
                if b:
                    encode(0, f)
                else:
                    encode(f, TOTAL - f)
            else:
                b = 1 if f >= HALF else 0
            cur[c] = b
            out[i] = b
            i += 1
        prev2, prev = prev, cur
    return np.asarray(out, np.uint8).reshape(h, w)


def finish_decoding(dec: RangeDecoder, check: bytes, levels: np.ndarray, table: ContextTable, band: int) -> np.ndarray:
    """One image's pixels (uint8 0/1, (H, W)) under the receiver's own int8 ``levels``."""
    h, w = levels.shape
    base = _level_base(levels).ravel().tolist()
    freq, cut = table.p1_freq, CUT[band]
    data, n_data = dec._data, len(dec._data)
    code, rng, pos = dec._code, dec._range, dec._pos  # the range decoder, inlined: ~3x faster
    top = 1 << 24
    prev2, prev = [0] * (w + 4), [0] * (w + 4)
    out = [0] * (h * w)
    i = 0
    for _ in range(h):
        cur = [0] * (w + 4)
        for c in range(2, w + 2):
            k = cur[c - 1] + 2 * prev[c] + 4 * prev[c - 1] + 8 * prev[c + 1] + 16 * cur[c - 2] + 32 * prev2[c]
            f = freq[base[i] + k]
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
            cur[c] = b
            out[i] = b
            i += 1
        prev2, prev = prev, cur
    dec._code, dec._range, dec._pos = code, rng, pos
    if not dec.is_canonical():
        raise CorruptCodeError(
            "binary residual code is not what the encoder writes (extra, missing or changed bytes): damaged data"
        )
    bits = np.asarray(out, np.uint8).reshape(h, w)
    if image_check(bits) != check:
        raise LosslessMismatchError(
            "the decoded image fails its check: this device's int8 decoder does not reproduce the sender's "
            f"probabilities (these codes need {table.runtime} {table.precision} on both sides, same build), "
            "or the data is damaged"
        )
    return bits
