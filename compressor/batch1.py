"""The everyday round trip, one image and one lossy entropy-coded message, by tables made once.

Why: at batch 1 the two int8 invokes take ~33 and ~150 µs (2-core AVX2 VM), and the general path
spent ~67 µs more around them (``bench.speed_targets``' overhead) on checks of its own arrays,
numpy calls on 16 numbers, header objects and look-ups repeated per call; this path spends ~33.
Here everything a message's bytes or a decoded image depend on is
a table made at first use by the general path's own functions (``Encoder.quantize`` through
:class:`~compressor.coding.level_coder.LevelCoder`, ``Network.quantize_symbols``,
``Network.dequantize_output``, :func:`~compressor.wire.message_packer`), so the bytes and the
pixels are the same; what is left per call is the caller's array check, the invokes, list
look-ups and the range coder's own arithmetic.

Anything else -- another dtype or shape, a value to refuse, an escape, a damaged or foreign
message -- makes these return None, and the general path does it, with its own errors.
"""

from __future__ import annotations

from operator import getitem

import numpy as np

from compressor import wire
from compressor.coding import entropy
from compressor.coding.rangecoder import decode_message, decoding_tables, encode_all

_UINT8, _FLOAT32, _UINT32 = np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.uint32)
_ONE_BITS = 0x3F800000  # float32 1.0 as uint32: the bits of +0.0 .. 1.0 are exactly 0 .. this
#: As uint32, the float32 pixels of a binarized model's classes: [+0.0, 0.5] dark (0), (0.5, 1.0]
#: ink (1), anything else -- NaN, inf, negatives (-0.0 too), above 1 -- class 2, for the general path.
_INK_BOUNDS = np.array([0x3F000001, _ONE_BITS + 1], np.uint32)


class ImageCoder:
    """One image -> one message at one step index, for an int8-output encoder with a
    one-image file (``Encoder.compress``'s shortcut)."""

    __slots__ = (
        "_shape",
        "_in_shape",
        "_by_byte",
        "_by_ink",
        "_quantize",
        "_run",
        "_slices",
        "_coder",
        "_table",
        "_pack",
    )

    def __init__(self, encoder, index: int, pack):
        """``pack``: :func:`~compressor.wire.message_packer` of the encoder's model, entropy mode, ``index``."""
        net = encoder.network
        self._pack = pack
        self._shape = (1, *encoder.part.image_shape)
        self._in_shape = (*self._shape, 1)
        self._run = net.single_session().run
        self._coder = encoder._level_coder(index)
        self._slices = self._coder.slices  # per dimension, by output level as an unsigned byte
        self._table = encoder.coding.tables[index]
        self._by_ink = self._quantize = None
        if encoder.part.binarize:  # the general path's own levels of each uint8 value and of dark/ink
            self._by_byte, self._by_ink = encoder._levels_of_pixels()
        else:  # as_batch's float32 of each uint8 value, then the file's quantization (per pixel alike)
            self._by_byte = net.quantize_input(np.arange(256).astype(np.float32) / np.float32(255))
            self._quantize = net.quantize_input

    def network_input(self, images) -> np.ndarray | None:
        """The encoder file's input for a ``(1, H, W)`` uint8 or float32 array whose values are all
        valid, else None (the general path checks it and names what is wrong)."""
        if type(images) is not np.ndarray or images.shape != self._shape:
            return None
        dtype = images.dtype
        if dtype is _UINT8:
            return self._by_byte.take(images).reshape(self._in_shape)
        if dtype is not _FLOAT32:
            return None
        bits = images.view(_UINT32)  # non-negative floats order as their bits
        if self._by_ink is not None:  # check and binarize in one pass: class 2 is out of by_ink's range
            try:
                return self._by_ink.take(np.searchsorted(_INK_BOUNDS, bits, side="right")).reshape(self._in_shape)
            except IndexError:
                return None
        if bits.max() > _ONE_BITS:  # NaN, inf, < 0 or > 1
            return None
        return self._quantize(images.reshape(self._in_shape))

    def message(self, images) -> bytes | None:
        """The image's message (header and range code), or None for the general path."""
        x = self.network_input(images)
        return None if x is None else self.levels_message(self._run(x).tobytes())

    def levels_message(self, levels: bytes) -> bytes:
        """The message of the encoder's int8 output levels, as unsigned bytes (the slice tables'
        index), escapes included."""
        slices = list(map(getitem, self._slices, levels))  # lut[v] per dimension, without a Python frame
        if None in slices:  # a symbol beyond a dimension's table: escapes, by the general coder
            symbols = self._coder.symbols[np.frombuffer(levels, np.uint8)]
            return self._pack(entropy.encode_symbols(symbols, self._table))
        return self._pack(encode_all(slices))


class MessageDecoder:
    """One message -> one image's probabilities, for a decoder with a one-image file
    (``Decoder.decompress``'s shortcut). Its tables are made per step on the first message of it."""

    __slots__ = ("_decoder", "_steps", "_heads", "_run", "_in_shape", "_int8_in", "_out")

    def __init__(self, decoder):
        net = decoder.network
        self._decoder = decoder
        # the header byte of each step's lossy entropy-coded messages (wire knows the layout)
        self._steps = {wire.message_head("entropy", i): i for i in range(len(decoder.coding.steps))}
        self._heads: dict[int, tuple] = {}
        session = net.single_session()
        self._run = session.run
        self._in_shape = (1, *session.input.shape[1:])
        self._int8_in = net.input_spec.dtype == "int8"
        # output level -> probability: dequantize_output's own table (a negative level wraps)
        self._out = net.output_level_values.take if net.output_spec.dtype == "int8" else None

    def probabilities(self, message) -> np.ndarray | None:
        """float32 ``(1, H, W)`` for an intact lossy entropy-coded message without escapes, else None."""
        if type(message) is not bytes or len(message) < 2:
            return None
        head = message[0]
        entry = self._heads.get(head)
        if entry is None:
            index = self._steps.get(head)
            if index is None:  # another version, mode or step: the general path
                return None
            entry = self._heads[head] = self._entry(head, index)
        keyed, uppers, entries = entry
        payload = message[2:]
        check = keyed.copy()
        check.update(payload)
        if check.digest()[0] != message[1]:
            return None
        found = decode_message(payload, uppers, entries)
        if found is None:
            return None
        if self._int8_in:
            x = np.frombuffer(bytes(found), np.int8).reshape(self._in_shape)
        else:
            x = np.array(found, np.float32).reshape(self._in_shape)
        y = self._run(x)
        if self._out is None:
            return y.astype(np.float32, copy=False)[..., 0]
        return self._out(y)[..., 0]

    def _entry(self, head: int, index: int) -> tuple:
        """For the header byte of step ``index``'s lossy entropy-coded messages: the keyed check and
        the step's decoding tables whose values are the network input of each symbol (an unsigned
        byte for int8 files, a float32 value else)."""
        coding, net = self._decoder.coding, self._decoder.network
        table = coding.tables[index]
        inputs = []
        for low, size in zip(table.lo, table.sizes):  # each dimension's in-table symbols
            x = net.quantize_symbols(np.arange(low, low + size)[None, :], coding.steps[index])[0]
            inputs.append(x.view(np.uint8).tolist() if self._int8_in else x.tolist())
        return (wire.keyed_check(coding.model_id, head), *decoding_tables(table.cdfs, table.sizes, inputs))
