"""How good the reconstructions are, and how many bytes they cost, on real test images.

Distortion is measured against what the model is trained to reproduce: the image the
encoder sees (binarized at 0.5 when the bundle says so). The same four numbers are used
for our codes and for the classical codecs, so they sit in one table:

- ``bce_nats``: summed per-pixel binary cross-entropy per image, in nats (the VAE's
  reconstruction term; same definition as the export validation, probabilities clipped to
  [1e-7, 1 - 1e-7]);
- ``mse``: mean squared error of pixel values in [0, 1];
- ``psnr_db``: ``10 log10(1 / mse)``; ``null`` for a lossless reconstruction;
- ``pixel_error_%``: percentage of pixels on the wrong side of 0.5.

Rates come from :func:`bench.codec_targets.measure` (bytes of real streams and messages,
all framing included), beside the model's KL divergence converted to bytes: the rate an
ideal continuous code of the posterior would need.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np

from bench import codec_targets
from compressor import metrics as M
from compressor.codec import Decoder, Encoder
from compressor.errors import RuntimeUnavailableError
from compressor.runtime import sessions as runtimes

NATS_PER_BYTE = 8 * math.log(2)
GRID_IMAGES = 8


def metrics(targets: np.ndarray, recon: np.ndarray) -> dict:
    """The four distortion numbers of ``recon`` (probabilities or pixels in [0, 1]) against ``targets``."""
    psnr = M.psnr_db(targets, recon)
    return {
        "bce_nats": round(M.bce_nats(targets, recon), 4),
        "mse": round(M.mse(targets, recon), 6),
        "psnr_db": round(psnr, 3) if psnr is not None else None,
        "pixel_error_%": round(100 * M.pixel_error(targets, recon), 4),
    }


def targets_of(encoder: Encoder, images: np.ndarray) -> np.ndarray:
    """float32 (N, H, W): the images as the encoder sees them."""
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    return (x > 0.5).astype(np.float32) if encoder.part.binarize else x


def reconstruction(bundle: Path, images: np.ndarray, runtime_names, precisions) -> list[dict]:
    """Unquantized round trip (encoder means -> decoder) per runtime and precision."""
    rows = []
    installed = runtimes.available()
    for runtime in runtime_names:
        for precision in precisions:
            row = {"runtime": runtime, "precision": precision}
            if installed.get(runtime) is None:
                rows.append({**row, "status": "not available", "reason": f"{runtime} is not installed"})
                continue
            try:
                enc = Encoder.load(bundle / "encoder", runtime=runtime, precision=precision)
                dec = Decoder.load(bundle / "decoder", runtime=runtime, precision=precision)
            except RuntimeUnavailableError as e:
                rows.append({**row, "status": "not available", "reason": str(e)})
                continue
            probs = dec.network.run(enc.latents(images))[..., 0]
            rows.append({**row, "status": "ok", "images": len(images), **metrics(targets_of(enc, images), probs)})
    return rows


def rate_distortion(bundle: Path, images: np.ndarray, runtime: str, kl_nats: float | None) -> dict:
    """Bytes per image and distortion at every step Δ of the bundle, with the int8 codec."""
    measured = codec_targets.measure(str(bundle), images, runtime=runtime, repeat=20)
    enc = Encoder.load(bundle / "encoder", runtime=runtime, precision="int8")
    dec = Decoder.load(bundle / "decoder", runtime=runtime, precision="int8")
    targets = targets_of(enc, images)
    steps = []
    probs_at = {}
    for row in measured["rate_distortion"]:
        step = row["step"]
        probs = dec.decode_symbols(enc.symbols(images, step=step), np.full(len(images), step))
        probs_at[step] = probs
        steps.append({**row, **{k: v for k, v in metrics(targets, probs).items() if k != "pixel_error_%"}})
    default = measured["default_step"]
    return {
        "runtime": measured["runtime"],
        "precision": "int8",
        "images": len(images),
        "default_step": default,
        "kl_nats": kl_nats,
        "kl_bytes": round(kl_nats / NATS_PER_BYTE, 3) if kl_nats is not None else None,
        "steps": steps,
        "coding_us": measured["coding_us"],
        "lossless": measured["lossless"],
        "grid": _grid(targets, probs_at, default),
    }


def _grid(targets: np.ndarray, probs_at: dict, default: float) -> dict:
    """A few reconstructions at a few Δ, as 8-bit pixels, so a report can draw them without the bundle."""
    steps = sorted(probs_at)
    i = steps.index(default)
    chosen = sorted({steps[0], default, steps[(i + len(steps) - 1) // 2], steps[-1]})
    n = min(GRID_IMAGES, len(targets))
    return {
        "shape": [n, *targets.shape[1:]],
        "encoding": "base64 of uint8 pixels, row-major (N, H, W)",
        "original": _pack(targets[:n]),
        "reconstructions": [{"step": s, "pixels": _pack(probs_at[s][:n])} for s in chosen],
    }


def _pack(x: np.ndarray) -> str:
    return base64.b64encode(np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8).tobytes()).decode("ascii")


def unpack(grid: dict, pixels: str) -> np.ndarray:
    """The float (N, H, W) images of one grid entry (inverse of the packing above)."""
    shape = tuple(grid["shape"])
    return np.frombuffer(base64.b64decode(pixels), np.uint8).reshape(shape).astype(np.float32) / 255.0
