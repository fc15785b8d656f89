"""``python -m export export``: a training run -> a validated model bundle (docs/bundle.md).

Config -> convert -> validate, in a staging directory beside the target. Only a bundle
whose every file passed validation is moved into place (atomically, by rename); a failed
export leaves the previous bundle untouched and keeps the rejected one as ``BUNDLE.rejected``
for inspection.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor import bundle as B
from compressor.coding import lossless
from compressor.io.atomic import atomic_write_json, atomic_write_text
from export import convert, validate, variants
from export.coding import build_coding
from export.residual_coding import binary_context2_section, residual_section

BATCHES = (1, 64)
CALIBRATION_SAMPLES = 4500  # the whole mnist5k train split: the latent range must be covered
VALIDATION_SAMPLES = 500
NAMES = {"encoder": ("image", "mean"), "decoder": ("latent", "probs")}


def export_run(
    run_dir: str | Path,
    bundle_dir: str | Path,
    *,
    batches=BATCHES,
    decoder_graph_option: str = variants.DEFAULT_OPTION,
    log=print,
) -> dict:
    """Export, validate and install the bundle; returns the top-level manifest.

    ``decoder_graph_option`` (export/variants.py): a decoder graph name, a fixed rule that makes
    the export reproducible (default ``conv_d2s``), or ``auto`` to pick the fastest by timing.
    """
    from export import datasets
    from export.graphs import decoder_graph
    from export.model import count_macs, mean_encoder, probability_decoder
    from export.train import load_run

    t0 = time.perf_counter()
    config, metrics, encoder, decoder = load_run(run_dir)
    data = datasets.load(config["data"], binarize=config["binarize"])
    graphs = {"encoder": mean_encoder(encoder), "decoder": probability_decoder(decoder)}
    calib_images = data.train[:CALIBRATION_SAMPLES]
    calib_latents = graphs["encoder"].predict(calib_images, batch_size=500, verbose=0)
    calibration = {"encoder": calib_images, "decoder": calib_latents}

    def keras_decode(z):
        return graphs["decoder"].predict(np.asarray(z, np.float32), batch_size=500, verbose=0)

    def keras_encode(x):
        return graphs["encoder"].predict(x, batch_size=500, verbose=0)

    bundle_dir = Path(bundle_dir)
    stage = bundle_dir.with_name(bundle_dir.name + ".staging")
    shutil.rmtree(stage, ignore_errors=True)
    for role in B.ROLES:
        (stage / role).mkdir(parents=True)

    held_out = data.test[:VALIDATION_SAMPLES]
    log(f"decoder graph per runtime: {variants.rule(decoder_graph_option)}")
    choice = variants.choose(
        decoder, calib_latents, keras_encode(held_out), held_out, option=decoder_graph_option, log=log
    )
    plans = {
        "encoder": {fmt: _Plan(graphs["encoder"], True, "trained", {}) for fmt in ("tflite", "onnx")},
        "decoder": {
            fmt: _Plan(decoder_graph(decoder, g), pc, g, choice.blobs)
            for fmt in ("tflite", "onnx")
            for g, pc in [choice.for_format(fmt)]
        },
    }
    files = {role: _convert_role(role, plans[role], calibration[role], batches, stage / role, log) for role in graphs}

    log("building entropy tables from the training latents")
    coding = build_coding(calib_latents, calib_images, keras_decode)
    if config["binarize"]:
        log("calibrating the lossless pixel table on the int8 decoder's output levels")
        coding["lossless"] = _lossless_section(stage / "decoder", files["decoder"], coding, calib_latents, calib_images)
        coding["binary_context2"] = binary_context2_section(
            lambda z: _int8_levels(stage / "decoder", files["decoder"], z), coding, calib_latents, calib_images, log
        )
    else:
        log("calibrating the residual tables (grayscale lossless / near-lossless) on the int8 decoder's levels")
        coding["residual"] = residual_section(
            lambda z: _int8_levels(stage / "decoder", files["decoder"], z), coding, calib_latents, calib_images, log
        )
    coding_bytes = _canonical_json(coding)
    decoder_files = {f["path"]: f["sha256"] for f in files["decoder"]}
    model_id = B.model_id_of(B.sha256_hex(coding_bytes), decoder_files)

    common = {
        "format": B.FORMAT,
        "format_version": B.FORMAT_VERSION,
        "model_id": model_id,
        "image_shape": list(data.image_shape),
        "latent_dim": int(config["latent_dim"]),
        "binarize": bool(config["binarize"]),
    }
    for role in B.ROLES:
        (stage / role / "coding.json").write_bytes(coding_bytes)
        part = common | {
            "role": role,
            "files": files[role],
            "coding": {"path": "coding.json", "sha256": B.sha256_hex(coding_bytes), "bytes": len(coding_bytes)},
            "latent_quantization": _latent_quantization(files[role], role),
            "decoder_files": decoder_files,
        }
        atomic_write_json(stage / role / "manifest.json", part)

    log("validating every file in its runtime against Keras")
    parts = {role: B.load_part(stage / role, role) for role in B.ROLES}
    checks = validate.validate(parts, keras_encode, keras_decode, held_out)
    chained = validate.end_to_end(parts, held_out)
    report = {
        "checks": validate.as_json(checks),
        "end_to_end_int8": chained,
        "n_images": len(held_out),
        "decoder_graphs": choice.as_json(),
    }
    atomic_write_json(stage / "validation.json", report)
    atomic_write_text(
        stage / "validation.md",
        validate.table(checks)
        + "\n\nDecoder graph per runtime ("
        + variants.rule(choice.option)
        + "):\n\n"
        + choice.table()
        + "\n",
    )

    manifest = common | {
        "parts": {
            role: {
                "manifest": f"{role}/manifest.json",
                "sha256": B.sha256_hex((stage / role / "manifest.json").read_bytes()),
            }
            for role in B.ROLES
        },
        "training": {
            k: metrics[k] for k in ("test_elbo", "test_recon_nats", "test_kl_nats", "best_epoch", "wall_seconds")
        }
        | {k: config.get(k, 1.0 if k == "width" else None) for k in ("data", "data_fingerprint", "epochs", "width")},
        "width": float(config.get("width", 1.0)),
        "macs": count_macs(data.image_shape, int(config["latent_dim"]), float(config.get("width", 1.0))),
        "decoder_graphs": choice.as_json()["chosen"],
        "decoder_graph_option": choice.option,
        "validation": "validation.json",
        "export_seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(stage / "manifest.json", manifest)
    log(validate.table(checks))
    failed = [c for c in checks if not c.ok]
    if failed:
        rejected = bundle_dir.with_name(bundle_dir.name + ".rejected")
        shutil.rmtree(rejected, ignore_errors=True)
        stage.rename(rejected)
        log(f"validation failed; the rejected bundle is kept at {rejected}")
        validate.raise_on_failure(checks)
    _install(stage, bundle_dir)
    return manifest


def _lossless_section(part_dir: Path, files: list[dict], coding: dict, latents: np.ndarray, images: np.ndarray) -> dict:
    """The lossless table (calibrated at the default step) and the step that makes lossless codes smallest.

    The table maps the int8 decoder's output level to a 16-bit ink frequency; the step is
    chosen on the training split by the ideal size: latent bits + pixel bits under the table.
    """
    steps = coding["steps"]
    default = coding["default_step_index"]
    levels = _int8_levels(part_dir, files, np.rint(latents / steps[default]) * steps[default])
    table = lossless.build_table(levels, images)
    f1 = np.asarray(table, np.float64) / 65536
    ink = images.reshape(len(images), -1) > 0.5
    sizes = []
    for index, step in enumerate(steps):
        q = np.rint(latents / step)
        lv = _int8_levels(part_dir, files, q * step).reshape(len(images), -1).astype(np.int64) + 128
        p = np.where(ink, f1[lv], 1 - f1[lv])
        pixel_bits = -np.log2(p).sum(axis=1).mean()
        latent_bits = coding["train_rd"][index]["ideal_bytes"] * 8
        sizes.append((latent_bits + pixel_bits) / 8)
    best = int(np.argmin(sizes))
    return lossless.LosslessTable(table, "litert", "int8").to_json() | {
        "step_index": best,
        "train_ideal_bytes": [round(float(b), 3) for b in sizes],
    }


def _int8_levels(part_dir: Path, files: list[dict], latents: np.ndarray) -> np.ndarray:
    """The int8 LiteRT decoder's raw output levels for ``latents`` (the lossless table's input)."""
    from compressor.runtime.network import Network

    entry = min(
        (f for f in files if f["format"] == "tflite" and f["precision"] == "int8"), key=lambda f: f["batch"] or 0
    )  # the canonical (batch-1) file, as devices run it
    part = B.Part(
        root=part_dir,
        role="decoder",
        model_id="0" * 16,
        image_shape=(0, 0),
        latent_dim=latents.shape[1],
        binarize=True,
        files=tuple(B.parse_file(f, str(part_dir)) for f in files),
        coding_sha256="",
        coding_size=0,
        manifest={},
    )
    net = Network(part, runtime="litert", precision="int8", batch=entry["batch"])
    return net.levels(latents)


@dataclass(frozen=True)
class _Plan:
    """What one file format of one role is converted from: a Keras graph and its int8 weights."""

    graph: object
    per_channel: bool
    name: str
    blobs: dict  # (format, graph name, per_channel, precision, batch) -> bytes made already


def _convert_role(role: str, plans: dict, calib: np.ndarray, batches, out: Path, log) -> list[dict]:
    in_name, out_name = NAMES[role]
    files = []
    tflite, onnx = plans["tflite"], plans["onnx"]

    def made(plan, fmt, precision, batch, build):
        blob = plan.blobs.get((fmt, plan.name, plan.per_channel, precision, batch))
        return blob if blob is not None else build()

    tags = {"graph": tflite.name, "per_channel": tflite.per_channel}
    for batch in batches:
        fixed = convert.with_fixed_batch(tflite.graph, batch, in_name, out_name)
        for precision, rep in (("fp32", None), ("int8", calib)):
            log(f"  {role}: TFLite {precision} batch {batch}")
            blob = made(
                tflite,
                "tflite",
                precision,
                batch,
                lambda fixed=fixed, rep=rep: convert.to_tflite(fixed, rep, per_channel=tflite.per_channel),
            )
            name = f"{role}_{precision}_b{batch}.tflite"
            files.append(_write(out, name, blob, role, "tflite", precision, batch) | tags)
    log(f"  {role}: ONNX fp32 and int8 (dynamic batch)")
    tags = {"graph": onnx.name, "per_channel": onnx.per_channel}
    dyn = convert.with_fixed_batch(onnx.graph, None, in_name, out_name)
    fp32 = made(onnx, "onnx", "fp32", None, lambda: convert.to_onnx(dyn, in_name, out_name))
    files.append(_write(out, f"{role}_fp32.onnx", fp32, role, "onnx", "fp32", None) | tags)
    int8 = made(
        onnx, "onnx", "int8", None, lambda: convert.quantize_onnx(fp32, in_name, calib, per_channel=onnx.per_channel)
    )
    files.append(_write(out, f"{role}_int8.onnx", int8, role, "onnx", "int8", None) | tags)
    return files


def _write(out: Path, name: str, blob: bytes, role: str, fmt: str, precision: str, batch) -> dict:
    """Write one model file and describe it from what its own runtime reports."""
    from compressor.runtime.sessions import open_session

    (out / name).write_bytes(blob)
    sess = open_session(blob, fmt, validate.RUNTIME_FOR[fmt], threads=1)
    return {
        "path": name,
        "role": role,
        "format": fmt,
        "precision": precision,
        "batch": batch,
        "input": _spec_json(sess.input),
        "output": _spec_json(sess.output),
        "sha256": B.sha256_hex(blob),
        "bytes": len(blob),
    }


def _spec_json(spec) -> dict:
    d = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}
    if spec.dtype == "int8":
        d["quantization"] = {"scale": spec.scale, "zero_point": spec.zero_point}
    return d


def _latent_quantization(files: list[dict], role: str) -> dict:
    """The int8 scale/zero-point of the latent side of the int8 TFLite file, for the record."""
    side = "output" if role == "encoder" else "input"
    for f in files:
        if f["format"] == "tflite" and f["precision"] == "int8":
            return {"tensor": f"{role} {side}"} | f[side].get("quantization", {})
    return {}


def _canonical_json(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _install(stage: Path, target: Path) -> None:
    """Swap the validated staging directory into place with renames only."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    stage.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(target.with_name(target.name + ".rejected"), ignore_errors=True)
