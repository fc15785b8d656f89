"""The ``residual`` section of coding.json: tables for grayscale lossless / near-lossless codes.

Estimated once at export from the training split and shipped as integers (docs/bundle.md);
devices only read them (:mod:`compressor.coding.residual`). The step the latent is coded at is
chosen here too, on training data: the one that makes lossless codes (latent + pixel bits)
smallest, since a finer latent sharpens the prediction but costs latent bytes.
"""

from __future__ import annotations

import numpy as np

from compressor.coding import binary_context2, residual
from export.photo_crops import training_crops


def residual_section(int8_levels, coding: dict, latents: np.ndarray, images: np.ndarray, log=print) -> dict:
    """``int8_levels(latents) -> int8 (N, H, W[, 1])`` runs the int8 LiteRT decoder."""
    pixels = np.rint(np.asarray(images, np.float64).reshape(len(images), *images.shape[1:3]) * 255).astype(np.uint8)
    steps = coding["steps"]

    def levels_at(index: int) -> np.ndarray:
        step = steps[index]
        return np.asarray(int8_levels(np.rint(latents / step) * step)).reshape(pixels.shape)

    sizes = []
    for index in range(len(steps)):
        lv = levels_at(index)
        table = residual.build_table(lv, pixels, bounds=(0,))
        pixel_bits = float(residual.ideal_bits(table, pixels, lv, 0).mean())
        sizes.append((coding["train_rd"][index]["ideal_bytes"] * 8 + pixel_bits) / 8)
    best = int(np.argmin(sizes))
    log(f"  residual: lossless step {steps[best]} ({sizes[best]:.1f} ideal bytes per training image)")
    natural = training_crops(pixels.shape[1:3])
    log(f"  residual: spatial table set from {len(natural)} photo crops")
    table = residual.build_table(levels_at(best), pixels, step_index=best, natural=natural)
    return table.to_json() | {"train_ideal_lossless_bytes": [round(s, 3) for s in sizes]}


def binary_context2_section(int8_levels, coding: dict, latents: np.ndarray, images: np.ndarray, log=print) -> dict:
    """The ``binary_context2`` table (layout 2), estimated at the step that makes lossless codes
    smallest on training data; the encoder searches steps around it per image."""
    bits = np.asarray(images).reshape(len(images), *images.shape[1:3]) > 0.5
    steps = coding["steps"]
    sizes, tables = [], []
    for index, step in enumerate(steps):
        lv = np.asarray(int8_levels(np.rint(latents / step) * step)).reshape(bits.shape)
        table = binary_context2.build_table(lv, bits, step_index=index)
        pixel_bits = float(binary_context2.pixel_bits(table, bits, lv).mean())
        sizes.append((coding["train_rd"][index]["ideal_bytes"] * 8 + pixel_bits) / 8)
        tables.append(table)
    best = int(np.argmin(sizes))
    log(f"  binary context (layout 2): lossless step {steps[best]} ({sizes[best]:.1f} ideal bytes per training image)")
    return tables[best].to_json() | {"train_ideal_lossless_bytes": [round(s, 3) for s in sizes]}
