"""``python -m bench report``: merge result files of several machines into one report.

    python -m bench report results/*.json -o report/

Writes ``report.md`` and a static ``report.html`` with the same content, and the PNG
figures of :mod:`bench.plots` beside them. Every table places the devices side by side,
one column (or group of columns) per result file, so a row reads as "the same model file
on each machine". A value a device did not measure shows as "–", one it could not measure
as "n/a" (the reasons are listed under the table).

The document is built once as a list of blocks and rendered twice, so the two files never
disagree.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import plots, schema, targets
from compressor.io.atomic import atomic_write_text

MISSING, UNAVAILABLE = "–", "n/a"


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Code:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Figure:
    path: str
    alt: str


def write_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike, sections: Sequence = ()) -> Path:
    """Load and check every result, draw the figures, write report.md and report.html into ``out``.

    ``sections``: callables ``f(out) -> blocks`` appended to the document (they may draw into
    ``out``), e.g. the rate–distortion section of ``python -m bench report --rd FILE``.
    """
    if not paths:
        raise ValueError("report needs at least one result file")
    results = [schema.load(p) for p in paths]
    labels = device_labels(results, paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "latency": plots.latency(results, labels, out / "latency.png"),
        "rate_distortion": plots.rate_distortion(results, labels, out / "rate_distortion.png"),
        "reconstructions": plots.reconstructions(results[0], out / "reconstructions.png"),
    }
    doc = build(results, labels, {k: v.name for k, v in figures.items() if v is not None})
    for section in sections:
        doc += section(out)
    atomic_write_text(out / "report.md", render_markdown(doc))
    atomic_write_text(out / "report.html", render_html(doc))
    return out


def device_labels(results: list[dict], paths: Sequence) -> list[str]:
    """Device names, made unique with the file name where two results share one."""
    names = [r["device"]["name"] for r in results]
    return [n if names.count(n) == 1 else f"{n} ({Path(p).stem})" for n, p in zip(names, paths)]


def build(results: list[dict], labels: list[str], figures: dict[str, str]) -> list:
    doc: list = [Heading("Benchmark report", 1)]
    doc.append(Para(f"{len(results)} result file(s): " + ", ".join(labels) + ". Schema: docs/bench.md."))
    doc += _devices(results, labels)
    doc += _targets(results, labels)
    doc += _latency(results, labels, figures.get("latency"))
    doc += _quality(results, labels)
    doc += _rate_distortion(results, labels, figures)
    doc += _versus_classical(results, labels)
    doc += _details(results, labels)
    return doc


# --- sections ------------------------------------------------------------------------------
def _devices(results, labels) -> list:
    def get(r, *keys):
        v = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        return MISSING if v is None else str(v)

    def pi(r, key):
        p = r["device"].get("raspberry_pi")
        if not p:
            return MISSING
        if key == "throttled":
            t = p.get("throttled")
            if not t:
                return "unreadable"
            flags = [k for k, v in t.items() if v is True]
            return f"{t['raw']} ({', '.join(flags) or 'none'})"
        return str(p.get(key))

    rows = [
        ["CPU", *[get(r, "device", "cpu_model") for r in results]],
        ["cores (usable)", *[f"{get(r, 'device', 'cores')} ({get(r, 'device', 'cores_usable')})" for r in results]],
        ["arch", *[get(r, "device", "arch") for r in results]],
        ["OS", *[get(r, "device", "os") for r in results]],
        ["Python", *[get(r, "device", "python") for r in results]],
        ["ai-edge-litert", *[get(r, "device", "runtimes", "litert") for r in results]],
        ["tflite-runtime", *[get(r, "device", "runtimes", "tflite") for r in results]],
        ["onnxruntime", *[get(r, "device", "runtimes", "onnx") for r in results]],
        ["ONNX providers", *[", ".join(r["device"].get("onnx_providers") or []) or MISSING for r in results]],
        ["CPU governor", *[get(r, "device", "cpu_governor") for r in results]],
        ["temperature °C", *[get(r, "device", "temperature_c") for r in results]],
        ["Raspberry Pi", *[pi(r, "model") for r in results]],
        ["Pi throttling", *[pi(r, "throttled") for r in results]],
        ["model id", *[get(r, "bundle", "model_id") for r in results]],
        ["model width", *[get(r, "bundle", "width") for r in results]],
        ["decoder graph (LiteRT / ONNX)", *[_graphs(r) for r in results]],
        ["profile", *[_profile(r["profile"]) for r in results]],
        ["measured", *[get(r, "created") for r in results]],
    ]
    doc = [Heading("Devices"), Table(["", *labels], rows)]
    doc.append(Para("Commands:"))
    doc.append(Code("\n".join(f"# {label}\n{r['command']}" for r, label in zip(results, labels))))
    return doc


def _graphs(result: dict) -> str:
    """The decoder graph the export chose per runtime (export/variants.py), e.g. 'transpose / conv_d2s'."""
    chosen = (result.get("bundle") or {}).get("decoder_graphs") or {}
    if not chosen:
        return MISSING
    return " / ".join(
        f"{chosen[f]['graph']}{'' if chosen[f].get('per_channel', True) else ' (per-tensor)'}"
        for f in ("tflite", "onnx")
        if f in chosen
    )


def _profile(p: dict) -> str:
    return (
        f"{p.get('name')}: ≥{p.get('num_runs')} runs & ≥{p.get('min_secs')} s, "
        f"warm-up ≥{p.get('warmup_runs')} & ≥{p.get('warmup_min_secs')} s"
    )


def _targets(results, labels) -> list:
    rows = {"speed": [], "large": [], "macs": [], "gmacs": []}
    for r in results:
        t = targets.compute(r)  # recomputed from the rows: files from older runners get them too
        s, b = t["decoder_int8_speedup_vs_keras_b1"], t["decoder_int8_us_per_image_large_batch"]
        rows["speed"].append(
            _mark(f"{s['value']:.1f}× ({s['tflite_us']:.0f} vs {s['keras_us']:.0f} µs)", s["met"])
            if s["value"] is not None
            else UNAVAILABLE
        )
        rows["large"].append(
            _mark(f"{b['value']:.1f} µs (b{b['batch']})", b["met"]) if b["value"] is not None else UNAVAILABLE
        )
        rows["macs"].append(f"{b['macs_per_image']:,}" if b.get("macs_per_image") else MISSING)
        rows["gmacs"].append(f"{b['gmac_per_s']:.1f}" if b.get("gmac_per_s") else MISSING)
    table = Table(
        ["target", *labels],
        [
            [f"int8 TFLite decoder vs Keras tf.function, batch 1, 1 thread (goal ≥ {targets.SPEEDUP_GOAL:g}×)"]
            + rows["speed"],
            [f"int8 TFLite decoder, large batch, 1 thread, per image (goal ≤ {targets.LARGE_BATCH_GOAL_US:g} µs)"]
            + rows["large"],
            ["decoder multiply-accumulates per image", *rows["macs"]],
            ["implied GMAC/s (large batch, 1 thread)", *rows["gmacs"]],
        ],
        notes=["n/a: the Keras baseline needs `--with-keras RUN` on a machine with TensorFlow."]
        if UNAVAILABLE in rows["speed"]
        else [],
    )
    return [Heading("Targets"), table]


def _mark(text: str, ok: bool | None) -> str:
    return text if ok is None else f"{text} {'✓' if ok else '✗'}"


_COMPONENT_ORDER = {"encoder": 0, "decoder": 1, "codec": 2}


def _row_key(row: dict) -> tuple:
    """Sort key and identity of a latency row across devices."""
    return (
        _COMPONENT_ORDER.get(row["component"], 9),
        row["component"],
        row["runtime"],
        row.get("precision") or "",
        row.get("batch") or 0,
        row.get("num_threads") or 0,
        row.get("device"),
        row.get("provider") or "",
    )


def _merged_rows(results) -> tuple[list[tuple], dict]:
    """Every row key seen on any device, in a stable order, and {(key, device index): row}."""
    keys: list[tuple] = []
    cells: dict = {}
    for d, r in enumerate(results):
        for row in r["latency"]:
            k = _row_key(row)
            if k not in cells and k not in keys:
                keys.append(k)
            cells[k, d] = row
    return sorted(keys), cells


def _cell(row: dict | None, ok_text) -> str:
    """One device's table cell: missing, not available/error, or ``ok_text(row)``."""
    if row is None:
        return MISSING
    if row["status"] != "ok":
        return UNAVAILABLE if row["status"] == "not available" else "error"
    return ok_text(row)


def _latency_text(row: dict) -> str:
    t = row["inference_time_us"]
    return f"{row['us_per_image']:.1f} (p50 {t['p50']:.0f}, p99 {t['p99']:.0f})"


def _quality_text(row: dict) -> str:
    psnr = f"{row['psnr_db']:.2f} dB" if row.get("psnr_db") is not None else "∞"
    return f"{row['bce_nats']:.2f} / {row['mse']:.4f} / {psnr} / {row['pixel_error_%']:.2f}%"


def _latency(results, labels, figure) -> list:
    keys, cells = _merged_rows(results)
    rows, notes = [], {}
    for k in keys:
        any_row = next(cells[k, d] for d in range(len(results)) if (k, d) in cells)
        name = [any_row["component"], plots.row_label(any_row)]
        values = []
        for d in range(len(results)):
            row = cells.get((k, d))
            if row is not None and row["status"] != "ok":
                notes[f"{labels[d]}: {row['runtime']} {row.get('provider') or ''}".strip()] = row.get("reason", "")
            values.append(_cell(row, _latency_text))
        rows.append(name + values)
    doc = [
        Heading("Latency"),
        Para(
            "µs per image: mean of the warm runs divided by the batch; in brackets p50 and p99 of one call "
            "(one whole batch), µs. `b` = batch, `t` = threads (1 when not shown). encoder/decoder rows time "
            "the model alone on inputs already in its dtype; codec rows time "
            "`Decoder.decompress(Encoder.compress(images))`."
        ),
        Table(["component", "runtime, precision, batch", *labels], rows, [f"{k}: {v}" for k, v in notes.items()]),
    ]
    if figure:
        doc.append(Figure(figure, "latency per runtime and format"))
    return doc


def _quality(results, labels) -> list:
    keys: list[tuple] = []
    cells = {}
    for d, r in enumerate(results):
        for row in r["reconstruction"]:
            k = (row["runtime"], row["precision"])
            if k not in keys:
                keys.append(k)
            cells[k, d] = row
    rows = []
    for k in keys:
        values = [_cell(cells.get((k, d)), _quality_text) for d in range(len(results))]
        rows.append([f"{k[0]} {k[1]}", *values])
    return [
        Heading("Reconstruction (unquantized latents)"),
        Para("BCE nats per image / MSE / PSNR / pixel error, on the test images, against the model's target."),
        Table(["runtime, precision", *labels], rows),
    ]


def _rate_distortion(results, labels, figures) -> list:
    steps = sorted({s["step"] for r in results for s in r["rate_distortion"]["steps"]})
    by = [{s["step"]: s for s in r["rate_distortion"]["steps"]} for r in results]
    rows = []
    for step in steps:
        values = []
        for d in range(len(results)):
            s = by[d].get(step)
            values.append(
                MISSING
                if s is None
                else f"{s['stream_bytes_per_image']:.2f} / {s['message_bytes_per_image']:.2f} B, "
                f"{s['pixel_error_%']:.2f}%" + (f", {s['bce_nats']:.1f} nats" if "bce_nats" in s else "")
            )
        defaults = {r["rate_distortion"]["default_step"] for r in results}
        rows.append([f"{step:g}" + (" (default)" if step in defaults else ""), *values])
    kl = []
    for r in results:
        rd = r["rate_distortion"]
        kl.append(f"{rd['kl_bytes']:.2f} B ({rd['kl_nats']:.1f} nats)" if rd.get("kl_bytes") is not None else MISSING)
    rows.append(["model KL (ideal rate)", *kl])
    doc = [
        Heading("Rate–distortion of our codes"),
        Para(
            "Per step Δ: bytes per image of a stream / of self-contained messages (all framing included), "
            "pixel error and BCE of the int8 codec. The KL row is the test-split KL divergence of the "
            "posterior, the rate an ideal continuous code would need."
        ),
        Table(["Δ", *labels], rows),
    ]
    if figures.get("rate_distortion"):
        doc.append(Figure(figures["rate_distortion"], "rate-distortion against classical codecs"))
    if figures.get("reconstructions"):
        doc.append(Para(f"Reconstructions at a few Δ ({labels[0]}):"))
        doc.append(Figure(figures["reconstructions"], "reconstructions at a few steps"))
    return doc


def _codec_row(result) -> dict | None:
    """The int8 codec at batch 1 on one CPU thread, TFLite first: what a camera node runs."""
    want = {"component": "codec", "precision": "int8", "batch": 1, "num_threads": 1, "device": "cpu", "status": "ok"}
    for runtime in ("litert", "tflite", "onnx"):
        for row in result["latency"]:
            if row["runtime"] == runtime and all(row.get(k) == v for k, v in want.items()):
                return row
    return None


def _versus_classical(results, labels) -> list:
    names: list[tuple] = []
    cells: dict = {}
    for d, r in enumerate(results):
        rd = r["rate_distortion"]
        by_step = {s["step"]: s for s in rd["steps"]}
        codec = _codec_row(r)
        us = f", {codec['us_per_image']:.0f} µs" if codec else ""
        for label, step in (("default Δ", rd["default_step"]), ("coarsest Δ", max(by_step))):
            s = by_step[step]
            for kind, key in (("stream", "stream_bytes_per_image"), ("message", "message_bytes_per_image")):
                name = (f"ours, {label} = {step:g}, {kind}",)
                if name not in names:
                    names.append(name)
                cells[name, d] = f"{s[key]:.2f} B, {s['pixel_error_%']:.2f}%{us}"
        ll = rd.get("lossless") or {}
        if ll.get("status") == "ok":
            name = ("ours, lossless, message",)
            if name not in names:
                names.append(name)
            exact = "exact" if ll["exact"] else "NOT exact"
            cells[name, d] = (
                f"{ll['message_bytes_per_image']:.1f} B, {exact}, {ll['encode_us'] + ll['decode_us']:.0f} µs"
            )
        for c in r["classical"].get("codecs", []):
            name = (f"{c['codec']} {c['setting']}",)
            if name not in names:
                names.append(name)
            cells[name, d] = (
                f"{c['bytes_per_image']:.1f} B, {c['pixel_error_%']:.2f}%, {c['encode_decode_us']:.0f} µs"
                if c["status"] == "ok"
                else UNAVAILABLE
            )
    notes = sorted(
        {
            f"{labels[d]}: {r['classical'].get('reason')}"
            for d, r in enumerate(results)
            if r["classical"]["status"] != "ok"
        }
        | {
            f"{labels[d]}: {c['codec']}: {c['reason']}"
            for d, r in enumerate(results)
            for c in r["classical"].get("codecs", [])
            if c["status"] != "ok"
        }
    )
    rows = [[n[0], *[cells.get((n, d), MISSING) for d in range(len(results))]] for n in names]
    return [
        Heading("Our codec and the classical codecs"),
        Para(
            "Bytes per image, pixel error, and encode + decode µs per image on one thread (ours: the int8 codec "
            "row at batch 1, both networks included). Classical codecs compress each image on its own into a "
            "complete file."
        ),
        Table(["codec", *labels], rows, notes),
    ]


def _details(results, labels) -> list:
    doc = [Heading("Per-device details")]
    for r, label in zip(results, labels):
        rows = []
        for row in sorted(r["latency"], key=_row_key):
            if row["status"] != "ok":
                continue
            t, w = row["inference_time_us"], row["warmup_time_us"]
            rows.append(
                [
                    row["component"],
                    plots.row_label(row),
                    f"{row['startup_latency_us'] / 1000:.1f}",
                    f"{w['first']:.0f}",
                    f"{t['avg']:.0f} ± {t['std']:.0f}",
                    f"{t['p50']:.0f} / {t['p90']:.0f} / {t['p99']:.0f}",
                    f"{row['images_per_s']:,.0f}",
                    f"{row['peak_mem_mb']}" if row.get("peak_mem_mb") is not None else MISSING,
                    f"{row['file_bytes'] / 1000:.1f}",
                ]
            )
        doc.append(Heading(label, 3))
        doc.append(
            Table(
                [
                    "component",
                    "runtime, precision, batch",
                    "start-up ms",
                    "first µs",
                    "mean ± std µs",
                    "p50 / p90 / p99 µs",
                    "images/s",
                    "peak RSS MB",
                    "file kB",
                ],
                rows,
            )
        )
    return doc


# --- rendering -----------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: list) -> str:
    out: list[str] = []
    for block in doc:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Code):
            out.append("```\n" + block.text + "\n```")
        elif isinstance(block, Figure):
            out.append(f"![{block.alt}]({block.path})")
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |"]
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines += [""] + [f"- {_md_cell(n)}" for n in block.notes] if block.notes else []
            out.append("\n".join(lines))
        out.append("")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; }
ul.notes { font-size: 0.8em; color: #555; }
"""


def render_html(doc: list) -> str:
    esc = html.escape
    title = next((b.text for b in doc if isinstance(b, Heading)), "report")
    out = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>']
    out.append(f"<style>{_CSS}</style></head><body>")
    for block in doc:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline_code(block.text)}</p>")
        elif isinstance(block, Code):
            out.append(f"<pre>{esc(block.text)}</pre>")
        elif isinstance(block, Figure):
            out.append(f'<p><img src="{esc(block.path)}" alt="{esc(block.alt)}"></p>')
        elif isinstance(block, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in block.header) + "</tr></thead>")
            out.append("<tbody>")
            for row in block.rows:
                out.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
            if block.notes:
                out.append('<ul class="notes">' + "".join(f"<li>{_inline_code(n)}</li>" for n in block.notes) + "</ul>")
    out.append("</body></html>\n")
    return "\n".join(out)


def _inline_code(text: str) -> str:
    """Escape, then turn `code` spans into <code> (the only markup the paragraphs use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
