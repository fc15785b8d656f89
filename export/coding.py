"""Build coding.json: the step sizes and integer entropy tables that decide the bytes.

Tables are estimated once, here, from the training split's posterior means quantized at
each step, and shipped in the bundle; devices only read them. A rate-distortion summary
measured on the training split (ideal bytes and pixel error per step) ships beside them so
``target_bytes=`` and ``quality=`` have something to stand on, and so the default step is
chosen on training data, never on the test split.
"""

from __future__ import annotations

import numpy as np

from compressor.coding.entropy import PRECISION, build_table, ideal_bits
from compressor.metrics import pixel_error

# Step sizes Δ, finest first. The index (0..15) is what a message carries in 4 bits.
STEPS = (0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0)
# The default step is the coarsest whose training pixel error stays within this many
# percentage points of the unquantized reconstruction.
DEFAULT_STEP_TOLERANCE_PP = 0.15


def build_coding(train_latents: np.ndarray, train_images: np.ndarray, decode, steps=STEPS) -> dict:
    """coding.json contents. ``decode`` maps float latents -> probabilities (Keras)."""
    base_err = pixel_error(train_images, decode(train_latents))
    tables, rd = [], []
    for step in steps:
        symbols = np.rint(train_latents / step).astype(np.int64)
        table = build_table(symbols)
        tables.append(table.to_json())
        err = pixel_error(train_images, decode(symbols * step))
        bits = np.mean([ideal_bits(s, table) for s in symbols])
        rd.append({"step": step, "ideal_bytes": round(float(bits) / 8, 4), "pixel_error_%": round(100 * err, 4)})
    ok = [i for i, r in enumerate(rd) if r["pixel_error_%"] <= 100 * base_err + DEFAULT_STEP_TOLERANCE_PP]
    default = max(ok) if ok else 0
    return {
        "precision": PRECISION,
        "steps": list(steps),
        "default_step_index": default,
        "tables": tables,
        "train_rd": rd,
        "train_pixel_error_unquantized_%": round(100 * base_err, 4),
    }
