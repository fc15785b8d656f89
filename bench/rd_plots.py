"""One rate–distortion figure per set of :mod:`bench.rd_sweeps`: every mode of ours, every classical sweep.

x: bytes per image (log scale; whole files for classical codecs, messages/streams for ours).
y: PSNR dB (grayscale sets; exact reconstructions are drawn on a "lossless" line above the
highest finite PSNR) or pixel error % (binary sets; symmetric-log scale so that 0 %, i.e.
lossless, is on the axis). Drawn with matplotlib's Agg backend (the ``bench`` extra).
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.plots import _pyplot, matplotlib_ticker

MARKERS = {"png": "s", "webp": "^", "jpeg": "o", "jpeg-xl": "D", "avif": "v"}
COLORS = {"png": "C0", "webp": "C1", "jpeg": "C2", "jpeg-xl": "C4", "avif": "C5"}
OURS_LATENT, OURS_RESIDUAL, OURS_EXACT = "C3", "C9", "k"


def _y(value, binary: bool, exact_y: float) -> float:
    """Where a quality is drawn: pixel error as is; PSNR, with exact (None/inf) on the lossless line."""
    if binary:
        return float(value)
    return exact_y if value is None or not math.isfinite(value) else float(value)


def figure(rd_set: dict, path: Path, title: str) -> Path:
    """Draw ``rd_set`` (one element of the measurement's ``sets``) into ``path``."""
    plt = _pyplot()
    binary = rd_set["kind"] == "binary"
    q = rd_set["quality"]
    finite = [p[q] for p in rd_set["ours"] if p[q] is not None and math.isfinite(p[q])]
    finite += [
        c[q]
        for c in rd_set["classical"].get("codecs", [])
        if c.get("status") == "ok" and c.get(q) is not None and math.isfinite(c[q])
    ]
    exact_y = (max(finite) if finite else 40.0) + 4.0
    fig, ax = plt.subplots(figsize=(9, 6))
    _classical(ax, rd_set["classical"], q, binary, exact_y)
    _ours(ax, rd_set["ours"], q, binary, exact_y)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib_ticker().FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("bytes per image (log scale; classical: each image a complete file)")
    if binary:
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_ylim(bottom=-0.01)  # nothing is below 0 %: keep the lossless markers on the axis
        ax.yaxis.set_major_formatter(matplotlib_ticker().FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel("pixel error % (symmetric log; 0 = lossless)")
    else:
        ax.axhline(exact_y, color="grey", lw=0.6, ls=":")
        ax.annotate(
            "lossless (exact)",
            (0.01, exact_y),
            xycoords=("axes fraction", "data"),
            ha="left",
            va="bottom",
            fontsize=8,
            color="grey",
        )
        ax.set_ylabel("PSNR dB (uint8 pixels)")
    n, nc = rd_set["images"]["count"], rd_set["images"]["classical_count"]
    ax.set_title(f"{title}: ours on {n} images, classical codecs on {nc} of them", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ours(ax, points: list[dict], q: str, binary: bool, exact_y: float) -> None:
    latent = [p for p in points if p["family"] == "latent only"]
    styles = (("message_bytes", "--", "messages"), ("stream_bytes", "-", "stream"), ("joint_bytes", "-.", "joint"))
    for key, style, name in styles:
        pts = sorted((p[key], _y(p[q], binary, exact_y)) for p in latent if key in p)
        if pts:
            ax.plot(*zip(*pts), style, color=OURS_LATENT, lw=1.4, marker=".", label=f"ours latent only: {name}")
    residual = [p for p in points if p["family"] == "residual" and not p["setting"].startswith("lossless")]
    for key, style, name in styles[:2]:
        pts = sorted((p[key], _y(p[q], binary, exact_y)) for p in residual)
        if pts:
            what = "band sweep" if binary else "residual E"
            ax.plot(*zip(*pts), style, color=OURS_RESIDUAL, lw=1.6, marker="o", ms=4, label=f"ours {what}: {name}")
    if not binary:
        for p in residual:
            ax.annotate(
                p["setting"].replace(" ", "="),
                (p["message_bytes"], _y(p[q], binary, exact_y)),
                textcoords="offset points",
                xytext=(4, -9),
                fontsize=7,
                color=OURS_RESIDUAL,
            )
    exact = [p for p in points if p["family"] != "latent only" and p not in residual]
    for p in exact:
        name = f"ours {p['family']}" + (f", {p['setting']}" if p["family"] == "residual" else "")
        y, marker = _y(p[q], binary, exact_y), "*" if p["family"] == "residual" else "X"
        ax.plot([p["message_bytes"]], [y], marker, ms=11, color=OURS_EXACT, mfc="none", label=f"{name}: message")
        ax.plot([p["stream_bytes"]], [y], marker, ms=11, color=OURS_EXACT, label=f"{name}: stream")


def _classical(ax, block: dict, q: str, binary: bool, exact_y: float) -> None:
    families: dict[tuple[str, bool], list[dict]] = {}
    for c in block.get("codecs", []):
        if c.get("status") == "ok":
            families.setdefault((c["codec"], c["lossless"]), []).append(c)
    for (name, lossless), rows in families.items():
        color, marker = COLORS.get(name, "C7"), MARKERS.get(name, "x")
        pts = [(r["bytes_per_image"], _y(r[q], binary, exact_y)) for r in rows]  # in the sweep's order
        if lossless:
            ax.plot(*zip(*pts), marker, mfc="none", ms=9, color=color, label=f"{name} lossless")
        else:
            label = f"{name} {rows[0]['setting']}..{rows[-1]['setting']}"
            ax.plot(*zip(*pts), "-", marker=marker, ms=4, lw=1, color=color, label=label)
