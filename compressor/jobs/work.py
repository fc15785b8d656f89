"""The work of one unit, as a class both engines call: load once, then unit in, Arrow rows out.

:class:`EncodeUnits` and :class:`DecodeUnits` hold an :class:`~compressor.Encoder` /
:class:`~compressor.Decoder` for their whole life (the model files are verified and the
runtime session built once), which is the shape Ray Data wants for ``map_batches`` with an
actor pool. The local engine creates one instance and calls it the same way, so both
engines read the same chunks and make the same ``compress`` calls: the bytes cannot depend on
the engine. With the int8 models (the default) they do not depend on the chunking either:
an image's code is the same alone or in any batch (``tests/test_dataset_jobs.py`` checks it);
float32 models may round a latent differently in a batch of 64 than alone, which is why the
chunks are fixed by the plan, not by the engine.

A call takes ``{"unit": [json, ...]}`` (a Ray batch of unit descriptions) and yields one
``pyarrow.Table`` per chunk in the layout of :mod:`compressor.jobs.table`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from compressor import wire
from compressor.errors import CompressorError
from compressor.jobs import table
from compressor.jobs.sources import Images, Unit, read_unit, require_pyarrow

#: Errors that concern one image or one message; anything else is a bug and fails the job.
_ITEM_ERRORS = (CompressorError, ValueError)


@dataclass(frozen=True)
class Loading:
    """What each worker loads: the bundle (an absolute path), its runtime, and the chunk size."""

    bundle: str
    runtime: str = "auto"
    precision: str = "int8"
    threads: int = 1
    batch_size: int = 256

    def load(self, codec_cls):
        """``codec_cls`` (:class:`~compressor.Encoder` or :class:`~compressor.Decoder`) from the bundle."""
        return codec_cls.load(self.bundle, runtime=self.runtime, precision=self.precision, threads=self.threads)


class EncodeUnits:
    """Units of images -> rows of ``table.CODES`` (one self-contained message per image)."""

    def __init__(self, loading: Loading, *, options: dict | None = None):
        from compressor.codec import Encoder

        self.enc = loading.load(Encoder)
        self.batch_size = loading.batch_size
        self.options = dict(options or {})
        self.shape = self.enc.part.image_shape
        self.pa, _ = require_pyarrow()

    def __call__(self, batch: dict) -> Iterator:
        for text in batch["unit"]:
            for images in read_unit(Unit.from_json(str(text)), self.shape, self.batch_size):
                yield self.encode(images)

    def encode(self, images: Images):
        """One chunk -> one table; an image that cannot be coded becomes an error row."""
        errors = list(images.errors)
        codes: list[bytes | None] = [None] * len(errors)
        ok = [i for i, e in enumerate(errors) if not e]
        if ok:
            try:
                messages = self.enc.compress(images.pixels[ok], **self.options)
            except _ITEM_ERRORS:  # e.g. one image that fits no step under --target-bytes: find it
                messages = []
                for i in ok:
                    try:
                        messages.append(self.enc.compress(images.pixels[i : i + 1], **self.options)[0])
                    except _ITEM_ERRORS as e:
                        messages.append(None)
                        errors[i] = str(e)
            for i, message in zip(ok, messages):
                codes[i] = message
        steps = self.enc.coding.steps
        modes, step_values = [], []
        for code in codes:
            if code is None:
                modes.append(None)
                step_values.append(None)
            else:
                header, _ = wire.unpack_message(self.enc.coding.model_id, code)
                modes.append(header.mode)
                step_values.append(steps[header.step_index])
        return table.codes_table(
            self.pa,
            index=images.index,
            names=images.names,
            codes=codes,
            modes=modes,
            steps=step_values,
            errors=[e or None for e in errors],
        )


class DecodeUnits:
    """Units of a codes file -> rows of ``table.IMAGES`` (a PNG per image)."""

    def __init__(self, loading: Loading, *, binarize: bool = True):
        from compressor.codec import Decoder

        self.dec = loading.load(Decoder)
        self.batch_size = loading.batch_size
        self.binarize = binarize
        self.pa, _ = require_pyarrow()

    def __call__(self, batch: dict) -> Iterator:
        for text in batch["unit"]:
            for rows in table.read_codes(Unit.from_json(str(text)), self.batch_size):
                yield self.decode(rows)

    def decode(self, rows: dict):
        """``{"index", "name", "code", "error"}`` lists -> one table of PNGs or errors."""
        from compressor.io.files import png_bytes

        codes, errors = list(rows["code"]), list(rows["error"])
        pngs: list[bytes | None] = [None] * len(codes)
        for i, code in enumerate(codes):
            if code is None:
                errors[i] = f"no code to decode (encoding failed: {errors[i] or 'no reason recorded'})"
            elif len(code) > table.MAX_CODE_BYTES:
                errors[i] = f"the message is {len(code):,} bytes, over the {table.MAX_CODE_BYTES:,} byte limit: damaged"
                codes[i] = None
        ok = [i for i, c in enumerate(codes) if c is not None]
        # Lossless and lossy messages cannot share one call: decode each mode separately.
        by_mode: dict[int, list[int]] = {}
        for i in ok:
            by_mode.setdefault((codes[i][0] >> 4) & 0x3 if codes[i] else -1, []).append(i)
        for group in by_mode.values():
            try:
                images = self._decode([codes[i] for i in group])
            except _ITEM_ERRORS:  # one damaged message: find it, keep the others
                images = []
                for i in group:
                    try:
                        images.append(self._decode([codes[i]])[0])
                    except _ITEM_ERRORS as e:
                        images.append(None)
                        errors[i] = str(e)
            for i, image in zip(group, images):
                if image is not None:
                    pngs[i] = png_bytes(image)
        return table.images_table(
            self.pa, index=rows["index"], names=rows["name"], images=pngs, errors=[e or None for e in errors]
        )

    def _decode(self, messages: list[bytes]) -> np.ndarray:
        """What ``compressor decode`` does with a stream: uint8 (N, H, W)."""
        from compressor.io.arrays import to_uint8

        decoded = self.dec.read(messages)
        images = self.dec.images(decoded, binarize=self.binarize)  # lossless codes: exact uint8 already
        return images if images.dtype == np.uint8 else to_uint8(images)
