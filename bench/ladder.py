"""The model ladder: rate, distortion and decoder speed of bundles of several widths.

    python -m bench ladder out/bundle out/bundle-w0.5 --images out/test_images.npy -o out/report

For each bundle (``python -m export train --width W`` then ``export``): bytes per image of a
joint stream at the bundle's default step, the distortion of the int8 LiteRT round trip
(pixel error % for binarized models, PSNR dB for grayscale ones), the int8 decoder's
µs/image at batch 1 and 64 on one thread, its MACs per image and its file size. The
bundles are timed in turns (best of many rounds), so the load of a shared machine hits every
width alike and the ratios between them hold. Writes ``ladder.json``, ``ladder.md`` (the
table, with the Pareto-optimal widths marked) and ``ladder.png`` (distortion against decoder
µs/image, batch 1 and 64). Needs only ``compressor``, ai-edge-litert and matplotlib.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from compressor import Decoder, Encoder
from compressor.bundle import load_manifest
from compressor.metrics import pixel_error, psnr_db


def best_us_interleaved(
    fns: dict, rounds: int = 100, calls: int = 5, calls_for: dict | None = None
) -> dict[str, float]:
    """Best µs per call of each function, the functions timed in turns (``rounds`` x ``calls``).

    ``calls_for`` overrides ``calls`` per function (one call of a long function per round
    is less likely to be interrupted on a loaded machine).
    """
    best = dict.fromkeys(fns, float("inf"))
    calls_for = calls_for or {}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = calls_for.get(name, calls)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / n * 1e6)
    return {k: round(v, 1) for k, v in best.items()}


def measure(bundles: list[str], images: np.ndarray, *, rounds: int = 100, runtime: str = "litert") -> list[dict]:
    """One row per bundle (see the module docstring); images uint8 (N, H, W)."""
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    rows, timers = [], {}
    for path in bundles:
        manifest = load_manifest(path)
        enc = Encoder.load(Path(path) / "encoder", runtime=runtime, precision="int8", threads=1)
        dec = Decoder.load(Path(path) / "decoder", runtime=runtime, precision="int8", threads=1)
        stream = enc.compress_stream(x, joint=True)
        recon = dec.decompress(stream)
        binary = bool(manifest.get("binarize", True))
        net = dec.network
        row = {
            "bundle": str(path),
            "width": float(manifest.get("width", 1.0)),
            "model_id": manifest["model_id"],
            "binarize": binary,
            "bytes_per_image": round(len(stream) / len(x), 3),
            "pixel_error_%": round(100 * pixel_error(x, recon), 3) if binary else None,
            "psnr_db": None if binary else round(psnr_db(x, recon) or float("inf"), 2),
            "decoder_macs": int(manifest["macs"]["decoder"]),
            "decoder_int8_bytes": next(f.size for f in net.files if f.batch in (1, None)),
            "decoder_graph": (manifest.get("decoder_graphs") or {}).get("tflite", {}).get("graph", "transpose"),
        }
        for f in net.files:
            if f.batch is None:
                continue
            sess = net.session(f)
            z = np.zeros(sess.input.shape, np.dtype(sess.input.dtype))
            timers[(len(rows), f.batch)] = (lambda s=sess, z=z: s.run(z), f.batch)
        rows.append(row)
    best = best_us_interleaved(
        {k: fn for k, (fn, _) in timers.items()},
        rounds=rounds,
        calls_for={k: 1 for k, (_, b) in timers.items() if b > 1},
    )
    for (i, batch), (_, b) in timers.items():
        rows[i][f"decoder_us_b{batch}"] = round(best[(i, batch)] / b, 1)
    for row in rows:
        us = row.get("decoder_us_b1")
        row["decoder_gmac_per_s_b1"] = round(row["decoder_macs"] / us / 1e3, 1) if us else None
    _mark_pareto(rows)
    return rows


def _distortion(row: dict) -> float:
    """Lower is better: pixel error %, or minus PSNR."""
    return row["pixel_error_%"] if row["binarize"] else -(row["psnr_db"] or 0.0)


def _mark_pareto(rows: list[dict]) -> None:
    """A width is Pareto-optimal when no other is at least as good in bytes, distortion and µs (batch 1)."""
    keys = [(r["bytes_per_image"], _distortion(r), r.get("decoder_us_b1", float("inf"))) for r in rows]
    for r, k in zip(rows, keys):
        r["pareto"] = not any(all(o <= m for o, m in zip(other, k)) and other != k for other in keys)


def table(rows: list[dict]) -> str:
    binary = all(r["binarize"] for r in rows)
    metric = "pixel error %" if binary else "PSNR dB"
    head = (
        f"| width | Pareto | bytes/image | {metric} | decoder µs/image b1 | b64 | GMAC/s b1 | MACs | int8 file bytes "
        "| graph |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in sorted(rows, key=lambda r: r["width"]):
        dist = r["pixel_error_%"] if r["binarize"] else r["psnr_db"]
        lines.append(
            f"| {r['width']:g} | {'✓' if r['pareto'] else ''} | {r['bytes_per_image']:.2f} | {dist} | "
            f"{r.get('decoder_us_b1', '—')} | {r.get('decoder_us_b64', '—')} | {r.get('decoder_gmac_per_s_b1')} | "
            f"{r['decoder_macs'] / 1e6:.2f} M | {r['decoder_int8_bytes']} | {r['decoder_graph']} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> Path:
    from bench.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    binary = all(r["binarize"] for r in rows)
    for i, r in enumerate(sorted(rows, key=lambda r: r["width"])):
        y = r["pixel_error_%"] if binary else r["psnr_db"]
        color = f"C{i % 10}"
        points = [(b, r.get(f"decoder_us_{b}")) for b in ("b1", "b64") if r.get(f"decoder_us_{b}") is not None]
        for batch, us in points:
            filled = batch == "b1"
            ax.scatter([us], [y], marker="o" if filled else "s", color=color if filled else "none", edgecolors=color)
        if points:
            ax.plot([us for _, us in points], [y] * len(points), color=color, linewidth=0.8)
            ax.annotate(
                f"width {r['width']:g}: {r['bytes_per_image']:.2f} B/image",
                (points[0][1], y),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=8,
            )
    ax.scatter([], [], marker="o", color="grey", label="batch 1")
    ax.scatter([], [], marker="s", color="none", edgecolors="grey", label="batch 64")
    ax.legend(fontsize=8)
    ax.set_xlabel("int8 decoder µs/image (one thread)")
    ax.set_ylabel("pixel error %" if binary else "PSNR dB")
    ax.set_title("Model ladder: distortion against decoder time")
    fig.tight_layout()
    path = out / "ladder.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(rows: list[dict], out: str | Path) -> Path:
    from compressor.io.atomic import atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "ladder.json", {"rows": rows})
    plot(rows, out)
    atomic_write_text(out / "ladder.md", "# Model ladder\n\n" + table(rows) + "\n\n![ladder](ladder.png)\n")
    return out / "ladder.md"


def run(args) -> int:
    """``python -m bench ladder``."""
    from compressor.io.files import read_images

    images, _ = read_images([args.images])
    rows = measure(args.bundles, images, rounds=args.rounds)
    path = write(rows, args.out)
    print(table(rows))
    print(f"ladder: {path}")
    return 0
