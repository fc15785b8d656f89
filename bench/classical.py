"""Classical image codecs on the same images, for the rate–distortion comparison.

Each image is compressed on its own into a complete file, as a device would send it, so
bytes per image include every header: that is the fair comparison with our per-image
messages. The input is the image the encoder sees (binarized if the model is), stored as
8-bit gray (0/255), and the distortion of the decoded file is measured against it with
the same numbers as our codes (:func:`bench.quality.metrics`).

Needs Pillow (the ``bench`` extra). JPEG XL needs a Pillow plugin (``pillow-jxl-plugin``, in the
``bench`` extra) or a Pillow with JPEG XL support, AVIF a Pillow built with libavif (recent wheels
are); without them their rows say "not available".
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import numpy as np

from bench.quality import metrics

QUALITIES = (5, 25, 50, 75, 95)


@dataclass(frozen=True)
class Codec:
    """One codec at one setting: a Pillow format name and its save options."""

    name: str
    setting: str
    pil_format: str
    options: dict = field(default_factory=dict)
    lossless: bool = False
    mode: str = "L"


def codecs(binary: bool) -> list[Codec]:
    png = Codec("png", "1-bit", "PNG", {"optimize": True}, True, "1") if binary else None
    png = png or Codec("png", "8-bit", "PNG", {"optimize": True}, True)
    out = [png, Codec("webp", "lossless", "WEBP", {"lossless": True, "quality": 100, "method": 6}, True)]
    out += [Codec("webp", f"q{q}", "WEBP", {"quality": q, "method": 6}) for q in QUALITIES]
    out += [Codec("jpeg", f"q{q}", "JPEG", {"quality": q, "optimize": True}) for q in QUALITIES]
    out += [Codec("jpeg-xl", "lossless", "JXL", {"lossless": True}, True)]
    out += [Codec("jpeg-xl", f"q{q}", "JXL", {"quality": q}) for q in QUALITIES]
    return out


#: The rate–distortion report's denser sweeps (bench/rd_sweeps.py). JPEG XL's lossy quality stops
#: at 99 (the plugin refuses 100 without ``lossless``); AVIF at quality 100 is exact in libavif.
SWEEPS = {
    "webp": (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100),
    "jpeg": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100),
    "jpeg-xl": (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99),
    "avif": (0, 30, 60, 90),
}


def sweep_codecs(binary: bool) -> list[Codec]:
    """Every codec's quality sweep and lossless mode: PNG, WebP, JPEG, JPEG XL and AVIF."""
    out = [c for c in codecs(binary) if c.lossless and c.name != "jpeg-xl"]
    out.append(Codec("jpeg-xl", "lossless", "JXL", {"lossless": True}, True))
    out.append(Codec("avif", "q100 (lossless)", "AVIF", {"quality": 100, "max_threads": 1}, True))
    options = {
        "webp": ("WEBP", {"method": 6}),
        "jpeg": ("JPEG", {"optimize": True}),
        "jpeg-xl": ("JXL", {}),
        "avif": ("AVIF", {"max_threads": 1}),
    }
    for name, qualities in SWEEPS.items():
        fmt, extra = options[name]
        out += [Codec(name, f"q{q}", fmt, {"quality": q, **extra}) for q in qualities]
    return out


_HINTS = {"JXL": " (pip install pillow-jxl-plugin)", "AVIF": " (Pillow >= 11.3 wheels include AVIF)"}


def pillow_status() -> tuple[object | None, str | None]:
    """(PIL.Image module or None, reason it is missing)."""
    try:
        from PIL import Image
    except ImportError:
        return None, "Pillow is not installed: pip install 'pillow>=10'"
    return Image, None


def _formats(image_module) -> set[str]:
    """Formats Pillow can save here, after letting a JPEG XL plugin register itself."""
    try:
        import pillow_jxl  # noqa: F401 - registers the JXL format on import
    except ImportError:
        pass
    image_module.init()
    return set(image_module.SAVE) & set(image_module.OPEN)


def measure(targets: np.ndarray, codec_list: list[Codec] | None = None) -> dict:
    """The ``classical`` block of a result: one row per codec and setting (default: :func:`codecs`)."""
    image_module, reason = pillow_status()
    if image_module is None:
        return {"status": "not available", "reason": reason, "codecs": []}
    import PIL

    binary = bool(np.all((targets == 0) | (targets == 1)))
    pixels = np.rint(targets * 255).astype(np.uint8)
    have = _formats(image_module)
    rows = []
    for codec in codecs(binary) if codec_list is None else codec_list:
        row = {"codec": codec.name, "setting": codec.setting, "lossless": codec.lossless}
        if codec.pil_format not in have:
            hint = _HINTS.get(codec.pil_format, "")
            rows.append({**row, "status": "not available", "reason": f"Pillow here cannot write {codec.name}{hint}"})
            continue
        rows.append({**row, "status": "ok", **_run(image_module, codec, pixels, targets)})
    return {"status": "ok", "pillow": PIL.__version__, "images": len(targets), "codecs": rows}


def _run(image_module, codec: Codec, pixels: np.ndarray, targets: np.ndarray) -> dict:
    def encode(img: np.ndarray) -> bytes:
        im = image_module.fromarray(img, "L")
        if codec.mode == "1":
            im = im.convert("1", dither=image_module.Dither.NONE)
        buf = io.BytesIO()
        im.save(buf, format=codec.pil_format, **codec.options)
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        with image_module.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("L"))

    decode(encode(pixels[0]))  # load the codec library before timing
    sizes, decoded = [], []
    enc_ns = dec_ns = 0
    for img in pixels:
        t0 = time.perf_counter_ns()
        data = encode(img)
        t1 = time.perf_counter_ns()
        out = decode(data)
        t2 = time.perf_counter_ns()
        enc_ns, dec_ns = enc_ns + t1 - t0, dec_ns + t2 - t1
        sizes.append(len(data))
        decoded.append(out)
    n = len(pixels)
    return {
        "bytes_per_image": round(float(np.mean(sizes)), 3),
        **metrics(targets, np.stack(decoded).astype(np.float32) / 255.0),
        "encode_us": round(enc_ns / n / 1000, 2),
        "decode_us": round(dec_ns / n / 1000, 2),
        "encode_decode_us": round((enc_ns + dec_ns) / n / 1000, 2),
    }
