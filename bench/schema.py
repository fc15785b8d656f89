"""The result file's schema (docs/bench.md): its name, version, and a checker.

The report merges files written by different machines and versions, so it checks each
one first and names the file and key at fault instead of failing deep inside a plot. Only
what the report relies on is required; everything else is optional so that a result
from a leaner device (no onnxruntime, no Pillow) still loads.
"""

from __future__ import annotations

import json
from pathlib import Path

from compressor.errors import CompressorError

SCHEMA = "vae-compressor-bench"
SCHEMA_VERSION = 1

NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_INT = (int, type(None))
OPT_STR = (str, type(None))

TOP = {
    "schema": str,
    "schema_version": int,
    "created": str,
    "command": str,
    "profile": dict,
    "device": dict,
    "bundle": dict,
    "images": dict,
    "latency": list,
    "reconstruction": list,
    "rate_distortion": dict,
    "classical": dict,
    "targets": dict,
}
DEVICE = {"name": str, "cpu_model": str, "cores": OPT_INT, "arch": str, "os": str, "python": str, "runtimes": dict}
ROW_KEY = {
    "component": str,
    "runtime": str,
    "format": str,
    "precision": OPT_STR,
    "batch": OPT_INT,
    "num_threads": OPT_INT,
    "device": str,
    "provider": OPT_STR,
    "status": str,
}
ROW_OK = {
    "startup_latency_us": NUM,
    "warmup_time_us": dict,
    "inference_time_us": dict,
    "us_per_image": NUM,
    "images_per_s": NUM,
    "file_bytes": int,
    "model_size_mb": NUM,
    "peak_mem_mb": OPT_NUM,
}
INFERENCE = {k: NUM for k in ("count", "avg", "std", "min", "max", "p50", "p90", "p99")}
WARMUP = {"first": NUM, "count": int, "avg": NUM}
RD = {"default_step": NUM, "kl_bytes": OPT_NUM, "steps": list}
RD_STEP = {"step": NUM, "stream_bytes_per_image": NUM, "message_bytes_per_image": NUM, "pixel_error_%": NUM}
RECON_OK = {"runtime": str, "precision": str, "bce_nats": NUM, "mse": NUM, "pixel_error_%": NUM}
CLASSICAL_ROW = {"codec": str, "setting": str, "status": str}
CLASSICAL_OK = {"bytes_per_image": NUM, "pixel_error_%": NUM, "encode_decode_us": NUM}
STATUSES = ("ok", "not available", "error")


class ResultFileError(CompressorError, ValueError):
    """A bench result file is unreadable or does not follow docs/bench.md."""


def load(path: str | Path) -> dict:
    """Read and check one result file."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ResultFileError(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise ResultFileError(f"{path} is not valid JSON: {e}") from e
    check(result, str(path))
    return result


def check(result, where: str = "result") -> None:
    """Raise :class:`ResultFileError` naming the first key that breaks the schema."""
    if not isinstance(result, dict) or result.get("schema") != SCHEMA:
        raise ResultFileError(f"{where} is not a {SCHEMA} result (made by 'python -m bench bench')")
    version = result.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ResultFileError(
            f"{where} has result schema version {version}; this report reads up to {SCHEMA_VERSION}: "
            "upgrade vae-compressor"
        )
    _keys(result, TOP, where)
    _keys(result["device"], DEVICE, f"{where}: device")
    for i, row in enumerate(result["latency"]):
        at = f"{where}: latency[{i}]"
        _keys(row, ROW_KEY, at)
        _status(row, at)
        if row["status"] == "ok":
            _keys(row, ROW_OK, at)
            _keys(row["inference_time_us"], INFERENCE, f"{at}.inference_time_us")
            _keys(row["warmup_time_us"], WARMUP, f"{at}.warmup_time_us")
        else:
            _keys(row, {"reason": str}, at)
    for i, row in enumerate(result["reconstruction"]):
        at = f"{where}: reconstruction[{i}]"
        _status(row, at)
        if row["status"] == "ok":
            _keys(row, RECON_OK, at)
    _keys(result["rate_distortion"], RD, f"{where}: rate_distortion")
    for i, step in enumerate(result["rate_distortion"]["steps"]):
        _keys(step, RD_STEP, f"{where}: rate_distortion.steps[{i}]")
    classic = result["classical"]
    _status(classic, f"{where}: classical")
    for i, row in enumerate(classic.get("codecs", [])):
        at = f"{where}: classical.codecs[{i}]"
        _keys(row, CLASSICAL_ROW, at)
        _status(row, at)
        if row["status"] == "ok":
            _keys(row, CLASSICAL_OK, at)


def _status(obj: dict, where: str) -> None:
    _keys(obj, {"status": str}, where)
    if obj["status"] not in STATUSES:
        raise ResultFileError(f"{where}: status must be one of {STATUSES}, got {obj['status']!r}")


def _keys(obj, spec: dict, where: str) -> None:
    if not isinstance(obj, dict):
        raise ResultFileError(f"{where} must be an object, got {type(obj).__name__}")
    for key, kind in spec.items():
        if key not in obj:
            raise ResultFileError(f"{where}: missing required key {key!r}")
        value = obj[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ResultFileError(f"{where}: {key!r} must be {names}, got {type(value).__name__}")
