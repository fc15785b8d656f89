"""The rate–distortion report: one figure and two tables per set of :mod:`bench.rd_sweeps`.

Per set: ``rd-<key>.png`` (:mod:`bench.rd_plots`), the table "bytes needed for the same
quality, ours ÷ best classical" at each of our operating points (:mod:`bench.rd_compare`),
and the classical codecs' own points. :func:`write` puts them into ``rd.md`` of a folder;
:func:`blocks` gives the same content as blocks of :mod:`bench.report`, which ``python -m
bench report --rd FILE`` appends to report.md and report.html. A codec that could not be
measured (no plugin, a Pillow without it) is listed as "not measured" with the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench import rd_compare, rd_plots
from bench.report import Code, Figure, Heading, Para, Table, render_markdown
from compressor.io.atomic import atomic_write_text

TITLES = {
    "binary": "Binary model, binarized digits",
    "grayscale": "Grayscale model, grayscale digits",
    "grayscale-natural": "Grayscale model, 28x28 crops of a natural photo",
}


def _goodness(value, binary: bool) -> float:
    return rd_compare.goodness(value, binary=binary)


def classical_inputs(rd_set: dict) -> tuple[dict, dict, dict]:
    """``(sweeps, lossless, not_measured)`` of a set's classical block for :func:`rd_compare.best_classical`.

    A setting declared lossless that did not reproduce the image counts as a lossy point.
    """
    binary, q = rd_set["kind"] == "binary", rd_set["quality"]
    sweeps: dict[str, list] = {}
    lossless: dict[str, float] = {}
    missing: dict[str, str] = {}
    block = rd_set["classical"]
    if block.get("status") != "ok":
        return {}, {}, {"every classical codec": block.get("reason", "not measured")}
    for c in block.get("codecs", []):
        if c.get("status") != "ok":
            missing.setdefault(c["codec"], c.get("reason", "not measured"))
            continue
        exact = c.get("mse") == 0
        if c["lossless"] and exact:
            lossless[c["codec"]] = min(lossless.get(c["codec"], math.inf), c["bytes_per_image"])
        else:
            g = math.inf if exact else _goodness(c[q], binary)
            sweeps.setdefault(c["codec"], []).append((c["bytes_per_image"], g))
    return sweeps, lossless, missing


def _quality_text(value, binary: bool) -> str:
    if binary:
        return f"{value:.3f} %"
    return "exact" if value is None or not math.isfinite(value) else f"{value:.2f} dB"


def ratio_table(rd_set: dict) -> Table:
    """ "Bytes needed for the same quality, ours ÷ best classical" at each of our operating points."""
    binary, q = rd_set["kind"] == "binary", rd_set["quality"]
    sweeps, lossless, missing = classical_inputs(rd_set)
    rows, notes = [], []
    fallback_seen = floor_seen = False
    for p in rd_set["ours"]:
        quality = _quality_text(p[q], binary)
        joint = f"{p['joint_bytes']:.2f}" if "joint_bytes" in p else "–"
        mine = [p["family"], p["setting"], quality, f"{p['message_bytes']:.2f}", f"{p['stream_bytes']:.2f}", joint]
        try:
            best = rd_compare.best_classical(sweeps, lossless, _goodness(p[q], binary))
        except ValueError:
            rows.append([*mine, "not measured", "–", "–", "–"])
            continue
        name = best.codec + (" ¹" if best.lossless_fallback else " ²" if best.below_sweep else "")
        fallback_seen |= best.lossless_fallback
        floor_seen |= best.below_sweep
        ratios = [f"{rd_compare.ratio(p[k], best):.3f}" for k in ("message_bytes", "stream_bytes")]
        rows.append([*mine, name, f"{best.bytes_per_image:.1f}", *ratios])
    if fallback_seen:
        notes.append(
            "¹ no lossy setting of any classical codec reaches this quality: compared with the best lossless size"
        )
    if floor_seen:
        notes.append("² every setting of this codec gives a better quality than ours: its cheapest setting")
    notes += [f"{codec}: not measured: {reason}" for codec, reason in missing.items()]
    header = [
        "ours",
        "setting",
        "pixel error" if binary else "PSNR",
        "message B",
        "stream B/image",
        "joint B/image",
        "best classical at this quality",
        "its B/image",
        "ours ÷ best (message)",
        "(stream)",
    ]
    return Table(header, rows, notes)


def classical_table(rd_set: dict) -> Table:
    """The classical codecs' own points, as measured."""
    binary, q = rd_set["kind"] == "binary", rd_set["quality"]
    rows = []
    for c in rd_set["classical"].get("codecs", []):
        if c.get("status") != "ok":
            rows.append([c["codec"], c["setting"], "not measured", "–", "–"])
            continue
        value = 0.0 if binary else (None if c.get("mse") == 0 else c[q])
        quality = _quality_text(c[q] if binary else value, binary)
        rows.append([c["codec"], c["setting"], f"{c['bytes_per_image']:.1f}", quality, f"{c['encode_decode_us']:.0f}"])
    return Table(["codec", "setting", "B/image", "pixel error" if binary else "PSNR", "encode + decode µs"], rows)


def summary(rd_set: dict) -> str:
    """A few lines for the terminal: each operating point, its quality, bytes and ratio."""
    table = ratio_table(rd_set)
    lines = [f"{TITLES.get(rd_set['key'], rd_set['key'])} ({rd_set['seconds']} s):"]
    default = f"Δ {rd_set.get('default_step', 0):g}"
    for r in table.rows:
        if r[0] == "latent only" and r[1] != default:
            continue  # the default step stands for the latent-only codes on the terminal
        lines.append(f"  {r[0]}, {r[1]}: {r[3]} B/message at {r[2]}; best classical {r[6]} {r[7]} B -> {r[8]}x")
    return "\n".join(lines + [f"  {n}" for n in table.notes])


def blocks(curves: dict, figure_dir: Path) -> list:
    """The report section: draws each set's figure into ``figure_dir`` and returns the blocks."""
    doc: list = [Heading("Rate–distortion, every mode")]
    doc.append(
        Para(
            "Ours: latent-only codes at every step Δ (self-contained messages, a stream, a joint stream), residual "
            "codes (grayscale: every error bound E; binary: lossless with causal context and the band sweep) and "
            "the binary lossless mode 2, all from the int8 LiteRT codec. Classical codecs: each image a complete "
            "file (Pillow), mean bytes per image over their quality sweeps and lossless modes. The ratio is the "
            "bytes we need ÷ the bytes the cheapest classical codec needs for the same quality, interpolated "
            "linearly in quality along its sweep (bench/rd_compare.py); below 1 we need fewer."
        )
    )
    if curves.get("command"):
        doc.append(Code(curves["command"]))
    for rd_set in curves["sets"]:
        title = TITLES.get(rd_set["key"], rd_set["key"])
        path = rd_plots.figure(rd_set, figure_dir / f"rd-{rd_set['key']}.png", title)
        n = rd_set["images"]
        doc.append(Heading(title, 3))
        doc.append(
            Para(
                f"{n['count']} images from `{n['source']}` (classical codecs: {n['classical_count']} of them, "
                "evenly spaced); "
                f"bundle `{rd_set['bundle']}`, model id {rd_set['model_id']}; measured in {rd_set['seconds']} s."
            )
        )
        doc.append(Figure(path.name, f"rate-distortion, {title}"))
        doc.append(Para("Bytes needed for the same quality, ours ÷ best classical:"))
        doc.append(ratio_table(rd_set))
        doc.append(Para("The classical codecs' points:"))
        doc.append(classical_table(rd_set))
    return doc


def write(curves: dict, out: str | Path) -> Path:
    """Write ``rd.md`` and the figures into ``out``; returns the path of rd.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = blocks(curves, out)
    doc[0] = Heading("Rate–distortion, every mode", 1)
    path = out / "rd.md"
    atomic_write_text(path, render_markdown(doc))
    return path
