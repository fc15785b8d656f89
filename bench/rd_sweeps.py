"""Measure every mode of our codec and every classical codec's sweep on one set of images.

    python -m bench rd out/bundle out/bundle-gray --binary-images out/test_images.npy \
        --gray-images out/test_images_gray.npy -o out/report --json out/results/rd.json

One "set" is one model kind on one kind of content:

- ``binary``: a binarized model on binarized digits. Ours: latent-only codes at every step
  (self-contained messages, a stream, a joint stream), lossless mode 2, the residual mode's
  lossless code with causal context (``max_error=0``) and its band sweep (``band=B``);
  quality = pixel error %.
- ``grayscale`` / ``grayscale-natural``: a grayscale model on grayscale digits, and on 28x28
  crops of a natural photo (``bench.residual_curve.natural_crops``). Ours: latent-only codes
  at every step and residual codes at every error bound ``E`` of the bundle (messages and a
  stream; residual codes are not joint); quality = PSNR dB of uint8 pixels.

The classical codecs (:func:`bench.classical.sweep_codecs`) compress each image on its own
into a complete file; their points are mean bytes per image over ``classical_images`` images
spread evenly over the set (natural crops come in photo order; AVIF takes ~20 ms per image). Everything goes through the
public ``Encoder``/``Decoder`` API, so a better residual coder shows up here unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench import classical
from compressor import Decoder, Encoder
from compressor.metrics import pixel_error, psnr_db

SCHEMA = "vae-compressor-rd"
SCHEMA_VERSION = 1
BANDS = (0, 8, 16, 24, 32)  # 127 is the lossless row (wider bands cost more than it); ~5 ms/image each
CLASSICAL_IMAGES = 200


def _mean_len(codes: list[bytes]) -> float:
    return float(np.mean([len(c) for c in codes]))


def _psnr(pixels: np.ndarray, out: np.ndarray) -> float | None:
    """PSNR in dB of uint8 ``out`` against uint8 ``pixels``; None when exact."""
    value = psnr_db(pixels.astype(np.float64) / 255.0, out.astype(np.float64) / 255.0)
    return None if value is None else round(value, 3)


def _as_pixels(decoded: np.ndarray) -> np.ndarray:
    """Decoder output as uint8 pixels: latent-only codes give probabilities, residual codes pixels."""
    if decoded.dtype == np.uint8:
        return decoded
    return np.rint(np.clip(decoded, 0.0, 1.0) * 255).astype(np.uint8)


def _load(bundle: str | Path) -> tuple[Encoder, Decoder]:
    bundle = Path(bundle)
    enc = Encoder.load(bundle / "encoder", runtime="litert", precision="int8", threads=1)
    dec = Decoder.load(bundle / "decoder", runtime="litert", precision="int8", threads=1)
    return enc, dec


def ours_grayscale(enc: Encoder, dec: Decoder, pixels: np.ndarray) -> list[dict]:
    """Our operating points on uint8 (N, H, W) grayscale images, PSNR of uint8 pixels."""
    x = pixels.astype(np.float32) / 255.0
    points = []
    for step in enc.steps:
        messages = enc.compress(x, step=step)
        out = _as_pixels(dec.decompress(messages))
        points.append(
            {
                "family": "latent only",
                "setting": f"Δ {step:g}",
                "message_bytes": round(_mean_len(messages), 3),
                "stream_bytes": round(len(enc.compress_stream(x, step=step)) / len(x), 3),
                "joint_bytes": round(len(enc.compress_stream(x, step=step, joint=True)) / len(x), 3),
                "psnr_db": _psnr(pixels, out),
                "max_abs_error": int(np.abs(out.astype(int) - pixels).max()),
            }
        )
    residual = enc.coding.residual
    for e in residual.bounds if residual is not None else []:
        messages = enc.compress(pixels, max_error=e)
        stream = enc.compress_stream(pixels, max_error=e)
        out = _as_pixels(dec.decompress(stream))
        points.append(
            {
                "family": "residual",
                "setting": f"E {e}",
                "max_error": e,
                "message_bytes": round(_mean_len(messages), 3),
                "stream_bytes": round(len(stream) / len(x), 3),
                "psnr_db": _psnr(pixels, out),
                "max_abs_error": int(np.abs(out.astype(int) - pixels).max()),
            }
        )
    return points


def ours_binary(enc: Encoder, dec: Decoder, bits: np.ndarray, bands=BANDS) -> list[dict]:
    """Our operating points on boolean (N, H, W) images, pixel error in %."""
    x = bits.astype(np.float32)

    def point(family, setting, messages, stream, out, joint=None) -> dict:
        row = {
            "family": family,
            "setting": setting,
            "message_bytes": round(_mean_len(messages), 3),
            "stream_bytes": round(len(stream) / len(x), 3),
        }
        if joint is not None:
            row["joint_bytes"] = round(len(joint) / len(x), 3)
        row["pixel_error_%"] = round(100 * pixel_error(x, np.asarray(out, np.float32) / 255.0), 4)
        return row

    points = []
    for step in enc.steps:
        m = enc.compress(x, step=step)
        s, j = enc.compress_stream(x, step=step), enc.compress_stream(x, step=step, joint=True)
        points.append(point("latent only", f"Δ {step:g}", m, s, dec.decompress(m, binarize=True), j))
    if enc.coding.lossless is not None:
        m = enc.compress(x, mode="lossless")
        stream = enc.compress_stream(x, mode="lossless")
        points.append(point("lossless (mode 2)", "exact", m, stream, dec.decompress(m)))
    if enc.coding.binary_context is not None or enc.coding.binary_context2 is not None:
        m = enc.compress(x, max_error=0)
        out = dec.decompress(m)
        points.append(point("residual", "lossless, context", m, enc.compress_stream(x, max_error=0), out))
        for band in bands:
            m = enc.compress(x, band=band)
            points.append(point("residual", f"band {band}", m, enc.compress_stream(x, band=band), dec.decompress(m)))
    return points


def classical_sweeps(pixels: np.ndarray, binary: bool) -> dict:
    """:func:`bench.classical.measure` over every sweep, on the image the encoder sees."""
    targets = (pixels > 127).astype(np.float32) if binary else pixels.astype(np.float32) / 255.0
    return classical.measure(targets, classical.sweep_codecs(binary))


def measure_set(
    key: str, bundle: str | Path, pixels: np.ndarray, *, source: str, classical_images: int = CLASSICAL_IMAGES
) -> dict:
    """One set (see the module docstring): ours at every operating point and every classical sweep."""
    t0 = time.perf_counter()
    enc, dec = _load(bundle)
    binary = bool(enc.part.binarize)
    if binary != (key == "binary"):
        kind = "binarized" if binary else "grayscale"
        raise ValueError(
            f"set {key!r} needs a {'binarized' if key == 'binary' else 'grayscale'} model; {bundle} is {kind}"
        )
    points = ours_binary(enc, dec, pixels > 127) if binary else ours_grayscale(enc, dec, pixels)
    sub = pixels[np.unique(np.linspace(0, len(pixels) - 1, min(classical_images, len(pixels))).round().astype(int))]
    return {
        "key": key,
        "kind": "binary" if binary else "grayscale",
        "quality": "pixel_error_%" if binary else "psnr_db",
        "bundle": str(bundle),
        "model_id": enc.part.model_id,
        "default_step": enc.steps[enc.coding.default_index],
        "images": {"source": source, "count": len(pixels), "classical_count": len(sub)},
        "ours": points,
        "classical": classical_sweeps(sub, binary),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def measure(
    binary: tuple[str, str] | None,
    grayscale: tuple[str, str] | None,
    *,
    natural: bool = True,
    classical_images: int = CLASSICAL_IMAGES,
    command: str = "",
    log=print,
) -> dict:
    """Every set asked for: ``binary``/``grayscale`` are ``(bundle, images file)`` or None."""
    from compressor.io.files import read_images

    sets = []
    jobs = []
    if binary:
        jobs.append(("binary", binary[0], binary[1]))
    if grayscale:
        jobs.append(("grayscale", grayscale[0], grayscale[1]))
        if natural:
            jobs.append(("grayscale-natural", grayscale[0], None))
    for key, bundle, images in jobs:
        if images is None:
            from bench.residual_curve import natural_crops

            pixels, source = natural_crops(), "matplotlib sample data grace_hopper.jpg, 28x28 crops"
        else:
            pixels, _ = read_images([images])
            pixels, source = np.asarray(pixels), str(images)
        pixels = _uint8(pixels)
        log(f"  {key}: {len(pixels)} images, bundle {bundle} ...")
        sets.append(measure_set(key, bundle, pixels, source=source, classical_images=classical_images))
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "sets": sets,
    }


def _uint8(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W): float images in [0, 1] are scaled, a channel axis of 1 dropped."""
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8:
        pixels = np.rint(np.clip(pixels.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    return pixels


SET_KEYS = {"key": str, "kind": str, "quality": str, "bundle": str, "images": dict, "ours": list, "classical": dict}


def load(path: str | Path) -> dict:
    """Read and check a file written by :func:`measure` (``python -m bench rd --json``)."""
    import json

    from bench.schema import ResultFileError

    path = Path(path)
    try:
        curves = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ResultFileError(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise ResultFileError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(curves, dict) or curves.get("schema") != SCHEMA:
        raise ResultFileError(f"{path} is not a {SCHEMA} file (made by 'python -m bench rd --json FILE')")
    version = curves.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultFileError(f"{path} has rd schema version {version!r}; this report reads up to {SCHEMA_VERSION}")
    sets = curves.get("sets")
    if not isinstance(sets, list):
        raise ResultFileError(f"{path}: 'sets' must be a list")
    for i, s in enumerate(sets):
        for key, kind in SET_KEYS.items():
            if not isinstance(s, dict) or not isinstance(s.get(key), kind):
                raise ResultFileError(f"{path}: sets[{i}].{key} is missing or not a {kind.__name__}")
    return curves


def run(args) -> int:
    """``python -m bench rd``: measure, write the JSON, rd.md and the figures, print the ratios."""
    from bench import rd_document
    from compressor.io.atomic import atomic_write_json

    curves = measure(
        tuple(args.binary) if args.binary else None,
        tuple(args.grayscale) if args.grayscale else None,
        natural=args.natural,
        classical_images=args.classical_images,
        command=args.command_line,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json) if args.json else out / "rd.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, curves)
    md = rd_document.write(curves, out)
    for rd_set in curves["sets"]:
        print(rd_document.summary(rd_set))
    figures = ", ".join(f"rd-{s['key']}.png" for s in curves["sets"])
    print(f"rate-distortion: {md}, {figures}; data {json_path}")
    return 0
