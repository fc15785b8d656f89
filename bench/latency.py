"""Time every model file and the whole codec in every installed runtime.

One *row* is one component (``encoder``, ``decoder`` or ``codec``) in one runtime,
precision, batch size, thread count and execution provider. For each row this measures,
in the order litert's ``benchmark_model`` does: start-up (read + verify the file, create
the interpreter/session), the first inference, warm-up runs, then timed runs; plus the
peak resident memory while the row ran and the file size. Key names follow
``benchmark_model`` where they overlap (docs/bench.md).

The ``encoder``/``decoder`` rows time ``Session.run`` on inputs already in the file's dtype,
so Python-side quantization is not billed to the model. The ``codec`` rows time what an
application does, ``Decoder.decompress(Encoder.compress(images))``: both networks,
quantization, entropy coding and framing.

A combination that cannot run here (runtime not installed, execution provider missing,
no file for that batch) becomes a row with ``status: "not available"`` and the reason, so a
report shows the gap instead of silently dropping it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench import memory
from bench.stats import summarize
from compressor.bundle import Part
from compressor.codec import Decoder, Encoder
from compressor.errors import BundleNotFoundError, RuntimeUnavailableError
from compressor.runtime import sessions as runtimes
from compressor.runtime.network import Network

COMPONENTS = ("encoder", "decoder", "codec")
PRECISIONS = ("fp32", "int8")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_DEVICE_OF_PROVIDER = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "gpu",
    "TensorrtExecutionProvider": "gpu",
}
_INSTALL = {"litert": "ai-edge-litert", "tflite": "tflite-runtime", "onnx": "onnxruntime"}


@dataclass(frozen=True)
class Profile:
    """How long to warm up and measure each row (names as in litert's benchmark_model flags).

    Runs continue until both ``num_runs`` calls and ``min_secs`` seconds are reached; no new
    run starts after ``max_secs``.
    """

    name: str
    warmup_runs: int
    warmup_min_secs: float
    num_runs: int
    min_secs: float
    max_secs: float


PROFILES = {
    "full": Profile("full", warmup_runs=5, warmup_min_secs=0.3, num_runs=50, min_secs=1.0, max_secs=20.0),
    "quick": Profile("quick", warmup_runs=3, warmup_min_secs=0.05, num_runs=20, min_secs=0.15, max_secs=3.0),
}


@dataclass(frozen=True)
class Case:
    """One row to measure. ``provider`` is an onnxruntime execution provider or None."""

    component: str
    runtime: str
    precision: str
    batch: int
    threads: int
    provider: str | None = None

    @property
    def device(self) -> str:
        if self.provider is None:
            return "cpu"
        return _DEVICE_OF_PROVIDER.get(self.provider, "accelerator")

    @property
    def file_format(self) -> str:
        return runtimes.FILE_FORMAT[self.runtime]

    def key(self) -> dict:
        return {
            "component": self.component,
            "runtime": self.runtime,
            "format": self.file_format,
            "precision": self.precision,
            "batch": self.batch,
            "num_threads": self.threads,
            "device": self.device,
            "provider": self.provider,
        }


@dataclass(frozen=True)
class Inputs:
    """Real test data, prepared once: uint8 images (N, H, W), model targets and latents."""

    images: np.ndarray  # uint8 (N, H, W) as a device would get them
    targets: np.ndarray  # float32 (N, H, W) in [0, 1]: what the encoder sees (binarized if the model is)
    latents: np.ndarray  # float32 (N, D): posterior means of ``targets``

    def take(self, what: str, n: int) -> np.ndarray:
        """The first ``n`` items of ``what``, repeated cyclically if there are fewer."""
        arr = getattr(self, what)
        idx = np.arange(n) % len(arr)
        return np.ascontiguousarray(arr[idx])


def time_calls(fn: Callable[[], object], runs: int, min_secs: float, max_secs: float) -> list[float]:
    """Per-call wall times in µs: at least ``runs`` calls and ``min_secs``, none started after ``max_secs``.

    The garbage collector is paused so a collection is not billed to one unlucky call.
    """
    samples: list[float] = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        min_end, max_end = start + int(min_secs * 1e9), start + int(max_secs * 1e9)
        now = start
        while (len(samples) < runs or now < min_end) and now <= max_end:
            t0 = time.perf_counter_ns()
            fn()
            now = time.perf_counter_ns()
            samples.append((now - t0) / 1000.0)
    finally:
        if was_enabled:
            gc.enable()
    return samples


def plan(
    *,
    runtime_names: tuple[str, ...],
    components: tuple[str, ...],
    precisions: tuple[str, ...],
    batches: tuple[int, ...],
    threads: tuple[int, ...],
    providers: tuple[str, ...],
) -> tuple[list[Case], list[dict]]:
    """(cases to measure, rows for what cannot run here)."""
    installed = runtimes.available()
    cases: list[Case] = []
    skipped: list[dict] = []
    for runtime in runtime_names:
        if installed.get(runtime) is None:
            reason = f"{_INSTALL[runtime]} is not installed (or cannot be imported here)"
            skipped += [_unavailable(Case(c, runtime, "", 0, 0), reason) for c in components]
            continue
        for component in components:
            for precision in precisions:
                for batch in batches:
                    for n in threads:
                        cases.append(Case(component, runtime, precision, batch, n))
    onnx_cpu_planned = "onnx" in runtime_names and installed.get("onnx") is not None
    available_eps = _onnx_providers() if installed.get("onnx") else []
    for provider in providers:
        if provider == "CPUExecutionProvider" and onnx_cpu_planned:
            continue  # the plain onnx rows already are CPUExecutionProvider rows
        if installed.get("onnx") is None or provider not in available_eps:
            reason = (
                "onnxruntime is not installed"
                if installed.get("onnx") is None
                else f"onnxruntime here has no {provider} (available: {', '.join(available_eps)})"
            )
            skipped += [_unavailable(Case(c, "onnx", "", 0, 0, provider), reason) for c in components]
            continue
        for component in components:
            for precision in precisions:
                for batch in batches:
                    cases.append(Case(component, "onnx", precision, batch, 1, provider))
    return cases, skipped


def measure(case: Case, parts: dict[str, Part], inputs: Inputs, profile: Profile) -> dict:
    """One row: never raises for a combination that cannot run here (it says why instead)."""
    try:
        if case.component == "codec":
            return _measure_codec(case, parts, inputs, profile)
        return _measure_model(case, parts[case.component], inputs, profile)
    except (RuntimeUnavailableError, BundleNotFoundError) as e:
        return _unavailable(case, str(e))
    except _NoFile as e:
        return _unavailable(case, str(e))
    except Exception as e:  # noqa: BLE001 - one broken combination must not lose the other rows
        return {**case.key(), "status": "error", "reason": f"{type(e).__name__}: {e}"}


class _NoFile(Exception):
    """The bundle has no file for this batch size."""


def _measure_model(case: Case, part: Part, inputs: Inputs, profile: Profile) -> dict:
    entry = _file_for(part, case)
    gc.collect()
    resettable = memory.reset_peak()
    rss_before = memory.rss_mb()
    t0 = time.perf_counter_ns()
    net = Network(
        part,
        runtime=case.runtime,
        precision=case.precision,
        threads=case.threads,
        providers=_providers(case),
        batch=entry.batch,
    )
    session = net.session(entry)
    startup_us = (time.perf_counter_ns() - t0) / 1000.0
    _check_provider(case, session)
    if case.component == "encoder":
        x = net.quantize_input(inputs.take("targets", case.batch)[..., None])
    else:
        x = net.quantize_input(inputs.take("latents", case.batch))

    def call():
        session.run(x)

    row = _timed(case, call, startup_us, profile)
    row.update(file=entry.path, file_bytes=entry.size)
    return finish_row(row, rss_before, resettable)


def _measure_codec(case: Case, parts: dict[str, Part], inputs: Inputs, profile: Profile) -> dict:
    files = [_file_for(parts[role], case) for role in ("encoder", "decoder")]
    gc.collect()
    resettable = memory.reset_peak()
    rss_before = memory.rss_mb()
    options = dict(runtime=case.runtime, precision=case.precision, threads=case.threads, providers=_providers(case))
    t0 = time.perf_counter_ns()
    enc = Encoder.load(parts["encoder"].root, **options)
    dec = Decoder.load(parts["decoder"].root, **options)
    startup_us = (time.perf_counter_ns() - t0) / 1000.0
    _check_provider(case, enc.network.session(enc.network.files[0]))
    images = inputs.take("images", case.batch)

    def call():
        dec.decompress(enc.compress(images))

    row = _timed(case, call, startup_us, profile)
    row.update(file=" + ".join(f.path for f in files), file_bytes=sum(f.size for f in files))
    return finish_row(row, rss_before, resettable)


def _timed(case: Case, call, startup_us: float, profile: Profile) -> dict:
    return timed_row(case.key(), case.batch, call, startup_us, profile)


def timed_row(key: dict, batch: int, call: Callable[[], object], startup_us: float, profile: Profile) -> dict:
    """First call, warm-up, timed runs of ``call`` (one batch of ``batch`` images) -> a row."""
    t0 = time.perf_counter_ns()
    call()
    first_us = (time.perf_counter_ns() - t0) / 1000.0
    warm = time_calls(call, profile.warmup_runs, profile.warmup_min_secs, profile.max_secs)
    samples = time_calls(call, profile.num_runs, profile.min_secs, profile.max_secs)
    stats = summarize(samples)
    return {
        **key,
        "status": "ok",
        "startup_latency_us": round(startup_us, 2),
        "warmup_time_us": {"first": round(first_us, 2), "count": len(warm), "avg": round(sum(warm) / len(warm), 2)},
        "inference_time_us": stats,
        "us_per_image": round(stats["avg"] / batch, 3),
        "images_per_s": round(batch / (stats["avg"] * 1e-6), 1),
    }


def finish_row(row: dict, rss_before: float | None, resettable: bool) -> dict:
    """Add size and memory to a timed row (``file_bytes`` must be set)."""
    row["model_size_mb"] = round(row["file_bytes"] / 1e6, 4)
    row["rss_before_mb"] = rss_before
    row["peak_mem_mb"] = memory.peak_mb()
    row["peak_mem_resettable"] = resettable
    gc.collect()
    return row


def _file_for(part: Part, case: Case):
    """The file a row runs: the fixed-batch TFLite file of that batch, or the dynamic ONNX file."""
    files = part.select(case.file_format, case.precision)
    for f in files:
        if f.batch == case.batch:
            return f
    for f in files:
        if f.batch is None:
            return f
    have = ", ".join(str(f.batch) for f in files)
    raise _NoFile(f"no {case.precision} {case.file_format} {part.role} file for batch {case.batch} (has {have})")


def _providers(case: Case) -> list[str] | None:
    """TensorRT hands the operators it cannot build to CUDA, as onnxruntime recommends."""
    if case.provider is None:
        return None
    return [case.provider] + (["CUDAExecutionProvider"] if case.provider == "TensorrtExecutionProvider" else [])


def _check_provider(case: Case, session) -> None:
    """onnxruntime falls back to CPU when an accelerator fails to start; that row is not a GPU row."""
    if case.provider is None:
        return
    active = getattr(session, "providers", [])
    if not active or active[0] != case.provider:
        raise RuntimeUnavailableError(f"{case.provider} did not start (onnxruntime runs {active} instead)")


def _onnx_providers() -> list[str]:
    import onnxruntime  # noqa: PLC0415 - only called when installed

    return list(onnxruntime.get_available_providers())


def _unavailable(case: Case, reason: str) -> dict:
    row = case.key()
    if case.batch == 0:  # the whole runtime/provider is missing: no precision, batch or threads apply
        row.update(precision=None, batch=None, num_threads=None)
    return {**row, "status": "not available", "reason": reason}
