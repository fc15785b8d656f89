"""From the int8 encoder's output levels straight to range-coder slices, one table per step.

Why: at batch 1 the arithmetic between the network and the range coder -- dequantize the int8
means, divide by the step, round, clip, look up each symbol's slice -- cost more than the coder
itself when done one numpy call at a time on 16 numbers. An int8 output has only 256 levels,
so per step all of it is done once, by the very functions the general path runs
(``Network.dequantize_output``, ``Encoder.quantize``): the symbols, hence the bytes, are the
same, and a message's slices are a few list look-ups. A level whose symbol lies outside a
dimension's table (an escape) has no slice; such a message takes the general path.
"""

from __future__ import annotations

import numpy as np

from compressor.coding.entropy import CdfTable

#: The 256 int8 levels in the order a Python list indexed by the level itself wraps them:
#: position k holds level k for k < 128 and level k - 256 after, so ``table[level]`` works
#: for negative levels too.
LEVELS = np.arange(256, dtype=np.int16).astype(np.int8)


class LevelCoder:
    """One step's tables: ``symbols[level]`` and, per dimension, ``slices[d][level]``."""

    __slots__ = ("symbols", "slices")

    def __init__(self, symbols_by_level: np.ndarray, table: CdfTable):
        """``symbols_by_level``: int64 (256,), the symbol of each of :data:`LEVELS`."""
        self.symbols = symbols_by_level
        self.slices = table.slices_by_symbol(symbols_by_level.tolist())

    def slices_of(self, levels: list[int]) -> list[tuple[int, int]] | None:
        """The slices of one image's output levels (Python ints), or None if one escapes."""
        out = [lut[v] for lut, v in zip(self.slices, levels)]
        return None if None in out else out
