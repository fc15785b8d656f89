"""``python -m bench bench``: measure one machine and write one result file (docs/bench.md).

Needs only ``compressor`` and whichever runtimes are installed, so the same command runs
on a training workstation and on a Raspberry Pi with nothing but ai-edge-litert.
TensorFlow is touched only with ``keras_run`` (``--with-keras``), and then only in child
processes (:mod:`bench.keras_baseline`).

Order of work: latency rows (every runtime, format, component, batch, thread count and
execution provider), the optional Keras baseline, reconstruction quality per runtime and
precision, the rate–distortion curve of the int8 codec, then the classical codecs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench import classical, environment, latency, quality, targets
from bench.latency import COMPONENTS, GPU_PROVIDERS, PRECISIONS, PROFILES, Inputs, Profile
from bench.schema import SCHEMA, SCHEMA_VERSION
from compressor.bundle import ROLES, load_manifest, load_part
from compressor.codec import Encoder
from compressor.errors import ManifestError
from compressor.io.arrays import as_batch
from compressor.io.atomic import atomic_write_json
from compressor.runtime import sessions as runtimes

ROOT = Path(__file__).resolve().parents[1]
CLASSICAL_IMAGES = {"quick": 100}


def run(
    bundle: str | os.PathLike,
    images,
    *,
    device_name: str | None = None,
    profile: Profile = PROFILES["full"],
    runtime_names: tuple[str, ...] = runtimes.RUNTIMES,
    components: tuple[str, ...] = COMPONENTS,
    precisions: tuple[str, ...] = PRECISIONS,
    batches: tuple[int, ...] | None = None,
    threads: tuple[int, ...] | None = None,
    providers: tuple[str, ...] = GPU_PROVIDERS,
    keras_run: str | os.PathLike | None = None,
    with_classical: bool = True,
    classical_images: int | None = None,
    images_source: str | None = None,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Measure this machine; returns the result dict (write it with :func:`write`).

    ``images``: uint8 (N, H, W) test images (or anything :func:`compressor.io.files.as_batch`
    takes). ``batches`` defaults to 1 and the bundle's largest fixed batch, ``threads`` to 1
    and every usable core.
    """
    bundle = Path(bundle)
    if keras_run is not None:
        _check_run(keras_run)
    manifest = load_manifest(bundle)
    if "parts" not in manifest:
        raise ManifestError(f"{bundle} is a sub-bundle; bench needs the full bundle (with encoder/ and decoder/)")
    parts = {role: load_part(bundle, role) for role in ROLES}
    pixels = np.rint(as_batch(images, shape=parts["encoder"].image_shape) * 255).astype(np.uint8)
    default_runtime = runtimes.resolve("auto")
    enc = Encoder.load(bundle / "encoder", runtime=default_runtime, precision="fp32")
    inputs = Inputs(pixels, quality.targets_of(enc, pixels), enc.latents(pixels))
    batches = batches or _default_batches(parts)
    threads = threads or tuple(sorted({1, environment.usable_cores()}))

    cases, rows = latency.plan(
        runtime_names=runtime_names,
        components=components,
        precisions=precisions,
        batches=batches,
        threads=threads,
        providers=providers,
    )
    log(f"latency: {len(cases)} rows ({profile.name} profile), {len(rows)} combinations not available here")
    for case in cases:
        row = latency.measure(case, parts, inputs, profile)
        rows.append(row)
        log("  " + _row_line(row))
    if keras_run is not None:
        log(f"Keras baseline from {keras_run} (TensorFlow, in child processes)")
        for row in keras_rows(keras_run, threads, batches, profile):
            rows.append(row)
            log("  " + _row_line(row))

    kl_nats = (manifest.get("training") or {}).get("test_kl_nats")
    log(f"reconstruction and rate-distortion on {len(pixels)} images")
    recon = quality.reconstruction(bundle, pixels, runtime_names, precisions)
    rd = quality.rate_distortion(bundle, pixels, default_runtime, kl_nats)
    n_classical = classical_images or CLASSICAL_IMAGES.get(profile.name) or len(pixels)
    if with_classical:
        log(f"classical codecs on {min(n_classical, len(pixels))} images")
        classic = classical.measure(inputs.targets[:n_classical])
    else:
        classic = {"status": "not available", "reason": "skipped (--no-classical)", "codecs": []}

    result = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or "bench.runner.run()",
        "profile": asdict(profile),
        "device": environment.describe(device_name),
        "bundle": _bundle_info(bundle, manifest, parts),
        "images": {"source": images_source, "count": len(pixels), "default_runtime": default_runtime},
        "latency": rows,
        "reconstruction": recon,
        "rate_distortion": rd,
        "classical": classic,
    }
    result["targets"] = targets.compute(result)
    for line in targets.describe(result["targets"]):
        log(line)
    return result


def write(result: dict, out: str | os.PathLike) -> Path:
    """Write ``result`` atomically, creating the folder (``results/`` usually does not exist yet)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    return out


def keras_rows(run: str | os.PathLike, threads, batches, profile: Profile) -> list[dict]:
    """Rows of :mod:`bench.keras_baseline`, one child process per thread count (GPU with the first)."""
    rows = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for i, n in enumerate(threads):
        cmd = [sys.executable, "-m", "bench.keras_baseline", str(run), "--threads", str(n)]
        cmd += ["--batches", ",".join(map(str, batches)), "--profile", json.dumps(asdict(profile))]
        cmd += ["--gpu"] if i == 0 else []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:  # keep the rows measured so far; say what broke
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return rows + _keras_gap("error", f"the Keras baseline with {n} thread(s) failed: {tail}")
        out = json.loads(lines[-1])
        if "unavailable" in out:
            return rows + _keras_gap("not available", out["unavailable"])
        rows += out["rows"]
    return rows


def _keras_gap(status: str, reason: str) -> list[dict]:
    key = {"runtime": "tensorflow", "format": "keras", "precision": "fp32", "provider": "tf.function"}
    return [
        {**key, "component": c, "batch": None, "num_threads": None, "device": "cpu", "status": status, "reason": reason}
        for c in ("encoder", "decoder")
    ]


def _check_run(run: str | os.PathLike) -> None:
    """Fail before minutes of measuring, not after, when --with-keras names no training run."""
    missing = [n for n in ("config.json", "encoder.weights.h5", "decoder.weights.h5") if not (Path(run) / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--with-keras {run}: not a finished training run (missing {', '.join(missing)}); "
            "pass the run directory of 'python -m export train' (out/run after 'python -m export demo')"
        )


def _default_batches(parts) -> tuple[int, ...]:
    fixed = [f.batch for f in parts["decoder"].files if f.batch]
    return tuple(sorted({1, max(fixed, default=64)}))


def _bundle_info(bundle: Path, manifest: dict, parts) -> dict:
    return {
        "path": str(bundle),
        "model_id": manifest.get("model_id"),
        "image_shape": manifest.get("image_shape"),
        "latent_dim": manifest.get("latent_dim"),
        "binarize": manifest.get("binarize"),
        "macs": manifest.get("macs"),
        "width": manifest.get("width", 1.0),
        "decoder_graphs": manifest.get("decoder_graphs"),
        "training": manifest.get("training"),
        "files": {f"{role}/{f.path}": f.size for role, part in parts.items() for f in part.files},
    }


def _row_line(row: dict) -> str:
    name = f"{row['component']:<7} {row['runtime']:<10} {row.get('precision') or '-':<4}"
    where = f"b{row['batch']} t{row['num_threads']}" if row.get("batch") else ""
    if row.get("provider") and row["runtime"] == "onnx" or row["runtime"] == "tensorflow":
        where += f" {row['device']}"
    if row["status"] != "ok":
        return f"{name} {where:<12} {row['status']}: {row.get('reason', '')}"
    t = row["inference_time_us"]
    return (
        f"{name} {where:<12} {row['us_per_image']:>10.1f} us/image  "
        f"(p50 {t['p50']:.0f} us/call, start-up {row['startup_latency_us'] / 1000:.1f} ms, "
        f"peak {row['peak_mem_mb']} MB)"
    )
