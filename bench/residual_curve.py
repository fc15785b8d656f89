"""Rate–quality curve of residual codes (grayscale) against classical codecs.

    python -m bench.residual_curve BUNDLE IMAGES.npy [--natural] [--json OUT.json]

``IMAGES.npy``: uint8 (N, H, W) grayscale images (e.g. the mnist5k test split). With
``--natural`` the images are instead 28x28 crops of a natural photo that matplotlib ships
(``grace_hopper.jpg``), which the digit-trained network predicts poorly.

For every error bound ``E`` in the bundle: bytes per self-contained message and per image in
a stream, PSNR, largest pixel error, and "ours ÷ best classical": the bytes the best of
WebP / JPEG (Pillow quality sweeps, each image a complete file) need for the same PSNR,
interpolated linearly in PSNR along each codec's sweep, or their lossless size (PNG, WebP
lossless) where no lossy setting reaches it; and the share of images the encoder coded with
table set 1 (spatial). Also times lossless encode + decode per image at batch 1 and batch 64
(one thread, networks included; batch 64 also in CPU time, which a loaded host inflates
less), with WebP lossless timed alongside as a yardstick. Needs the ``bench`` extra (Pillow).
"""

from __future__ import annotations

import argparse
import io
import json
import time

import numpy as np

from compressor import Decoder, Encoder

WEBP_QUALITIES = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
JPEG_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def classical(pixels: np.ndarray) -> dict:
    """``{codec: [(bytes per image, PSNR), ...]}`` over each codec's sweep, plus lossless sizes."""
    from PIL import Image

    def run(fmt: str, **options) -> tuple[float, float]:
        sizes, outs = [], []
        for img in pixels:
            buf = io.BytesIO()
            Image.fromarray(img, "L").save(buf, format=fmt, **options)
            sizes.append(buf.tell())
            buf.seek(0)
            with Image.open(buf) as im:
                outs.append(np.asarray(im.convert("L")))
        return float(np.mean(sizes)), psnr(pixels, np.stack(outs))

    return {
        "webp": [run("WEBP", quality=q, method=6) for q in WEBP_QUALITIES],
        "jpeg": [run("JPEG", quality=q, optimize=True) for q in JPEG_QUALITIES],
        "lossless": {
            "png": run("PNG", optimize=True)[0],
            "webp": run("WEBP", lossless=True, quality=100, method=6)[0],
        },
    }


def bytes_at(curve: list[tuple[float, float]], target: float) -> float:
    """Bytes a codec's lossy sweep needs for ``target`` dB (linear in PSNR); inf beyond its reach."""
    pts = sorted((p, b) for b, p in curve if np.isfinite(p))
    if target > pts[-1][0]:
        return float("inf")
    ps, bs = zip(*pts)
    best = np.minimum.accumulate(np.asarray(bs)[::-1])[::-1]  # bytes to reach at least p
    return float(np.interp(target, ps, best))


def natural_crops(size: int = 28) -> np.ndarray:
    import matplotlib.cbook as cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        img = np.asarray(im.convert("L"))
    h, w = img.shape
    return np.stack(
        [img[r : r + size, c : c + size] for r in range(0, h - size + 1, size) for c in range(0, w - size + 1, size)]
    )


def _best_ms(fn, rounds: int = 3, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best * 1e3


def _webp_lossless_ms(pixels: np.ndarray) -> float:
    """WebP lossless encode + decode per image on this machine now: a yardstick for loaded hosts."""
    from PIL import Image

    def run():
        for img in pixels:
            buf = io.BytesIO()
            Image.fromarray(img, "L").save(buf, format="WEBP", lossless=True, quality=100, method=6)
            buf.seek(0)
            with Image.open(buf) as im:
                im.load()

    return _best_ms(run) / len(pixels)


def measure(bundle: str, pixels: np.ndarray) -> dict:
    enc = Encoder.load(f"{bundle}/encoder", runtime="litert", threads=1)
    dec = Decoder.load(f"{bundle}/decoder", runtime="litert", threads=1)
    base = classical(pixels)
    rows = []
    for e in enc.coding.residual.bounds:
        messages = enc.compress(pixels, max_error=e)
        stream = enc.compress_stream(pixels, max_error=e)
        out = dec.decompress(stream)
        q = psnr(pixels, out)
        msg_bytes = float(np.mean([len(m) for m in messages]))
        webp = bytes_at(base["webp"], q)
        others = {"webp": webp, "jpeg": bytes_at(base["jpeg"], q)}
        others |= {f"{k} lossless": v for k, v in base["lossless"].items()}
        best_name = min(others, key=others.get)
        spatial = float(np.mean([m[2] >> 6 & 1 for m in messages]))
        rows.append(
            {
                "max_error": e,
                "spatial_set_share": round(spatial, 3),
                "message_bytes": round(msg_bytes, 2),
                "stream_bytes_per_image": round(len(stream) / len(pixels), 2),
                "psnr_db": round(q, 2),
                "max_pixel_error": int(np.abs(out.astype(int) - pixels.astype(int)).max()),
                "best_classical": best_name,
                "best_classical_bytes": round(others[best_name], 2),
                "ours_over_best": round(msg_bytes / others[best_name], 3),
                "webp_sweep_bytes": round(webp, 2),
                "ours_over_webp_sweep": round(msg_bytes / webp, 3),
            }
        )
    one = pixels[:1]
    batch = pixels[:64]
    timing = {
        "lossless_batch1_ms_per_image": round(
            np.median(
                [
                    _best_ms(lambda i=i: dec.decompress(enc.compress(pixels[i : i + 1], max_error=0)), 1)
                    for i in range(20)
                ]
            ),
            3,
        ),
        "lossless_batch64_ms_per_image": round(
            _best_ms(lambda: dec.decompress(enc.compress(batch, max_error=0))) / len(batch), 3
        ),
        # CPU time of this process: what the coder costs when other work shares the cores
        "lossless_batch1_cpu_ms_per_image": round(
            np.median(
                [
                    _best_ms(
                        lambda i=i: dec.decompress(enc.compress(pixels[i : i + 1], max_error=0)),
                        1,
                        clock=time.process_time,
                    )
                    for i in range(20)
                ]
            ),
            3,
        ),
        "lossless_batch64_cpu_ms_per_image": round(
            _best_ms(lambda: dec.decompress(enc.compress(batch, max_error=0)), clock=time.process_time) / len(batch),
            3,
        ),
    }
    del one
    timing["webp_lossless_same_machine_ms_per_image"] = round(_webp_lossless_ms(pixels[:64]), 3)
    lossy = [
        {
            "max_error": None,
            "step": s,
            "message_bytes": round(float(np.mean([len(m) for m in enc.compress(pixels, step=s)])), 2),
            "psnr_db": round(psnr(pixels, np.rint(dec.decompress(enc.compress(pixels, step=s)) * 255)), 2),
        }
        for s in enc.steps[::3]
    ]
    return {"images": len(pixels), "residual": rows, "latent_only": lossy, "classical": base, "timing": timing}


BANDS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 127)


def classical_binary(bits: np.ndarray) -> dict:
    """Lossless sizes of 1-bit PNG and WebP lossless, each image a complete file."""
    from PIL import Image

    def size(fmt: str, mode: str, **options) -> float:
        out = []
        for b in bits:
            im = Image.fromarray(np.where(b, 255, 0).astype(np.uint8), "L")
            im = im.convert("1", dither=Image.Dither.NONE) if mode == "1" else im
            buf = io.BytesIO()
            im.save(buf, format=fmt, **options)
            out.append(buf.tell())
        return float(np.mean(out))

    return {
        "png 1-bit": size("PNG", "1", optimize=True),
        "webp lossless": size("WEBP", "L", lossless=True, quality=100, method=6),
    }


def measure_binary(bundle: str, pixels: np.ndarray) -> dict:
    """Binary models: the band sweep from the lossy floor to lossless, and the older mode 2."""
    enc = Encoder.load(f"{bundle}/encoder", runtime="litert", threads=1)
    dec = Decoder.load(f"{bundle}/decoder", runtime="litert", threads=1)
    bits = pixels > 127
    x = bits.astype(np.float32)

    def row(name, messages, stream, out):
        return {
            "code": name,
            "message_bytes": round(float(np.mean([len(m) for m in messages])), 2),
            "stream_bytes_per_image": round(len(stream) / len(bits), 2),
            "pixel_error_%": round(100 * float(np.mean(out != bits)), 3),
        }

    rows = []
    for step in enc.steps[::3]:
        m = enc.compress(x, step=step)
        rows.append(row(f"latent only, step {step}", m, enc.compress_stream(x, step=step), dec.decompress(m) >= 0.5))
    m = enc.compress(x, mode="lossless")
    rows.append(row("lossless mode 2", m, enc.compress_stream(x, mode="lossless"), dec.decompress(m) > 127))
    for band in BANDS:
        m = enc.compress(x, band=band)
        rows.append(row(f"residual band {band}", m, enc.compress_stream(x, band=band), dec.decompress(m) > 127))
    timing = {
        "context_lossless_batch1_ms_per_image": round(
            float(
                np.median(
                    [_best_ms(lambda i=i: dec.decompress(enc.compress(x[i : i + 1], band=127)), 1) for i in range(20)]
                )
            ),
            3,
        ),
        "mode2_lossless_batch1_ms_per_image": round(
            float(
                np.median(
                    [
                        _best_ms(lambda i=i: dec.decompress(enc.compress(x[i : i + 1], mode="lossless")), 1)
                        for i in range(20)
                    ]
                )
            ),
            3,
        ),
    }
    timing["webp_lossless_same_machine_ms_per_image"] = round(
        _webp_lossless_ms(np.where(bits[:64], 255, 0).astype(np.uint8)), 3
    )
    return {"images": len(bits), "binary": rows, "classical": classical_binary(bits), "timing": timing}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("images", nargs="?", help="uint8 (N, H, W) .npy; omit with --natural")
    p.add_argument("--natural", action="store_true", help="28x28 crops of a natural photo instead")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    pixels = natural_crops() if args.natural else np.load(args.images)
    if pixels.dtype != np.uint8:
        pixels = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    pixels = pixels.reshape(len(pixels), *pixels.shape[-2:]) if pixels.ndim == 4 else pixels
    if Encoder.load(f"{args.bundle}/encoder", runtime="litert").part.binarize:
        res = measure_binary(args.bundle, pixels)
        print(
            f"{len(pixels)} images; lossless references (B/image): "
            + ", ".join(f"{k} {v:.1f}" for k, v in res["classical"].items())
        )
        print(f"{'code':>28} {'msg B':>8} {'stream B':>9} {'pixel err %':>11}")
        for r in res["binary"]:
            print(
                f"{r['code']:>28} {r['message_bytes']:>8.2f} {r['stream_bytes_per_image']:>9.2f} "
                f"{r['pixel_error_%']:>11.3f}"
            )
        print("timing (one thread, networks included):", json.dumps(res["timing"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        return 0
    res = measure(args.bundle, pixels)
    print(
        f"{len(pixels)} images; lossless references (B/image): "
        + ", ".join(f"{k} {v:.1f}" for k, v in res["classical"]["lossless"].items())
    )
    print(
        f"{'E':>4} {'msg B':>8} {'stream B':>9} {'PSNR dB':>8} {'max err':>7} {'webp sweep B':>12} {'ours/webp':>9} "
        f"{'best classical':>22} {'ours/best':>9} {'set 1':>6}"
    )
    for r in res["residual"]:
        best = f"{r['best_classical']} {r['best_classical_bytes']:.1f}"
        print(
            f"{r['max_error']:>4} {r['message_bytes']:>8.1f} {r['stream_bytes_per_image']:>9.1f} {r['psnr_db']:>8.2f} "
            f"{r['max_pixel_error']:>7} {r['webp_sweep_bytes']:>12.1f} {r['ours_over_webp_sweep']:>9.3f} {best:>22} "
            f"{r['ours_over_best']:>9.3f} {100 * r['spatial_set_share']:>5.0f}%"
        )
    for r in res["latent_only"]:
        print(f"latent only, step {r['step']}: {r['message_bytes']:.1f} B at {r['psnr_db']:.2f} dB")
    print("timing (one thread, networks included):", json.dumps(res["timing"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
