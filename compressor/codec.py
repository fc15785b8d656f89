"""Images -> latent bytes -> images: the device-side API.

Workflow::

    enc = Encoder.load("bundle/encoder")             # camera: numpy + one runtime
    messages = enc.compress(images)                   # one self-contained message per image
    stream = enc.compress_stream(images, names=...)   # or one container for a batch
    dec = Decoder.load("bundle/decoder")             # gateway
    probs = dec.decompress(messages)                  # or dec.decompress(stream)

The code is the integer vector ``q = rint(mean / step)``. What decides the bytes after that
(the step list and the integer entropy tables) is read from the bundle and is integer
arithmetic, so a code made on x86_64 decodes to the same symbols on aarch64, and a code
made with one runtime decodes with any other: once quantized, the symbols do not depend on
the runtime that produced the means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor import binary_context, entropy, lossless, residual, residual_codec, wire
from compressor.bundle import Part, load_part
from compressor.entropy import CdfTable
from compressor.errors import (
    BundleError,
    BundleNotFoundError,
    CodeError,
    CorruptCodeError,
    LosslessMismatchError,
    ManifestError,
    RateError,
)
from compressor.images import as_batch
from compressor.inference import Network

MODES = ("entropy", "raw", "lossless", "residual")


class Coding:
    """The bundle's coding.json, parsed once: steps, tables, defaults."""

    def __init__(self, part: Part):
        raw = part.coding()
        try:
            self.steps = [float(s) for s in raw["steps"]]
            self.tables = [CdfTable.from_json(t) for t in raw["tables"]]
            self.default_index = int(raw["default_step_index"])
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{part.root}/coding.json is malformed: {e}") from e
        if not 1 <= len(self.steps) <= wire.MAX_STEPS or len(self.tables) != len(self.steps):
            raise ManifestError(f"{part.root}/coding.json: need 1..16 steps with one table each")
        if any(t.dims != part.latent_dim for t in self.tables) or not 0 <= self.default_index < len(self.steps):
            raise ManifestError(f"{part.root}/coding.json does not fit a {part.latent_dim}-dim latent")
        self.model_id = bytes.fromhex(part.model_id)
        self.lossless = lossless.LosslessTable.from_json(raw["lossless"]) if "lossless" in raw else None
        self.residual = residual.ResidualTable.from_json(raw["residual"]) if "residual" in raw else None
        context = raw.get("binary_context")
        self.binary_context = binary_context.ContextTable.from_json(context) if context is not None else None

    def step_index(self, step: float | None, quality: int | None) -> int:
        if step is not None and quality is not None:
            raise RateError("give step= or quality=, not both")
        if quality is not None:
            if not (isinstance(quality, int) and 1 <= quality <= len(self.steps)):
                raise RateError(f"quality must be an integer 1..{len(self.steps)} (higher = finer), got {quality!r}")
            return len(self.steps) - quality
        if step is None:
            return self.default_index
        for i, s in enumerate(self.steps):
            if abs(s - float(step)) <= 1e-9 * max(1.0, s):
                return i
        raise RateError(f"step {step} is not one of this bundle's steps: {self.steps}")

    def encode_one(self, symbols, index: int, mode: str) -> bytes:
        table = self.tables[index]
        return entropy.encode_symbols(symbols, table) if mode == "entropy" else entropy.encode_raw(symbols, table)

    def decode_joint(self, block: bytes, index: int, mode: str, count: int) -> list[list[int]]:
        self._check_index(index)
        if mode != "entropy":
            raise CorruptCodeError(f"a joint stream must be entropy coded, not {mode!r}: damaged data")
        return entropy.decode_joint(block, self.tables[index], count)

    def _check_index(self, index: int) -> None:
        if index >= len(self.steps):
            raise CorruptCodeError(
                f"step index {index} does not exist in this bundle ({len(self.steps)} steps): damaged data"
            )

    def decode_one(self, payload: bytes, index: int, mode: str) -> list[int]:
        self._check_index(index)
        table = self.tables[index]
        if mode == "entropy":
            return entropy.decode_symbols(payload, table)
        if mode == "raw":
            return entropy.decode_raw(payload, table)
        raise CorruptCodeError(f"mode {mode!r} is not supported by this decoder")

    def decode_item(self, payload: bytes, index: int, mode: str):
        """(symbols, pending) where pending is the lossless decoder state, else None."""
        if mode == "residual":
            self._check_index(index)
            return residual_codec.start(self, payload, index)
        if mode != "lossless":
            return self.decode_one(payload, index, mode), None
        self._check_index(index)
        if self.lossless is None:
            raise CorruptCodeError(
                "a lossless code, but this bundle has no lossless table: damaged data or wrong bundle"
            )
        dec, syms, check = lossless.start_decoding(payload, self.tables[index])
        return syms, (dec, check)


def _check_residual_request(mode: str, target_bytes, joint: bool = False) -> None:
    if mode not in ("entropy", "residual"):
        raise RateError(f"max_error=/target_psnr= make residual codes; drop mode={mode!r}")
    if target_bytes is not None or joint:
        raise RateError("residual codes are sized by max_error= or target_psnr=; drop target_bytes=/joint=")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


@dataclass(frozen=True)
class Decoded:
    """Symbols recovered from bytes, before the network runs."""

    symbols: np.ndarray  # int64 (N, D)
    steps: np.ndarray  # float64 (N,) step of each image
    names: tuple[str, ...] | None
    pending: tuple | None = None  # lossless: per image (range decoder, image check), pixels still to decode

    @property
    def latents(self) -> np.ndarray:
        """Dequantized latents, float64 (N, D): what the decoder network is fed."""
        return self.symbols.astype(np.float64) * self.steps[:, None]


class _Half:
    """What Encoder and Decoder share: one verified sub-bundle, its network and its coding tables."""

    ROLE = ""

    def __init__(self, part: Part, network: Network):
        self.part, self.network = part, network
        self.coding = Coding(part)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        runtime: str = "auto",
        precision: str = "int8",
        threads: int | None = 1,
        providers=None,
    ):
        """Open ``bundle/<role>`` (or a full bundle) in ``runtime`` ('auto', 'litert', 'tflite', 'onnx')."""
        part = load_part(path, cls.ROLE)
        return cls(part, Network(part, runtime=runtime, precision=precision, threads=threads, providers=providers))

    @property
    def runtime(self) -> str:
        """The runtime actually in use (what 'auto' resolved to)."""
        return self.network.runtime


class Encoder(_Half):
    """Images -> latent codes, on the sending device."""

    ROLE = "encoder"
    _lossless_net: Network | None = None  # loaded on the first lossless request

    @property
    def steps(self) -> list[float]:
        return list(self.coding.steps)

    def latents(self, images) -> np.ndarray:
        """Posterior means, float32 (N, D). Images are binarized first if the model was trained so."""
        x = as_batch(images, shape=self.part.image_shape)
        if self.part.binarize:
            x = (x > 0.5).astype(np.float32)
        return self.network.run(x[..., None])

    def symbols(self, images, *, step: float | None = None, quality: int | None = None) -> np.ndarray:
        """The integer code vectors, int64 (N, D), at one step."""
        index = self.coding.step_index(step, quality)
        return self._quantize(self.latents(images), index)

    def _quantize(self, latents: np.ndarray, index: int) -> np.ndarray:
        q = np.rint(latents.astype(np.float64) / self.coding.steps[index])
        return np.clip(q, -entropy.MAX_ABS_SYMBOL, entropy.MAX_ABS_SYMBOL).astype(np.int64)

    def compress(
        self,
        images,
        *,
        step: float | None = None,
        quality: int | None = None,
        target_bytes: int | None = None,
        mode: str = "entropy",
        max_error: int | None = None,
        target_psnr: float | None = None,
        band: int | None = None,
    ) -> list[bytes]:
        """One self-contained message per image (2-byte header + payload).

        ``target_bytes`` picks, per image, the finest step whose whole message fits; an
        image that fits at no step raises ``RateError``. ``max_error=E`` (grayscale models)
        makes residual codes: every uint8 pixel within ``E`` (0 = lossless);
        ``target_psnr=DB`` picks per image the largest ``E`` that meets it. Binary models:
        ``max_error=0`` is lossless with causal context, ``band=B`` (0..127) codes only the
        pixels whose decoder level lies within ``B`` of the threshold (near-lossless).
        """
        _check_mode(mode)
        if mode == "residual" or max_error is not None or target_psnr is not None or band is not None:
            _check_residual_request(mode, target_bytes)
            items = residual_codec.encode(
                self, images, step=step, quality=quality, max_error=max_error, target_psnr=target_psnr, band=band
            )
            return [wire.pack_message(self.coding.model_id, "residual", i, p) for i, p in items]
        if mode == "lossless":
            if target_bytes is not None:
                raise RateError("lossless codes have no rate knob besides step/quality; drop target_bytes")
            return [
                wire.pack_message(self.coding.model_id, mode, i, p) for i, p in self._lossless(images, step, quality)
            ]
        latents = self.latents(images)
        mid = self.coding.model_id
        if target_bytes is None:
            index = self.coding.step_index(step, quality)
            return [
                wire.pack_message(mid, mode, index, self.coding.encode_one(s, index, mode))
                for s in self._quantize(latents, index)
            ]
        if step is not None or quality is not None:
            raise RateError("give target_bytes= alone, without step= or quality=")
        out = []
        per_step = {}
        for i in range(len(latents)):
            for index in range(len(self.coding.steps)):
                if index not in per_step:
                    per_step[index] = self._quantize(latents, index)
                msg = wire.pack_message(mid, mode, index, self.coding.encode_one(per_step[index][i], index, mode))
                if len(msg) <= target_bytes:
                    out.append(msg)
                    break
            else:
                raise RateError(f"image {i} does not fit in {target_bytes} bytes even at the coarsest step")
        return out

    def _lossless(self, images, step, quality) -> list[tuple[int, bytes]]:
        """(step index, payload) per image: latent code + every pixel under the int8 decoder."""
        table = self.coding.lossless
        if table is None or not self.part.binarize:
            raise ValueError(
                "this bundle has no lossless table (lossless mode needs a model trained on binarized images)"
            )
        bits = as_batch(images, shape=self.part.image_shape) > 0.5
        index = table.step_index if step is None and quality is None else self.coding.step_index(step, quality)
        symbols = self._quantize(self.latents(bits.astype(np.float32)), index)
        net = self._lossless_decoder()
        levels = net.run_native(net.quantize_input(symbols * self.coding.steps[index]))
        ct = self.coding.tables[index]
        return [(index, lossless.encode(s, b, v, ct, table)) for s, b, v in zip(symbols, bits, levels)]

    def _lossless_decoder(self) -> Network:
        """The decoder network that lossless codes are predicted with, found beside the encoder."""
        if self._lossless_net is None:
            root = self.part.root.parent / "decoder"
            try:
                part = load_part(root, "decoder")
            except BundleError as e:
                raise BundleNotFoundError(
                    f"lossless encoding runs the decoder too: keep decoder/ beside {self.part.root} ({e})"
                ) from e
            t = self.coding.lossless
            self._lossless_net = Network(part, runtime=t.runtime, precision=t.precision, threads=self.network.threads)
        return self._lossless_net

    def compress_stream(
        self,
        images,
        *,
        step: float | None = None,
        quality: int | None = None,
        target_bytes: float | None = None,
        mode: str = "entropy",
        names: list[str] | None = None,
        joint: bool = False,
        max_error: int | None = None,
        target_psnr: float | None = None,
        band: int | None = None,
    ) -> bytes:
        """One container for a batch (one step for all; docs/format.md).

        ``joint=True`` codes the whole batch as one block: no per-image lengths and one
        termination, about 1.3 bytes per image smaller, but images are only reachable in
        order. ``target_bytes`` here is the mean per image including all framing: the
        finest step whose whole stream is at most ``target_bytes * N`` bytes.
        """
        _check_mode(mode)
        if mode == "residual" or max_error is not None or target_psnr is not None or band is not None:
            _check_residual_request(mode, target_bytes, joint)
            items = residual_codec.encode(
                self, images, step=step, quality=quality, max_error=max_error, target_psnr=target_psnr, band=band
            )
            return wire.pack_stream(self.coding.model_id, "residual", items[0][0], [p for _, p in items], names)
        if mode == "lossless":
            if joint or target_bytes is not None:
                raise ValueError("lossless streams are neither joint nor rate-targeted")
            items = self._lossless(images, step, quality)
            return wire.pack_stream(self.coding.model_id, mode, items[0][0], [p for _, p in items], names)
        if joint and mode != "entropy":
            raise ValueError("joint streams are entropy coded; raw mode has fixed-size payloads already")
        latents = self.latents(images)
        indices = [self.coding.step_index(step, quality)] if target_bytes is None else range(len(self.coding.steps))
        if target_bytes is not None and (step is not None or quality is not None):
            raise RateError("give target_bytes= alone, without step= or quality=")
        for index in indices:
            symbols = self._quantize(latents, index)
            if joint:
                block = entropy.encode_joint(symbols, self.coding.tables[index])
                data = wire.pack_stream(self.coding.model_id, mode, index, [block], names, joint_count=len(symbols))
            else:
                payloads = [self.coding.encode_one(s, index, mode) for s in symbols]
                data = wire.pack_stream(self.coding.model_id, mode, index, payloads, names)
            if target_bytes is None or len(data) <= target_bytes * len(latents):
                return data
        raise RateError(f"the stream does not fit in {target_bytes} bytes per image even at the coarsest step")


class Decoder(_Half):
    """Latent codes -> images, on the receiving device."""

    ROLE = "decoder"

    def read(self, codes) -> Decoded:
        """Bytes -> symbols. ``codes``: a stream (bytes) or a list of messages."""
        if isinstance(codes, (bytes, bytearray, memoryview)):
            codes = bytes(codes)
            if codes[:4] != wire.STREAM_MAGIC:
                raise CorruptCodeError(
                    "not a compressor stream (bad magic); to decode single messages pass a list of them"
                )
            stream = wire.unpack_stream(codes, expected_model_id=self.coding.model_id)
            if stream.joint_count is not None:
                syms = self.coding.decode_joint(stream.payloads[0], stream.step_index, stream.mode, stream.count)
                pending = [None] * len(syms)
            else:
                items = [self.coding.decode_item(p, stream.step_index, stream.mode) for p in stream.payloads]
                syms, pending = [i[0] for i in items], [i[1] for i in items]
            steps = [self.coding.steps[stream.step_index]] * len(syms)
            names = stream.names
        else:
            if isinstance(codes, str) or not hasattr(codes, "__iter__"):
                raise TypeError("codes must be stream bytes or a list of message bytes")
            syms, steps, pending = [], [], []
            for i, msg in enumerate(codes):
                if not isinstance(msg, (bytes, bytearray, memoryview)):
                    raise TypeError(f"message {i} is {type(msg).__name__}, expected bytes")
                try:
                    header, payload = wire.unpack_message(self.coding.model_id, bytes(msg))
                    sym, state = self.coding.decode_item(payload, header.step_index, header.mode)
                except CodeError as e:
                    raise type(e)(f"message {i}: {e}") from e
                syms.append(sym)
                pending.append(state)
                steps.append(self.coding.steps[header.step_index])
            names = None
        if not syms:
            raise ValueError("no codes to decode")
        lossless_count = sum(p is not None for p in pending)
        if 0 < lossless_count < len(pending):
            raise ValueError("lossless and lossy messages cannot be decoded in one call")
        if lossless_count and len({isinstance(p[0], str) for p in pending}) > 1:
            raise ValueError("binary lossless and grayscale residual messages cannot be decoded in one call")
        return Decoded(
            np.asarray(syms, np.int64), np.asarray(steps, np.float64), names, tuple(pending) if lossless_count else None
        )

    def decode_symbols(self, symbols: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Integer symbols and their steps -> pixel probabilities float32 (N, H, W)."""
        return self.network.run(Decoded(symbols, steps, None).latents)[..., 0]

    def decompress(self, codes, *, binarize: bool = False) -> np.ndarray:
        """Probabilities float32 (N, H, W) in [0, 1], or uint8 0/255 with ``binarize=True``."""
        decoded = self.read(codes)
        if decoded.pending is not None:
            return self.finish_lossless(decoded)
        probs = self.decode_symbols(decoded.symbols, decoded.steps)
        return np.where(probs >= 0.5, 255, 0).astype(np.uint8) if binarize else probs

    def finish_lossless(self, decoded: Decoded) -> np.ndarray:
        """Exact uint8 0/255 images of lossless codes; refuses a decoder that cannot reproduce them."""
        if isinstance(decoded.pending[0][0], str):  # residual codes tag their pending state
            return residual_codec.finish(self, decoded)
        t = self.coding.lossless
        if (self.network.runtime, self.network.precision) != (t.runtime, t.precision):
            raise LosslessMismatchError(
                f"lossless codes are predicted with the {t.precision} {t.runtime} decoder; this decoder runs "
                f"{self.network.precision} {self.network.runtime}: load it with runtime={t.runtime!r}, "
                f"precision={t.precision!r}"
            )
        levels = self.network.run_native(self.network.quantize_input(decoded.latents))[..., 0]
        out = np.empty(levels.shape, np.uint8)
        for i, ((dec, check), v) in enumerate(zip(decoded.pending, levels)):
            try:
                out[i] = lossless.finish_decoding(dec, check, v, t) * np.uint8(255)
            except CodeError as e:
                raise type(e)(f"image {i}: {e}") from e
        return out
