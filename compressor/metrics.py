"""The distortion measures, defined once: export, bench and the tests all import them from here.

Inputs are arrays of one shape (any), values in ``[0, 1]``: targets (pixels) and
reconstructions (probabilities or pixels). Everything is computed in float64.
"""

from __future__ import annotations

import math

import numpy as np


def pixel_error(targets, recon) -> float:
    """Fraction of pixels whose binarized reconstruction (>= 0.5) differs from the binarized target."""
    t = np.asarray(targets)
    r = np.asarray(recon).reshape(t.shape)
    return float(np.mean((r >= 0.5) != (t >= 0.5)))


def bce_nats(targets, recon) -> float:
    """Mean over images of the summed per-pixel binary cross-entropy, in nats (images along axis 0)."""
    t = np.asarray(targets, np.float64).reshape(len(targets), -1)
    p = np.clip(np.asarray(recon, np.float64).reshape(len(targets), -1), 1e-7, 1 - 1e-7)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log1p(-p)).sum(axis=1)))


def mse(targets, recon) -> float:
    """Mean squared error on the [0, 1] scale."""
    t = np.asarray(targets, np.float64)
    return float(np.mean((np.asarray(recon, np.float64).reshape(t.shape) - t) ** 2))


def psnr_db(targets, recon) -> float | None:
    """Peak signal-to-noise ratio in dB for peak 1.0 (8-bit images: divide by 255 first); None when exact."""
    m = mse(targets, recon)
    return 10 * math.log10(1.0 / m) if m > 0 else None
