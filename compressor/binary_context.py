"""Binary lossless and near-lossless codes with causal context (residual mode, kind 1).

Lossless mode 2 codes every pixel under ``P(ink | int8 level)`` alone. Here the probability
also depends on the already-decoded neighbours W, N, NW, NE, WW, NN (6 bits): context =
``(v + 128) >> LEVEL_SHIFT`` (32 level buckets) x neighbours, one 16-bit ink frequency per
context in the bundle (``coding.json`` section ``binary_context``). Ideal pixel bytes on the
mnist5k test split: 12.3 with the level alone, 10.5 with W, N, NW, NE, 9.8 with WW, NN too.

Near-lossless knob: a pixel is coded only where the decoder is unsure, ``|2v + 1| <= 2 band + 1``
(``v`` in ``-band - 1 .. band``); elsewhere the receiver takes the decoder's own verdict,
ink iff ``v >= 0``. The receiver computes the same set from its own levels, so nothing but
the band (one parameter byte, 0..127) is sent; ``band = 127`` codes every pixel (lossless),
smaller bands trade pixel errors for bytes, down to the lossy floor.

Determinism as in mode 2: integer tables, levels from the runtime/precision the section
names, a 16-bit check of the reconstructed image in every code
(:class:`~compressor.errors.LosslessMismatchError` on mismatch).

Payload (after the parameter byte): ``check (2 bytes) || range code`` holding the D latent
symbols, then each coded pixel in raster order as one binary slot: ink ``(0, f)``,
background ``(f, 2**16 - f)``, ``f = p1_freq[context]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compressor.entropy import CdfTable, as_symbols, encode_row
from compressor.errors import CorruptCodeError, LosslessMismatchError, ManifestError
from compressor.lossless import image_check
from compressor.rangecoder import TOTAL, RangeDecoder, RangeEncoder

LEVEL_SHIFT = 3
NEIGHBOURS = 64
CONTEXTS = (256 >> LEVEL_SHIFT) * NEIGHBOURS
LOSSLESS_BAND = 127


@dataclass(frozen=True)
class ContextTable:
    """Context -> 16-bit ink frequency, and what must produce the levels."""

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
    def from_json(cls, obj) -> ContextTable:
        try:
            return cls(tuple(obj["p1_freq"]), str(obj["runtime"]), str(obj["precision"]), int(obj.get("step_index", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"coding.json 'binary_context' section is malformed: {e}") from e

    def to_json(self) -> dict:
        return {
            "p1_freq": list(self.p1_freq),
            "runtime": self.runtime,
            "precision": self.precision,
            "step_index": self.step_index,
        }


def coded(levels: np.ndarray, band: int) -> np.ndarray:
    """Which pixels a code with ``band`` carries (bool, same shape as the int8 ``levels``)."""
    return np.abs(2 * levels.astype(np.int64) + 1) <= 2 * band + 1


def reconstruction(bits: np.ndarray, levels: np.ndarray, band: int) -> np.ndarray:
    """What the receiver ends up with: true bits where coded, the decoder's verdict elsewhere."""
    return np.where(coded(levels, band), bits.astype(bool), levels >= 0)


def contexts(recon: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Context index of every pixel of a batch (N, H, W) given the full reconstruction."""
    n, h, w = recon.shape
    p = np.zeros((n, h + 2, w + 4), np.int64)
    p[:, 2:, 2:-2] = recon

    def at(dr: int, dc: int) -> np.ndarray:
        return p[:, 2 + dr : 2 + dr + h, 2 + dc : 2 + dc + w]

    nbrs = at(0, -1) + 2 * at(-1, 0) + 4 * at(-1, -1) + 8 * at(-1, 1) + 16 * at(0, -2) + 32 * at(-2, 0)
    return ((levels.astype(np.int64) + 128) >> LEVEL_SHIFT) * NEIGHBOURS + nbrs


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


def ideal_bits(table: ContextTable, bits: np.ndarray, levels: np.ndarray, band: int) -> np.ndarray:
    """Ideal pixel bits per image (float64 (N,))."""
    recon = reconstruction(bits, levels, band)
    f = np.asarray(table.p1_freq, np.float64)[contexts(recon, levels)] / TOTAL
    cost = -np.log2(np.where(recon, f, 1 - f)) * coded(levels, band)
    return cost.reshape(len(bits), -1).sum(axis=1)


def encode_batch(latent_symbols, bits, levels, ct: CdfTable, table: ContextTable, band: int) -> list[bytes]:
    """Payloads (check || range code) for a batch of binary images (N, H, W)."""
    recon = reconstruction(bits, levels, band)
    freq = np.asarray(table.p1_freq, np.int64)[contexts(recon, levels)]
    mask = coded(levels, band)
    out = []
    for sym, r, f, m in zip(latent_symbols, recon, freq, mask):
        enc = RangeEncoder()
        encode_row(enc, as_symbols(sym, len(ct.lo)), ct)
        encode = enc.encode
        for b, fr in zip(r[m].tolist(), f[m].tolist()):
            if b:
                encode(0, fr)
            else:
                encode(fr, TOTAL - fr)
        out.append(image_check(r) + enc.finish())
    return out


def finish_decoding(dec: RangeDecoder, check: bytes, levels: np.ndarray, table: ContextTable, band: int) -> np.ndarray:
    """One image's pixels (uint8 0/1, (H, W)) under the receiver's own int8 ``levels``."""
    h, w = levels.shape
    lv = levels.astype(np.int64)
    base = (((lv + 128) >> LEVEL_SHIFT) * NEIGHBOURS).ravel().tolist()
    verdict = (lv >= 0).astype(np.int64).ravel().tolist()
    want = coded(lv, band).ravel().tolist()
    freq = table.p1_freq
    data, n_data = dec._data, len(dec._data)
    code, rng, pos = dec._code, dec._range, dec._pos  # the range decoder, inlined: ~3x faster
    top = 1 << 24
    prev2 = [0] * (w + 4)  # rows above, padded by 2 on the left and right
    prev = [0] * (w + 4)
    out = [0] * (h * w)
    i = 0
    for _ in range(h):
        cur = [0] * (w + 4)
        for c in range(2, w + 2):
            if want[i]:
                f = freq[
                    base[i]
                    + cur[c - 1]
                    + 2 * prev[c]
                    + 4 * prev[c - 1]
                    + 8 * prev[c + 1]
                    + 16 * cur[c - 2]
                    + 32 * prev2[c]
                ]
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
                b = verdict[i]
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
