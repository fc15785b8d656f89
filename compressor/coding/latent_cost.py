"""Ideal bits of latent codes, many rows at once: what the encoder's step and latent searches
weigh against pixel bits (the range coder's real bytes are within a byte of these)."""

from __future__ import annotations

import numpy as np

from compressor.coding import entropy

_LATENT_BITS: dict[int, tuple] = {}
_VECTOR_ROWS = 8


def latent_bits(symbols: np.ndarray, table: entropy.CdfTable) -> np.ndarray:
    """:func:`entropy.ideal_bits` of every row of ``symbols`` (M, D) at once (float64 (M,));
    row by row below :data:`_VECTOR_ROWS` rows, where numpy's per-call cost is the larger."""
    if len(symbols) < _VECTOR_ROWS:
        return np.asarray([entropy.ideal_bits(s, table) for s in symbols], np.float64)
    got = _LATENT_BITS.get(id(table))
    if got is None or got[0] is not table:
        if len(_LATENT_BITS) > 64:
            _LATENT_BITS.clear()
        width = max(len(f) for f in table.freqs)
        freqs = np.ones((len(table.lo), width))
        for d, row in enumerate(table.freqs):
            freqs[d, : len(row)] = row
        sizes = np.asarray([len(row) - 1 for row in table.freqs])
        cost = entropy.PRECISION - np.log2(freqs)  # the last in-table slot of each row is ESCAPE
        got = _LATENT_BITS[id(table)] = (table, np.asarray(table.lo), sizes, cost)
    _, lo, sizes, cost = got
    i = np.asarray(symbols, np.int64) - lo
    inside = (i >= 0) & (i < sizes)
    dims = np.arange(len(lo))
    bits = cost[dims, np.where(inside, i, sizes)]  # ESCAPE's cost outside
    dist = np.where(i < 0, -i, i - (sizes - 1))
    bits = bits + np.where(inside, 0.0, 2.0 * np.frexp(np.maximum(dist, 1).astype(np.float64))[1])
    return bits.sum(axis=1)
