"""Lossless codes for binarized images: the latent code, then every pixel coded under the
probability that the decoder predicts for it.

Cost: about rate(latent) + BCE / ln 2 bits per image. The hard part is that the receiver
must predict *exactly* the probabilities the sender used, or decoding derails. So no float
decides anything here:

- the probabilities come from the int8 decoder's int8 output level ``v`` (-128..127),
  turned into a 16-bit frequency by a fixed integer table ``p1_freq[v + 128]`` that ships
  in the bundle (estimated at export time from the training split, so saturated levels
  still give ink a small, calibrated chance);
- the bundle records which runtime and precision produce those levels (int8 LiteRT); a
  decoder loaded otherwise is refused up front;
- each payload starts with a 16-bit check of the image itself, so if two devices' int8
  kernels still disagree (another runtime build, another CPU path) the receiver raises
  :class:`~compressor.errors.LosslessMismatchError` instead of returning wrong pixels.

Payload (mode 2, docs/format.md): ``check (2 bytes, big-endian) || range code`` where the
range code holds the D latent symbols (as in mode 0) followed by the H*W pixels in raster
order, each coded as one binary symbol with frequency ``p1_freq[v]`` for ink.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from compressor.coding.entropy import CdfTable, as_symbols, check_canonical, decode_row, encode_row
from compressor.coding.rangecoder import TOTAL, RangeDecoder, RangeEncoder
from compressor.errors import CorruptCodeError, LosslessMismatchError, ManifestError, TruncatedCodeError

CHECK_BYTES = 2


@dataclass(frozen=True)
class LosslessTable:
    """int8 decoder level -> 16-bit frequency of ink, and what must produce those levels."""

    p1_freq: tuple[int, ...]  # 256 entries, index v + 128, each in 1..TOTAL-1
    runtime: str
    precision: str
    step_index: int = 0  # the step that made lossless codes smallest on the training split

    def __post_init__(self):
        if len(self.p1_freq) != 256 or not all(isinstance(f, int) and 0 < f < TOTAL for f in self.p1_freq):
            raise ManifestError("lossless.p1_freq must be 256 integers in 1..65535")

    @classmethod
    def from_json(cls, obj) -> LosslessTable:
        try:
            return cls(tuple(obj["p1_freq"]), str(obj["runtime"]), str(obj["precision"]), int(obj.get("step_index", 0)))
        except (KeyError, TypeError) as e:
            raise ManifestError(f"coding.json 'lossless' section is malformed: {e}") from e

    def to_json(self) -> dict:
        return {"p1_freq": list(self.p1_freq), "runtime": self.runtime, "precision": self.precision}


def build_table(levels: np.ndarray, pixels: np.ndarray, *, prior_weight: float = 4.0) -> tuple[int, ...]:
    """Estimate ``p1_freq`` from int8 levels and the true binary pixels (export time).

    P(ink | v) = (n1[v] + w * prior(v)) / (n[v] + w), prior(v) = (v + 128.5) / 256, the
    level's nominal probability; clipped to [1, TOTAL - 1] so both outcomes stay codable.
    """
    idx = levels.astype(np.int64).ravel() + 128
    ink = pixels.astype(bool).ravel()
    n = np.bincount(idx, minlength=256).astype(np.float64)
    n1 = np.bincount(idx[ink], minlength=256).astype(np.float64)
    prior = (np.arange(256) + 0.5) / 256
    p = (n1 + prior_weight * prior) / (n + prior_weight)
    return tuple(int(f) for f in np.clip(np.rint(p * TOTAL), 1, TOTAL - 1))


def image_check(bits: np.ndarray) -> bytes:
    """16-bit check of a binary image (CRC-32 of the packed bits, low half)."""
    return (zlib.crc32(np.packbits(bits.astype(np.uint8).ravel()).tobytes()) & 0xFFFF).to_bytes(2, "big")


def encode(symbols, bits: np.ndarray, levels: np.ndarray, table: CdfTable, lossless: LosslessTable) -> bytes:
    """One image: latent ``symbols`` (D ints), binary ``bits`` (H*W), int8 ``levels`` (H*W)."""
    enc = RangeEncoder()
    encode_row(enc, as_symbols(symbols, len(table.lo)), table)
    freq = lossless.p1_freq
    encode_ = enc.encode
    for b, v in zip(bits.ravel().tolist(), levels.ravel().tolist()):
        f = freq[v + 128]
        if b:
            encode_(0, f)
        else:
            encode_(f, TOTAL - f)
    return image_check(bits) + enc.finish()


def start_decoding(payload: bytes, table: CdfTable) -> tuple[RangeDecoder, list[int], bytes]:
    """Phase 1: the latent symbols. The caller runs the decoder network on them next."""
    if len(payload) < CHECK_BYTES:
        raise TruncatedCodeError(f"a lossless payload is at least {CHECK_BYTES} bytes (its image check)")
    dec = RangeDecoder(payload[CHECK_BYTES:])
    return dec, decode_row(dec, table), payload[:CHECK_BYTES]


def finish_decoding(dec: RangeDecoder, check: bytes, levels: np.ndarray, lossless: LosslessTable) -> np.ndarray:
    """Phase 2: the pixels under the receiver's own int8 levels; verifies the image check."""
    freq = lossless.p1_freq
    decode = dec.decode
    out = bytearray(levels.size)
    cause = f"(lossless codes need {lossless.runtime} {lossless.precision} on both sides, same build), or damaged data"
    try:  # under other probabilities the pixel code may not even parse: the same disagreement, found sooner
        for i, v in enumerate(levels.ravel().tolist()):
            f = freq[v + 128]
            out[i] = decode((0, f, TOTAL)) == 0
    except CorruptCodeError as e:
        raise LosslessMismatchError(
            f"the pixels do not decode ({e}): this device's int8 decoder does not reproduce the sender's "
            f"probabilities {cause}"
        ) from None
    bits = np.frombuffer(bytes(out), np.uint8).reshape(levels.shape)
    try:
        check_canonical(dec)
    except CorruptCodeError as e:
        if image_check(bits) == check:  # the right pixels, then bytes the encoder never writes: damage (E5)
            raise
        raise LosslessMismatchError(
            f"the pixel code does not end where this decoder's probabilities say ({e}): this device's int8 "
            f"decoder does not reproduce the sender's probabilities {cause}"
        ) from None
    if image_check(bits) != check:
        raise LosslessMismatchError(
            f"the decoded image fails its check: this device's int8 decoder does not reproduce the sender's "
            f"probabilities {cause}"
        )
    return bits


__all__ = ["LosslessTable", "build_table", "encode", "finish_decoding", "image_check", "start_decoding"]
