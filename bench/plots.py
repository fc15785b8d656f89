"""The report's figures, drawn with matplotlib into PNG files.

- ``latency.png``: µs per image of every runtime and format, one bar per device;
- ``rate_distortion.png``: bytes per image against pixel error, our codes at every Δ beside
  the classical codecs, with the model's KL as the ideal rate;
- ``reconstructions.png``: originals and reconstructions at a few Δ.

matplotlib is imported here only (the ``bench`` extra), with the Agg backend so that a
machine without a display draws too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.quality import unpack
from compressor.errors import MissingExtraError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(
            "the report draws with matplotlib: pip install 'matplotlib==3.11.2' (the [bench] extra of this checkout)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def row_label(row: dict) -> str:
    """'litert int8 b64', 'onnx fp32 b1 CUDA', 'tensorflow keras b1 gpu'."""
    words = [row["runtime"]] + ([row["precision"]] if row.get("precision") else [])
    if row.get("batch"):
        words.append(f"b{row['batch']}")
    if row.get("num_threads") and row["num_threads"] > 1:
        words.append(f"t{row['num_threads']}")
    if row.get("provider") and row["provider"] not in ("CPUExecutionProvider", "tf.function"):
        words.append(row["provider"].replace("ExecutionProvider", ""))
    if row["runtime"] == "tensorflow":
        words.append(row["device"])
    return " ".join(words)


def latency(results: list[dict], labels: list[str], path: Path) -> Path:
    """µs per image on one thread (and every accelerator row), per component, per device."""
    plt = _pyplot()
    components = ("encoder", "decoder", "codec")
    fig, axes = plt.subplots(1, len(components), figsize=(5.2 * len(components), 6.5), squeeze=False)
    for ax, component in zip(axes[0], components):
        cats: list[str] = []
        values: dict[tuple[str, int], float] = {}
        for d, result in enumerate(results):
            for row in result["latency"]:
                if row["component"] != component or row["status"] != "ok":
                    continue
                if row["device"] == "cpu" and row.get("num_threads") != 1:
                    continue
                cat = row_label(row)
                if cat not in cats:
                    cats.append(cat)
                values[cat, d] = row["us_per_image"]
        if not cats:
            ax.set_visible(False)
            continue
        # a dot plot: on the log axis that devices and Keras need, bar lengths would mislead
        y = np.arange(len(cats))
        for d, label in enumerate(labels):
            pts = [(values[c, d], i) for i, c in enumerate(cats) if (c, d) in values]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", ms=7, label=label, color=f"C{d}")
        ax.set_yticks(y, cats, fontsize=8)
        ax.set_ylim(len(cats) - 0.5, -0.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib_ticker().FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("µs per image (mean of warm runs, log scale)")
        ax.set_title(f"{component} (1 thread)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rate_distortion(results: list[dict], labels: list[str], path: Path) -> Path:
    """Bytes per image (log) against pixel error: our curve(s), classical codecs, the KL rate."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    drawn_models: set = set()
    for result, label in zip(results, labels):
        model = (result["bundle"].get("model_id"), result["images"].get("count"))
        if model in drawn_models:
            continue  # the same model on the same images gives the same bytes on every device
        drawn_models.add(model)
        _our_curves(ax, result["rate_distortion"], f" ({label})" if len(results) > 1 else "")
    _classical_points(ax, results[0]["classical"])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib_ticker().FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("bytes per image (whole file or message, headers included; log scale)")
    ax.set_ylabel("pixel error (%)")
    ax.set_title("Rate–distortion on the test images")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _our_curves(ax, rd: dict, suffix: str) -> None:
    steps = rd["steps"]
    err = [s["pixel_error_%"] for s in steps]
    curves = [("stream_bytes_per_image", "-", 2, "stream"), ("message_bytes_per_image", "--", 1, "messages")]
    if all("joint_stream_bytes_per_image" in s for s in steps):
        curves.append(("joint_stream_bytes_per_image", "-.", 1, "joint stream"))
    for key, style, width, name in curves:
        ax.plot([s[key] for s in steps], err, style, color="C3", lw=width, label=f"ours: {name}{suffix}")
    ll = rd.get("lossless") or {}
    if ll.get("status") == "ok":
        ax.plot(
            [ll["message_bytes_per_image"]], [0.0], "*", mfc="none", ms=13, color="C3", label=f"ours lossless{suffix}"
        )
    if rd.get("kl_bytes"):
        ax.axvline(rd["kl_bytes"], color="C3", ls=":", lw=1, label=f"model KL = {rd['kl_bytes']:.2f} B{suffix}")


def _classical_points(ax, classical: dict) -> None:
    """One line per lossy codec through its quality settings; lossless codecs as hollow markers."""
    markers = {"png": "s", "webp": "^", "jpeg": "o", "jpeg-xl": "D"}
    colors: dict[str, str] = {}
    families: dict[tuple, list[dict]] = {}
    for c in classical.get("codecs", []):
        if c["status"] == "ok":
            families.setdefault((c["codec"], c["lossless"]), []).append(c)
    for (name, lossless), rows in families.items():
        color = colors.setdefault(name, f"C{len(colors)}")
        x = [r["bytes_per_image"] for r in rows]
        y = [r["pixel_error_%"] for r in rows]
        if lossless:
            ax.plot(x, y, markers.get(name, "x"), mfc="none", ms=9, color=color, label=f"{name} lossless")
        else:
            settings = f"{rows[0]['setting']}..{rows[-1]['setting']}"
            ax.plot(x, y, "-", marker=markers.get(name, "x"), color=color, label=f"{name} {settings}")


def reconstructions(result: dict, path: Path) -> Path | None:
    """Originals (top row) and the decoded codes at a few Δ (one row each)."""
    grid = result["rate_distortion"].get("grid")
    if not grid:
        return None
    plt = _pyplot()
    rows = [("original", unpack(grid, grid["original"]))]
    steps = {s["step"]: s for s in result["rate_distortion"]["steps"]}
    for rec in grid["reconstructions"]:
        s = steps.get(rec["step"], {})
        size = f"\n{s['stream_bytes_per_image']:.1f} B" if "stream_bytes_per_image" in s else ""
        rows.append((f"Δ = {rec['step']:g}{size}", unpack(grid, rec["pixels"])))
    n = grid["shape"][0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.2, 1.15 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
