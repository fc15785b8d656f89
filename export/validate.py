"""Run every exported file in its own runtime and compare it with the Keras model.

Float32 files must match Keras within an absolute tolerance on every output value. Int8 files
are judged by what they are for: the reconstruction they lead to must stay within +3% mean
BCE and +0.3 percentage points of pixel error (threshold 0.5) of the Keras reconstruction.
The int8 encoder is judged through the Keras decoder, the int8 decoder from Keras latents,
so a failure points at one file. Results go into the bundle (validation.json/.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from compressor.bundle import Part
from compressor.metrics import bce_nats, pixel_error
from compressor.runtime.network import Network

ATOL_LATENT = 1e-4
ATOL_PROBS = 1e-4
BCE_RATIO = 1.03
PIXEL_ERROR_PP = 0.3
RUNTIME_FOR = {"tflite": "litert", "onnx": "onnx"}


class ValidationFailedError(RuntimeError):
    """At least one exported file failed its check; the table says which and by how much."""


class AtolError(ValidationFailedError):
    """A float32 file differs from Keras by more than the stated absolute tolerance."""


class QualityError(ValidationFailedError):
    """An int8 file loses more reconstruction quality than allowed."""


@dataclass(frozen=True)
class Check:
    file: str
    runtime: str
    metric: str
    value: float
    limit: float
    ok: bool

    def row(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"| {mark} | {self.file} | {self.runtime} | {self.metric} | {self.value:.6g} | {self.limit:.6g} |"


def validate(parts: dict[str, Part], keras_encode, keras_decode, images: np.ndarray) -> list[Check]:
    """Check every file of both parts; ``keras_encode``/``keras_decode`` are float callables."""
    ref_latent = keras_encode(images)
    ref_probs = keras_decode(ref_latent)
    ref_bce, ref_err = bce_nats(images, ref_probs), pixel_error(images, ref_probs)
    checks = [
        Check("keras (reference)", "tensorflow", "bce_nats", ref_bce, ref_bce, True),
        Check("keras (reference)", "tensorflow", "pixel_error_%", 100 * ref_err, 100 * ref_err, True),
    ]
    for role, part in parts.items():
        for entry in part.files:
            runtime = RUNTIME_FOR[entry.format]
            net = Network(part, runtime=runtime, precision=entry.precision, batch=entry.batch)
            if role == "encoder":
                out = net.run(images)
                probs = keras_decode(out)
                ref_out, atol = ref_latent, ATOL_LATENT
            else:
                out = net.run(ref_latent)
                probs = out
                ref_out, atol = ref_probs, ATOL_PROBS
            name = entry.path
            if entry.precision == "fp32":
                diff = float(np.max(np.abs(out.reshape(ref_out.shape) - ref_out)))
                checks.append(Check(name, runtime, "max_abs_diff", diff, atol, diff <= atol))
            else:
                bce, err = bce_nats(images, probs), pixel_error(images, probs)
                checks.append(Check(name, runtime, "bce_nats", bce, ref_bce * BCE_RATIO, bce <= ref_bce * BCE_RATIO))
                limit = 100 * ref_err + PIXEL_ERROR_PP
                checks.append(Check(name, runtime, "pixel_error_%", 100 * err, limit, 100 * err <= limit))
    return checks


def end_to_end(parts: dict[str, Part], images: np.ndarray, precision: str = "int8") -> dict[str, dict]:
    """For information: encoder and decoder of the same runtime chained, per runtime."""
    out = {}
    for runtime in RUNTIME_FOR.values():
        enc = Network(parts["encoder"], runtime=runtime, precision=precision)
        dec = Network(parts["decoder"], runtime=runtime, precision=precision)
        probs = dec.run(enc.run(images))
        out[f"{runtime}-{precision}"] = {
            "bce_nats": bce_nats(images, probs),
            "pixel_error_%": 100 * pixel_error(images, probs),
        }
    return out


def table(checks: list[Check]) -> str:
    head = "| ok | file | runtime | metric | value | limit |\n|---|---|---|---|---|---|"
    return "\n".join([head] + [c.row() for c in checks])


def raise_on_failure(checks: list[Check]) -> None:
    failed = [c for c in checks if not c.ok]
    if not failed:
        return
    kinds = {AtolError if c.metric == "max_abs_diff" else QualityError for c in failed}
    cls = kinds.pop() if len(kinds) == 1 else ValidationFailedError
    detail = "; ".join(f"{c.file} ({c.runtime}) {c.metric} {c.value:.6g} > {c.limit:.6g}" for c in failed)
    raise cls(f"{len(failed)} validation check(s) failed: {detail}")


def as_json(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
