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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from compressor import limits, residual_codec, wire
from compressor import names as name_rules
from compressor.batch1 import ImageCoder, MessageDecoder
from compressor.bundle import Part, load_part
from compressor.coding import binary_context, binary_context2, entropy, lossless, residual
from compressor.coding.entropy import CdfTable
from compressor.coding.level_coder import LEVELS, LevelCoder
from compressor.coding.rangecoder import encode_all
from compressor.errors import (
    BundleError,
    BundleNotFoundError,
    CodeError,
    CorruptCodeError,
    LimitError,
    LosslessMismatchError,
    ManifestError,
    RateError,
    TruncatedCodeError,
    about_image,
)
from compressor.io.arrays import as_batch, checked_batch, image_count
from compressor.runtime.network import Network

MODES = tuple(wire.MODES)


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
        self._unpack = wire.message_reader(self.model_id)
        self.lossless = lossless.LosslessTable.from_json(raw["lossless"]) if "lossless" in raw else None
        self.residual = residual.ResidualTable.from_json(raw["residual"]) if "residual" in raw else None
        context = raw.get("binary_context")
        self.binary_context = binary_context.ContextTable.from_json(context) if context is not None else None
        context2 = raw.get("binary_context2")  # layout 2 (binary_context2.py); an older reader ignores it
        self.binary_context2 = binary_context2.ContextTable2.from_json(context2) if context2 is not None else None

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

    def decode_item(self, payload: bytes, index: int, mode: str) -> list[int]:
        """The latent symbols of one payload (for a lossless or residual payload: its latent part)."""
        return self._item(payload, index, mode)[0]

    def _item(self, payload: bytes, index: int, mode: str) -> tuple[list[int], tuple | None]:
        """``(latent symbols, phase-1 state)``: a residual payload's state (its range decoder
        after the latent, check, bound or band, own step) is kept so that its pixels are
        decoded on from there, without parsing the payload again."""
        if mode == "entropy":  # the everyday payload first
            self._check_index(index)
            return entropy.decode_symbols(payload, self.tables[index]), None
        if mode == "residual":
            self._check_index(index)
            return residual_codec.start(self, payload, index)
        return self._latent_part(payload, index, mode), None

    def _latent_part(self, payload: bytes, index: int, mode: str) -> list[int]:
        if mode != "lossless":
            return self.decode_one(payload, index, mode)
        self._check_index(index)
        if self.lossless is None:
            raise CorruptCodeError(
                "a lossless code, but this bundle has no lossless table: damaged data or wrong bundle"
            )
        _, syms, _ = lossless.start_decoding(payload, self.tables[index])
        return syms

    def read(self, codes, *, max_images: int = limits.MAX_IMAGES) -> Decoded:
        """Bytes -> symbols. ``codes``: a stream (bytes) or a list of messages.

        Every refusal of docs/format.md, in its order; the network is not needed. A stream
        declaring more than ``max_images`` images is refused (``LimitError``) before anything
        is decoded: an empty payload is a valid code, so a small stream may declare very many.
        """
        payloads: list[bytes] = []
        states: list = []
        modes: set[str] = set()
        if isinstance(codes, (bytes, bytearray, memoryview)):
            codes = bytes(codes)
            if codes[:4] != wire.STREAM_MAGIC:
                raise CorruptCodeError(
                    "not a compressor stream (bad magic); to decode single messages pass a list of them"
                )
            # format refusals first, then the budget, before any symbol is decoded
            stream = wire.unpack_stream(codes, expected_model_id=self.model_id, max_images=max_images)
            if stream.count == 0:
                raise CorruptCodeError("the stream holds no images (an encoder never writes one): damaged data")
            if stream.joint_count is not None:
                syms = self.decode_joint(stream.payloads[0], stream.step_index, stream.mode, stream.count)
            else:
                items = [self._decode_stream_item(p, stream.step_index, stream.mode) for p in stream.payloads]
                syms, states = [s for s, _ in items], [t for _, t in items]
                payloads = list(stream.payloads)
            indices = [stream.step_index] * len(syms)
            names = stream.names
            modes.add(stream.mode)
        else:
            if isinstance(codes, str) or not hasattr(codes, "__iter__"):
                raise TypeError("codes must be stream bytes or a list of message bytes")
            syms, indices = [], []
            for i, msg in enumerate(codes):
                if i >= max_images:
                    raise LimitError(f"more than {max_images} messages in one call (raise it with max_images=)")
                if not isinstance(msg, (bytes, bytearray, memoryview)):
                    raise TypeError(f"message {i} is {type(msg).__name__}, expected bytes")
                if bytes(msg[:4]) == wire.STREAM_MAGIC:  # else its first byte reads as "format version 2"
                    raise CorruptCodeError(f"message {i} is a whole stream: pass the stream's bytes, not a list")
                try:
                    header, payload = self._unpack(msg)
                    symbols, state = self._item(payload, header.step_index, header.mode)
                    syms.append(symbols)
                    states.append(state)
                except CodeError as e:
                    raise type(e)(f"message {i}: {e}") from e
                payloads.append(payload)
                modes.add(header.mode)
                indices.append(header.step_index)
            names = None
        if not syms:
            raise CorruptCodeError("no codes to decode: the list holds no message")
        exact = modes & {"lossless", "residual"}
        if exact and len(modes) > 1:
            raise RateError(
                f"{' and '.join(sorted(modes))} messages cannot be decoded in one call; decode them separately"
            )
        mode = exact.pop() if exact else sorted(modes)[0]
        own = indices
        if mode == "residual" and self.binary_context2 is not None:  # layout 2 names each image's own step
            own = [residual_codec.own_step(state) for state in states]
        return Decoded(
            np.asarray(syms, np.int64),
            np.asarray([self.steps[i] for i in own], np.float64),
            names,
            mode,
            tuple(payloads) if mode in ("lossless", "residual") else None,
            np.asarray(indices, np.int64),
            tuple(zip(payloads, states, strict=True)) if mode == "residual" else None,
        )

    def lossless_pixels(self, payload: bytes, index: int, levels: np.ndarray) -> np.ndarray:
        """The bits (bool, H x W) of one lossless payload, given the int8 decoder's output levels
        for its latent; ``LosslessMismatchError`` when the image check fails."""
        dec, _, check = lossless.start_decoding(payload, self.tables[index])
        return lossless.finish_decoding(dec, check, levels, self.lossless)

    def _decode_stream_item(self, payload: bytes, index: int, mode: str):
        """:meth:`_item` for a stream payload: its length is checksummed, so a short one is damage."""
        try:
            return self._item(payload, index, mode)
        except TruncatedCodeError as e:
            raise CorruptCodeError(f"{e}, although the stream checksum vouches for its length: damaged data") from e


def _everyday(
    *, step, quality, target_bytes, mode, max_error, target_psnr, band, target_error, mean_error, max_images
) -> bool:
    """Whether an :meth:`Encoder.compress` call is the everyday one, which may take the one-image
    shortcut: every keyword knob at its default, except ``quality``, which may be an exact int,
    and ``max_images``, which may be any int budget that allows the shortcut's one image.

    Its parameters are ``compress``'s keyword-only ones, by name (a test holds them to it), so
    a new knob that is not checked here fails that test instead of being silently ignored by
    the shortcut; keyword-only, so a call cannot pair a value with the wrong knob. Plain ``is``
    tests, no ``locals()``: the call costs a fraction of a µs.
    """
    return (
        step is None
        and (quality is None or type(quality) is int)
        and mode == "entropy"
        and target_bytes is None
        and max_error is None
        and target_psnr is None
        and band is None
        and target_error is None
        and mean_error is None
        and type(max_images) is int
        and max_images >= 1
    )


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise RateError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _finest_fitting(make: Callable[[int], bytes], fits: Callable[[bytes], bool], steps: int, what: str) -> bytes:
    """The one rate search: the code at the finest step index whose bytes ``fits`` accepts."""
    for index in range(steps):
        data = make(index)
        if fits(data):
            return data
    raise RateError(f"{what} even at the coarsest step; raise target_bytes or use a coarser model")


@dataclass(frozen=True)
class Decoded:
    """What the bytes say, before the network runs: symbols, steps, names, mode.

    For lossless codes ``payloads`` keeps each image's payload: its pixels are decoded after
    the network has predicted them (:meth:`Decoder.images`), with the step index each
    header named (``step_indices``), never one derived back from a float step.
    """

    symbols: np.ndarray  # int64 (N, D)
    steps: np.ndarray  # float64 (N,) step of each image
    names: tuple[str, ...] | None
    mode: str = "entropy"
    payloads: tuple[bytes, ...] | None = None
    # int64 (N,): the step index each header named (binary layout-2 payloads name their latent's own
    # step inside the range code, relative to it; ``steps`` holds that one)
    step_indices: np.ndarray | None = None
    # residual codes: (payload, its phase-1 state) from :meth:`Coding.read` (range decoder after
    # the latent, check, bound or band, own step), so the pixels are decoded on from there; a
    # state is used only beside the very payload it was read from
    phase1: tuple | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, items: slice) -> Decoded:
        """The images ``items`` (a slice), e.g. to decode a long stream in bounded batches."""
        if not isinstance(items, slice):
            raise TypeError("Decoded takes a slice, e.g. decoded[0:256]")
        return replace(
            self,
            symbols=self.symbols[items],
            steps=self.steps[items],
            names=None if self.names is None else self.names[items],
            payloads=None if self.payloads is None else self.payloads[items],
            step_indices=None if self.step_indices is None else self.step_indices[items],
            phase1=None if self.phase1 is None else self.phase1[items],
        )

    @property
    def latents(self) -> np.ndarray:
        """Dequantized latents, float64 (N, D): what the decoder network is fed."""
        return self.symbols.astype(np.float64) * self.steps[:, None]


class _Half:
    """What Encoder and Decoder share: one verified sub-bundle, its network and its coding tables."""

    ROLE = ""

    def __init__(self, part: Part, network: Network, coding: Coding | None = None):
        self.part, self.network = part, network
        self.coding = coding if coding is not None else Coding(part)

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
        coding = Coding(part)  # every table parsed and checked before a runtime is created
        network = Network(part, runtime=runtime, precision=precision, threads=threads, providers=providers)
        return cls(part, network, coding)

    @property
    def runtime(self) -> str:
        """The runtime actually in use (what 'auto' resolved to)."""
        return self.network.runtime


class Encoder(_Half):
    """Images -> latent codes, on the sending device."""

    ROLE = "encoder"

    def __init__(self, part: Part, network: Network, coding: Coding | None = None):
        super().__init__(part, network, coding)
        # Lazy caches, filled on first use (every constructor path, load included, comes here)
        self._predictors: dict[tuple[str, str], Network] = {}  # decoders beside us, by (runtime, precision)
        self._level_coders: dict[int, LevelCoder] = {}  # per step index
        self._packers: dict[tuple[str, int], Callable[[bytes], bytes]] = {}  # message packers per (mode, step index)
        self._image_coders: dict[int | None, ImageCoder | bool] = {}  # compress's shortcut, by quality
        self._binary_levels: tuple[np.ndarray, np.ndarray] | None = None  # network input of dark/ink pixels, by value

    @property
    def steps(self) -> list[float]:
        return list(self.coding.steps)

    def _image_coder(self, quality: int | None) -> ImageCoder | bool:
        """The one-image shortcut of :meth:`compress` at ``quality`` (None: the default step), made
        on first use; False where there is none (an invalid quality, whose error the general path
        raises in its turn, a float-output file, or no one-image file). Only valid qualities are
        remembered, so refused ones (a caller's untrusted values) cannot grow the cache."""
        steps = len(self.coding.steps)
        if quality is not None and not 1 <= quality <= steps:
            return False
        net = self.network
        coder: ImageCoder | bool = False
        if net.output_spec.dtype == "int8" and net.single_session():
            index = self.coding.default_index if quality is None else steps - quality
            coder = ImageCoder(self, index, self._packer("entropy", index))
        self._image_coders[quality] = coder
        return coder

    def latents(self, images) -> np.ndarray:
        """Posterior means, float32 (N, D). Images are binarized first if the model was trained so.

        Binarized images go straight to the network's two input levels (those of 0.0 and
        1.0, computed once): the same numbers as binarizing floats and quantizing them.
        """
        return self.network.dequantize_output(self._network_output(images))

    def _network_output(self, images) -> np.ndarray:
        """The encoder network's own output for caller images: int8 levels from an int8 file."""
        net = self.network
        if not self.part.binarize:
            return net.run_native(net.quantize_input(as_batch(images, shape=self.part.image_shape)[..., None]))
        x = checked_batch(images, shape=self.part.image_shape)[..., None]
        return net.run_native(self._pixel_levels(x))

    def _pixel_levels(self, x: np.ndarray) -> np.ndarray:
        """The network's int8 input for a checked batch of a binarized model: each pixel's level
        by value (uint8), or the ink level where a float pixel is above 0.5 and the dark one elsewhere."""
        by_byte, by_ink = self._levels_of_pixels()
        if x.dtype == np.uint8:
            return by_byte[x]
        return np.where(_ink(x), by_ink[1, ...], by_ink[0, ...])  # 0-d int8 arrays: an int8 result

    def _packer(self, mode: str, index: int):
        """:func:`wire.message_packer` for this model, made once per (mode, step index)."""
        pack = self._packers.get((mode, index))
        if pack is None:
            pack = self._packers[mode, index] = wire.message_packer(self.coding.model_id, mode, index)
        return pack

    def _level_coder(self, index: int) -> LevelCoder:
        """Step ``index``'s tables from output level to symbol and coder slice, made on first use
        by :meth:`quantize` itself (so the same symbols as the general path)."""
        coder = self._level_coders.get(index)
        if coder is None:
            symbols = self.quantize(self.network.dequantize_output(LEVELS), index)
            coder = self._level_coders[index] = LevelCoder(symbols, self.coding.tables[index])
        return coder

    def _levels_of_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """The network's input level of each uint8 pixel value and of each bool (dark, ink)."""
        if self._binary_levels is None:
            off, on = self.network.quantize_input(np.array([0.0, 1.0]))
            # uint8 pixel -> level (128/255 is the first value above 0.5, as in as_batch), and bool -> level
            self._binary_levels = (np.where(np.arange(256) > 127, on, off), np.array([off, on]))
        return self._binary_levels

    def symbols(self, images, *, step: float | None = None, quality: int | None = None) -> np.ndarray:
        """The integer code vectors, int64 (N, D), at one step."""
        index = self.coding.step_index(step, quality)
        return self.quantize(self.latents(images), index)

    def quantize(self, latents: np.ndarray, index: int) -> np.ndarray:
        """Latents -> int64 symbols at step index ``index`` (rounded, clipped to the coder's range)."""
        q = np.rint(np.asarray(latents, np.float64) / self.coding.steps[index])
        np.minimum(q, entropy.MAX_ABS_SYMBOL, out=q)
        np.maximum(q, -entropy.MAX_ABS_SYMBOL, out=q)
        return q.astype(np.int64)

    def compress(
        self,
        images,
        *,
        step: float | None = None,
        quality: int | None = None,
        target_bytes: float | None = None,
        mode: str = "entropy",
        max_error: int | None = None,
        target_psnr: float | None = None,
        band: int | None = None,
        target_error: float | None = None,
        mean_error: float | None = None,
        max_images: int = limits.MAX_IMAGES,
    ) -> list[bytes]:
        """One self-contained message per image (2-byte header + payload).

        ``target_bytes`` is a budget per image: each image gets the finest step whose whole
        message is at most that many bytes (so images differ in step); one that fits at no
        step raises ``RateError``. ``max_error=E`` (grayscale models) makes residual codes:
        every uint8 pixel within ``E`` (0 = lossless); ``target_psnr=DB`` picks per image the
        largest ``E`` that meets it. Binary models: ``max_error=0`` is lossless with causal
        context, ``band=B`` (0..127) codes only the pixels whose decoder level lies within
        ``B`` of the threshold (near-lossless); ``target_error=F`` (bundles with layout 2) the
        shortest code per image with at most a fraction ``F`` of wrong pixels; ``mean_error=F``
        the shortest codes with at most a fraction ``F`` of all the call's pixels wrong (images
        share the budget: the hard ones spend it where it saves most; with ``target_error`` too,
        each image also keeps its own cap). 0 is lossless.

        More than ``max_images`` images are refused (``LimitError``) before any is converted or
        coded: a zero-stride view (``np.broadcast_to``) holds millions of images in no memory.
        """
        if _everyday(  # one image goes by tables, anything else on below
            step=step,
            quality=quality,
            target_bytes=target_bytes,
            mode=mode,
            max_error=max_error,
            target_psnr=target_psnr,
            band=band,
            target_error=target_error,
            mean_error=mean_error,
            max_images=max_images,
        ):
            coder = self._image_coders.get(quality)
            if coder is None:
                coder = self._image_coder(quality)
            message = coder.message(images) if coder else None
            if message is not None:
                return [message]
        _check_count(images, max_images)
        _check_mode(mode)
        _check_rate(step, quality, target_bytes)
        mid = self.coding.model_id
        if mode == "residual" or any(x is not None for x in (max_error, target_psnr, band, target_error, mean_error)):
            _check_residual_request(mode, target_bytes)
            items = residual_codec.encode(
                self,
                images,
                step=step,
                quality=quality,
                max_error=max_error,
                target_psnr=target_psnr,
                band=band,
                target_error=target_error,
                mean_error=mean_error,
            )
            return [wire.pack_message(mid, "residual", i, p) for i, p in items]
        if mode == "lossless":
            if target_bytes is not None:
                raise RateError("lossless codes have no rate knob besides step/quality; drop target_bytes")
            return [wire.pack_message(mid, mode, i, p) for i, p in self._lossless(images, step, quality)]
        out = self._network_output(images)
        if target_bytes is None:
            index = self.coding.step_index(step, quality)
            pack = self._packer(mode, index)
            if out.dtype != np.int8:
                return [pack(self.coding.encode_one(s, index, mode)) for s in self.quantize(out, index)]
            coder = self._level_coder(index)  # the everyday path: int8 levels -> slices by table
            if mode != "entropy":
                return [pack(self.coding.encode_one(s, index, mode)) for s in coder.symbols[out]]
            messages = []
            for levels in out.tolist():
                slices = coder.slices_of(levels)
                if slices is None:  # an escape
                    messages.append(pack(self.coding.encode_one(coder.symbols[levels], index, mode)))
                else:
                    messages.append(pack(encode_all(slices)))
            return messages
        latents = self.network.dequantize_output(out)
        per_step: dict[int, np.ndarray] = {}

        def symbols_at(index: int) -> np.ndarray:
            if index not in per_step:
                per_step[index] = self.quantize(latents, index)
            return per_step[index]

        return [
            _finest_fitting(
                lambda index, i=i: wire.pack_message(
                    mid, mode, index, self.coding.encode_one(symbols_at(index)[i], index, mode)
                ),
                lambda msg: len(msg) <= target_bytes,
                len(self.coding.steps),
                f"image {i} does not fit in {target_bytes:g} bytes",
            )
            for i in range(len(latents))
        ]

    def _lossless(self, images, step, quality) -> list[tuple[int, bytes]]:
        """(step index, payload) per image: latent code + every pixel under the int8 decoder."""
        table = self.coding.lossless
        if table is None or not self.part.binarize:
            raise RateError(
                "this bundle has no lossless table (lossless mode needs a model trained on binarized images)"
            )
        bits = _ink(checked_batch(images, shape=self.part.image_shape))  # checked once, here
        index = table.step_index if step is None and quality is None else self.coding.step_index(step, quality)
        net = self.network
        by_ink = self._levels_of_pixels()[1]
        latents = net.dequantize_output(net.run_native(np.where(bits, by_ink[1, ...], by_ink[0, ...])[..., None]))
        symbols = self.quantize(latents, index)
        net = self.prediction_network(table.runtime, table.precision, "lossless")
        levels = net.levels(symbols * self.coding.steps[index])
        ct = self.coding.tables[index]
        return [(index, lossless.encode(s, b, v, ct, table)) for s, b, v in zip(symbols, bits, levels)]

    def prediction_network(self, runtime: str, precision: str, purpose: str) -> Network:
        """The decoder network found beside this encoder's part, loaded once per (runtime,
        precision): lossless and residual codes predict their pixels with it, as the receiver
        will. A missing decoder/ is :class:`BundleNotFoundError` naming ``purpose``."""
        key = (runtime, precision)
        if key not in self._predictors:
            root = self.part.root.parent / "decoder"
            try:
                part = load_part(root, "decoder")
            except BundleError as e:
                raise BundleNotFoundError(
                    f"{purpose} encoding runs the decoder too: keep decoder/ beside {self.part.root} ({e})"
                ) from e
            self._predictors[key] = Network(part, runtime=runtime, precision=precision, threads=self.network.threads)
        return self._predictors[key]

    def compress_stream(
        self,
        images,
        *,
        step: float | None = None,
        quality: int | None = None,
        target_bytes: float | None = None,
        mode: str = "entropy",
        names: Sequence[str] | None = None,
        joint: bool = False,
        max_error: int | None = None,
        target_psnr: float | None = None,
        band: int | None = None,
        target_error: float | None = None,
        mean_error: float | None = None,
        max_images: int = limits.MAX_IMAGES,
    ) -> wire.PackedStream:
        """One container for a batch (one step for all; docs/format.md): bytes that also say
        their ``count`` and ``payload_bytes`` (:class:`~compressor.wire.PackedStream`).

        ``joint=True`` codes the whole batch as one block: no per-image lengths and one
        termination, about 1.3 bytes per image smaller, but images are only reachable in
        order. ``target_bytes`` is a budget per image, as in :meth:`compress`: the finest
        step whose whole stream (all framing included) is at most ``target_bytes * N`` bytes.
        ``names`` (optional) are stored with the images and become the decoder's file
        names: each at most 251 bytes of UTF-8, no path separators, unique. More than
        ``max_images`` images are refused before any work, as in :meth:`compress`.
        """
        _check_count(images, max_images)
        _check_mode(mode)
        _check_rate(step, quality, target_bytes)
        if names is not None:
            names = list(names)
            for name in names:
                name_rules.encode(name)
            name_rules.check_unique(names)
        mid = self.coding.model_id
        if mode == "residual" or any(x is not None for x in (max_error, target_psnr, band, target_error, mean_error)):
            _check_residual_request(mode, target_bytes, joint)
            items = residual_codec.encode(
                self,
                images,
                step=step,
                quality=quality,
                max_error=max_error,
                target_psnr=target_psnr,
                band=band,
                target_error=target_error,
                mean_error=mean_error,
                stream=True,
            )
            return wire.pack_stream(mid, "residual", items[0][0], [p for _, p in items], names)
        if mode == "lossless":
            if joint or target_bytes is not None:
                raise RateError("lossless streams are neither joint nor rate-targeted; drop joint/target_bytes")
            items = self._lossless(images, step, quality)
            return wire.pack_stream(mid, mode, items[0][0], [p for _, p in items], names)
        if joint and mode != "entropy":
            raise RateError("joint streams are entropy coded; raw mode has fixed-size payloads already")
        latents = self.latents(images)

        def make(index: int) -> bytes:
            symbols = self.quantize(latents, index)
            if joint:
                block = entropy.encode_joint(symbols, self.coding.tables[index])
                return wire.pack_stream(mid, mode, index, [block], names, joint_count=len(symbols))
            payloads = [self.coding.encode_one(s, index, mode) for s in symbols]
            return wire.pack_stream(mid, mode, index, payloads, names)

        if target_bytes is None:
            return make(self.coding.step_index(step, quality))
        return _finest_fitting(
            make,
            lambda data: len(data) <= target_bytes * len(latents),
            len(self.coding.steps),
            f"the stream does not fit in {target_bytes:g} bytes per image",
        )


def _ink(x: np.ndarray) -> np.ndarray:
    """Bool: the pixels of a checked batch above 0.5, as :func:`as_batch` would scale them
    (a uint8 pixel above 127; a float pixel above 0.5 once it is float32)."""
    return x > 127 if x.dtype == np.uint8 else np.asarray(x, np.float32) > 0.5


def _check_count(images, max_images: int) -> None:
    """Refuse more than ``max_images`` images from their shape alone, before any conversion."""
    n = image_count(images)
    if n is not None and n > max_images:
        raise LimitError(f"more than {max_images} images in one call (raise it with max_images=, or compress in parts)")


def _check_residual_request(mode: str, target_bytes, joint: bool = False) -> None:
    if mode not in ("entropy", "residual"):
        raise RateError(f"max_error=/target_psnr=/band= make residual codes; drop mode={mode!r}")
    if target_bytes is not None or joint:
        raise RateError("residual codes are sized by max_error=, target_psnr= or band=; drop target_bytes=/joint=")


def _check_rate(step, quality, target_bytes) -> None:
    if target_bytes is None:
        return
    if step is not None or quality is not None:
        raise RateError("give target_bytes= alone, without step= or quality=")
    if isinstance(target_bytes, bool) or not isinstance(target_bytes, (int, float)) or not target_bytes > 0:
        raise RateError(f"target_bytes must be a positive number of bytes per image, got {target_bytes!r}")


class Decoder(_Half):
    """Latent codes -> images, on the receiving device."""

    ROLE = "decoder"
    _message_decoder: MessageDecoder | bool | None = None  # decompress's one-message shortcut, made on first use

    def read(self, codes, *, max_images: int = limits.MAX_IMAGES) -> Decoded:
        """Bytes -> symbols, every byte checked (docs/format.md). ``codes``: a stream (bytes) or a
        list of messages. See :meth:`Coding.read`."""
        return self.coding.read(codes, max_images=max_images)

    def images(self, decoded: Decoded, *, binarize: bool = False) -> np.ndarray:
        """Run the network on what :meth:`read` returned.

        Lossy codes: probabilities float32 (N, H, W) in [0, 1], or uint8 0/255 with
        ``binarize=True``. Lossless and residual codes: exact (or within their bound) uint8
        images, each verified.
        """
        if decoded.mode == "lossless":
            return self._lossless_images(decoded)
        if decoded.mode == "residual":
            return residual_codec.finish(self, decoded)
        net = self.network
        probs = net.dequantize_output(net.run_native(self._network_input(decoded)))[..., 0]
        return np.where(probs >= 0.5, np.uint8(255), np.uint8(0)) if binarize else probs

    def _network_input(self, decoded: Decoded) -> np.ndarray:
        """The decoder network's input for ``decoded``: its latents quantized for the file."""
        steps = decoded.steps
        if len(steps) == 1 or (steps == steps[0]).all():
            return self.network.quantize_symbols(decoded.symbols, float(steps[0]))
        return self.network.quantize_input(decoded.latents)

    def decode_symbols(self, symbols: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Integer symbols and their steps -> pixel probabilities float32 (N, H, W)."""
        return self.images(Decoded(np.asarray(symbols), np.asarray(steps, np.float64), None))

    def decompress(self, codes, *, binarize: bool = False) -> np.ndarray:
        """``read`` then ``images``: probabilities float32 (N, H, W), uint8 0/255 with
        ``binarize=True``, or exact uint8 images for lossless codes."""
        if type(codes) is list and len(codes) == 1:  # the everyday call: one message, by tables
            one = self._message_decoder
            if one is None:
                one = self._message_decoder = MessageDecoder(self) if self.network.single_session() else False
            probs = one.probabilities(codes[0]) if one else None
            if probs is not None:
                return np.where(probs >= 0.5, np.uint8(255), np.uint8(0)) if binarize else probs
        return self.images(self.read(codes), binarize=binarize)

    def _lossless_images(self, decoded: Decoded) -> np.ndarray:
        t = self.coding.lossless
        if (self.network.runtime, self.network.precision) != (t.runtime, t.precision):
            raise LosslessMismatchError(
                f"lossless codes are predicted with the {t.precision} {t.runtime} decoder; this decoder runs "
                f"{self.network.precision} {self.network.runtime}: load it with runtime={t.runtime!r}, "
                f"precision={t.precision!r}"
            )
        if decoded.step_indices is None:
            raise ValueError("lossless images need the step indices their codes named: pass what Decoder.read returned")
        levels = self.network.levels(decoded.latents)[..., 0]
        out = np.empty(levels.shape, np.uint8)
        for i, (payload, index, v) in enumerate(zip(decoded.payloads, decoded.step_indices.tolist(), levels)):
            try:
                out[i] = self.coding.lossless_pixels(payload, index, v) * np.uint8(255)
            except CodeError as e:
                raise about_image(e, i) from e
        return out
