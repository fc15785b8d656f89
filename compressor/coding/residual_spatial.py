"""The spatial table set of grayscale residual codes: for images the network predicts poorly.

The VAE learns only a few nats of latent on natural photo crops, so its prediction of such a
crop is a blur and residuals under it cost more than a classical lossless coder's. For those
images a residual code may name table set 1 (bit 6 of the parameter byte, docs/format.md),
which predicts every pixel from its already-decoded neighbours alone:

* ``pred = MED(W, N, NW)``, LOCO-I's median edge detector on the *reconstructed* pixels
  (0 outside the image: the first row predicts from W, the first column from N); for
  ``E > SMOOTH_FROM - 1`` the average ``(2 MED + W + N + 2) >> 2`` instead, since a
  reconstruction within ``E`` is noisy and MED copies one neighbour's noise (on photo
  crops at E = 8: 7 % fewer bytes and +0.4 dB; at E = 16: 41 % fewer and +2.8 dB; a wash
  at E = 2, 1 % worse at E = 0);
* context = bucket of the local activity ``|W - NW| + |N - NW| + |NE - N|`` (CALIC's and
  LOCO-I's gradient energy: a flat patch has small residuals, an edge large ones), edges
  from the bundle;
* residuals quantized, wrapped and coded exactly as in set 0, under this set's own
  frequency tables (one row per activity bucket, per error bound).

The tables are learned at export from 28x28 crops of photos the training machine has
offline (the two sample photos scikit-learn ships), never from the test content. The
encoder picks, per image, whichever set gives the shorter code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compressor.errors import ManifestError

MAX_ACTIVITY = 3 * 255
SMOOTH_FROM = 3
"""From this error bound on, table set 1 predicts with ``(2 MED + W + N + 2) >> 2``."""
MAX_BUCKETS = 16


@dataclass(frozen=True)
class SpatialSet:
    """Activity bucket edges and one :class:`ErrorTable` per error bound (validated on construction)."""

    activity_edges: tuple[int, ...]
    tables: dict  # error bound -> residual.ErrorTable
    activity_lut: np.ndarray = field(init=False, repr=False, compare=False)  # activity -> bucket

    def __post_init__(self):
        edges = self.activity_edges
        if not isinstance(edges, (list, tuple)) or not 0 <= len(edges) < MAX_BUCKETS:
            raise ManifestError(f"residual.spatial.activity_edges must be a list of fewer than {MAX_BUCKETS} ints")
        if not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= MAX_ACTIVITY for x in edges) or any(
            a >= b for a, b in zip(edges, edges[1:])
        ):
            raise ManifestError(f"residual.spatial.activity_edges must be increasing ints in 1..{MAX_ACTIVITY}")
        if not self.tables:
            raise ManifestError("residual.spatial.tables is empty")
        for e, t in self.tables.items():
            if len(t.freqs) != len(edges) + 1:
                raise ManifestError(
                    f"residual.spatial table E={e}: needs {len(edges) + 1} context rows, got {len(t.freqs)}"
                )
        lut = np.searchsorted(np.asarray(edges, np.int64), np.arange(MAX_ACTIVITY + 1), side="right")
        object.__setattr__(self, "activity_edges", tuple(edges))
        object.__setattr__(self, "activity_lut", lut.astype(np.int64))

    def to_json(self) -> dict:
        return {
            "activity_edges": list(self.activity_edges),
            "tables": {str(e): {"tail": t.tail, "freqs": [list(r) for r in t.freqs]} for e, t in self.tables.items()},
        }


def med(w, n, nw):
    """LOCO-I's median edge detector, median(w, n, w + n - nw)."""
    return np.maximum(np.minimum(w, n), np.minimum(np.maximum(w, n), w + n - nw))


def neighbours(x: np.ndarray):
    """W, N, NW, NE of every pixel of (N, H, W) images, 0 outside the image."""
    n, h, w = x.shape
    p = np.zeros((n, h + 1, w + 2), np.int64)
    p[:, 1:, 1:-1] = x
    return p[:, 1:, :-2], p[:, :-1, 1:-1], p[:, :-1, :-2], p[:, :-1, 2:]


def predictor(w, n, nw, e: int):
    """Table set 1's prediction at error bound ``e`` (arrays or ints)."""
    m = med(w, n, nw)
    return m if e < SMOOTH_FROM else (2 * m + w + n + 2) >> 2


def predictions_known(spatial: SpatialSet, x: np.ndarray, e: int = 0):
    """``(pred, context)`` int64 (N, H, W) when the reconstruction equals ``x`` (E = 0)."""
    w, n, nw, ne = neighbours(x.astype(np.int64))
    act = np.abs(w - nw) + np.abs(n - nw) + np.abs(ne - n)
    return predictor(w, n, nw, e), spatial.activity_lut[act]


def predict_step(spatial: SpatialSet, w, n, nw, ne, e: int):
    """``(pred, context)`` of one pixel position across a batch (arrays of the batch)."""
    act = np.abs(w - nw) + np.abs(n - nw) + np.abs(ne - n)
    return predictor(w, n, nw, e), spatial.activity_lut[act]


__all__ = ["SMOOTH_FROM", "SpatialSet", "med", "neighbours", "predict_step", "predictions_known", "predictor"]
