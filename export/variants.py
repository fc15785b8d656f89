"""Choose, per runtime, which equivalent decoder graph and weight quantization to ship.

Candidates are the graphs of :mod:`export.graphs` (the trained transposed convolutions; their
exact rewrite as convolution + depth-to-space, ``conv_d2s``; or as one convolution per output
phase + concat + depth-to-space, ``conv_phases``, which skips the rewrite's zero taps) crossed
with per-channel or per-tensor int8 weights. Each candidate is converted for the runtime, then

1. its float32 file must match the trained Keras decoder within ``validate.ATOL_PROBS`` on
   held-out latents (the graphs are the same function; this proves the rewrite);
2. its int8 file must meet the same quality limits as the bundle's int8 checks;
3. the choice among those that pass is made by the export's ``decoder_graph`` option:

   - ``fixed`` (the default): LiteRT ships ``conv_phases_dw``, ONNX Runtime ``conv_d2s``
     (:data:`FIXED`), with per-channel int8 weights for LiteRT and per-tensor for ONNX Runtime
     (:data:`WEIGHTS`; the other weights only if those fail the quality checks). A fixed rule,
     so two exports of one training run ship the same files and the same model id on any
     machine. Why these: measured at width 1, batch 1, one thread (``--decoder-graph auto``'s
     table) on the 2-core AVX2 EPYC (no VNNI) under load, LiteRT ran conv_phases_dw in 147 µs,
     conv_phases in 167, the trained graph in 193 and conv_d2s in 239; ONNX Runtime ran conv_d2s
     per-tensor in 230 µs, the trained graph in 235 and the phase graphs in 374-402 (their
     per-phase convolutions are small calls). On an AVX-512 VNNI EPYC (an earlier session,
     before conv_phases_dw existed) LiteRT ran conv_phases in 50 µs, conv_d2s in 62-66 and
     the trained graph in 78.
   - a graph name: that graph for both runtimes, weights as above.
   - ``auto``: every graph, and the fastest int8 file at batch 1 (one thread, interleaved
     timing) wins -- within ``MARGIN`` of the fastest the trained graph with per-channel
     weights is preferred, then per-channel weights. This follows the CPU (and the load) of
     the exporting machine, so two exports may choose differently and give different model ids.

The table of every candidate tried goes into the bundle (validation.md/json), with the option
and the rule, and the choice into the manifest. Lossless mode is calibrated afterwards on the
*chosen* int8 LiteRT file (``export/pipeline.py``), so its table always matches the decoder
that ships.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from compressor.metrics import bce_nats, pixel_error
from compressor.runtime.sessions import open_session
from export import convert, validate
from export.config import DECODER_GRAPH, DECODER_GRAPH_OPTIONS
from export.graphs import DECODER_GRAPHS

MARGIN = 0.10
DEFAULT = ("transpose", True)
TIMING_ROUNDS = 25
TIMING_CALLS = 20
AUTO = "auto"
FIXED_OPTION = "fixed"
#: The export's ``decoder_graph`` option: FIXED_OPTION (the default), a graph of
#: export.graphs for both runtimes, or AUTO (timing).
OPTIONS = DECODER_GRAPH_OPTIONS
DEFAULT_OPTION = DECODER_GRAPH
#: The fixed rule: the graph each file format ships.
FIXED = {"tflite": "conv_phases_dw", "onnx": "conv_d2s"}
#: The int8 weights per file format (True = per-channel), first choice first, for every
#: option but AUTO.
WEIGHTS = {"tflite": (True, False), "onnx": (False, True)}
RULE = (
    "float32 must match Keras, int8 must pass the quality checks; the fastest int8 file at batch 1 is kept, "
    f"preferring, within {MARGIN:.0%} of the fastest, the trained graph and then per-channel weights"
)


def rule(option: str) -> str:
    """How ``option`` chooses, in words, for validation.md."""
    if option == AUTO:
        return f"--decoder-graph {AUTO}: {RULE}"
    graphs = (
        f"LiteRT ships {FIXED['tflite']} and ONNX Runtime {FIXED['onnx']}"
        if option == FIXED_OPTION
        else f"both runtimes ship {option}"
    )
    return (
        f"--decoder-graph {option}, a fixed rule: {graphs}, with per-channel int8 weights for LiteRT and "
        "per-tensor for ONNX Runtime (the other weights only if those fail the quality checks); float32 must "
        "match Keras, int8 must pass the quality checks; the times are for information"
    )


@dataclass(frozen=True)
class Trial:
    """One candidate in one runtime: does it match, how good, how fast."""

    runtime: str
    graph: str
    per_channel: bool
    fp32_max_abs_diff: float
    int8_bce_nats: float
    int8_pixel_error_pct: float
    int8_us_batch1: float
    ok: bool
    chosen: bool = False

    @property
    def weights(self) -> str:
        return "per-channel" if self.per_channel else "per-tensor"

    def row(self) -> str:
        mark = "✓" if self.ok else "✗"
        chosen = "**chosen**" if self.chosen else ""
        return (
            f"| {mark} | {self.runtime} | {self.graph} | {self.weights} | {self.fp32_max_abs_diff:.2g} | "
            f"{self.int8_pixel_error_pct:.3f} | {self.int8_us_batch1:.1f} | {chosen} |"
        )


@dataclass
class Choice:
    """The chosen (graph, per_channel) per file format, the trials, and the blobs already made."""

    tflite: tuple[str, bool]
    onnx: tuple[str, bool]
    trials: list[Trial]
    blobs: dict  # (format, graph, per_channel, precision, batch) -> bytes, reusable by the pipeline
    option: str = AUTO

    def for_format(self, fmt: str) -> tuple[str, bool]:
        return self.tflite if fmt == "tflite" else self.onnx

    def table(self) -> str:
        head = (
            "| ok | runtime | decoder graph | int8 weights | fp32 max abs diff vs Keras | int8 pixel error % "
            "| int8 µs/image, batch 1 | |\n|---|---|---|---|---|---|---|---|"
        )
        return "\n".join([head] + [t.row() for t in self.trials])

    def as_json(self) -> dict:
        return {
            "chosen": {
                "tflite": {"graph": self.tflite[0], "per_channel": self.tflite[1]},
                "onnx": {"graph": self.onnx[0], "per_channel": self.onnx[1]},
            },
            "option": self.option,
            "rule": rule(self.option),
            "margin": MARGIN,
            "trials": [asdict(t) for t in self.trials],
        }


def choose(
    decoder,
    calibration: np.ndarray,
    latents: np.ndarray,
    images: np.ndarray,
    *,
    option: str = DEFAULT_OPTION,
    per_channel=(True, False),
    log=print,
) -> Choice:
    """Try the candidates ``option`` allows on ``latents`` (held-out Keras latents of ``images``)."""
    from export.graphs import decoder_graph

    if option not in OPTIONS:
        raise ValueError(f"unknown decoder graph option {option!r}; choose one of {', '.join(OPTIONS)}")
    wanted = {fmt: _graphs_for(option, fmt) for fmt in ("tflite", "onnx")}
    # the trained graph's own output is the reference every candidate must match in float
    ref_probs = decoder_graph(decoder, "transpose").predict(latents, batch_size=500, verbose=0)
    blobs: dict = {}
    measured: dict[str, list[tuple[tuple[str, bool], dict]]] = {"tflite": [], "onnx": []}
    for graph in DECODER_GRAPHS:
        formats = [fmt for fmt in ("tflite", "onnx") if graph in wanted[fmt]]
        if not formats:
            continue
        keras_graph = decoder_graph(decoder, graph)
        log(f"  decoder graph {graph}: {' and '.join(f.upper() if f == 'onnx' else 'TFLite' for f in formats)}")
        if "tflite" in formats:
            fixed = convert.with_fixed_batch(keras_graph, 1, "latent", "probs")
            fp32 = convert.to_tflite(fixed)
            blobs["tflite", graph, True, "fp32", 1] = blobs["tflite", graph, False, "fp32", 1] = fp32
        if "onnx" in formats:
            dyn = convert.with_fixed_batch(keras_graph, None, "latent", "probs")
            onnx_fp32 = convert.to_onnx(dyn, "latent", "probs")
            blobs["onnx", graph, True, "fp32", None] = blobs["onnx", graph, False, "fp32", None] = onnx_fp32
        for pc in per_channel:
            if "tflite" in formats:
                blobs["tflite", graph, pc, "int8", 1] = convert.to_tflite(fixed, calibration, per_channel=pc)
            if "onnx" in formats:
                blobs["onnx", graph, pc, "int8", None] = convert.quantize_onnx(
                    onnx_fp32, "latent", calibration, per_channel=pc
                )
            for fmt, batch in (("tflite", 1), ("onnx", None)):
                if fmt in formats:
                    quality = _quality(blobs, fmt, graph, pc, batch, latents, images, ref_probs)
                    measured[fmt].append(((graph, pc), quality))

    trials: list[Trial] = []
    chosen: dict[str, tuple[str, bool]] = {}
    for fmt, rows in measured.items():
        speeds = _interleaved_us([r["int8_session"] for _, r in rows], latents[:1])
        fmt_trials = []
        for ((graph, pc), r), us in zip(rows, speeds):
            ok = r["fp32_diff"] <= validate.ATOL_PROBS and r["quality_ok"]
            fmt_trials.append(
                Trial(validate.RUNTIME_FOR[fmt], graph, pc, r["fp32_diff"], r["bce"], r["err"], us, bool(ok))
            )
        best = _pick(fmt_trials) if option == AUTO else _fixed(fmt_trials, WEIGHTS[fmt])  # one graph per format
        chosen[fmt] = (best.graph, best.per_channel)
        trials += [Trial(**(asdict(t) | {"chosen": (t.graph, t.per_channel) == chosen[fmt]})) for t in fmt_trials]
    return Choice(chosen["tflite"], chosen["onnx"], trials, blobs, option)


def _graphs_for(option: str, fmt: str) -> tuple[str, ...]:
    """The graphs ``option`` converts for file format ``fmt``."""
    if option == AUTO:
        return DECODER_GRAPHS
    return (FIXED[fmt],) if option == FIXED_OPTION else (option,)


def _fixed(trials: list[Trial], weights: tuple[bool, ...]) -> Trial:
    """The fixed rule: the first of ``weights`` whose candidate passes (else the first, which
    then fails the bundle's own validation by name). Timing plays no part."""
    by_weights = {t.per_channel: t for t in trials}
    return next((by_weights[pc] for pc in weights if by_weights[pc].ok), by_weights[weights[0]])


def _pick(trials: list[Trial]) -> Trial:
    """Among passing candidates within MARGIN of the fastest: the default, else per-channel, else the fastest."""
    passing = [t for t in trials if t.ok]
    if not passing:
        return next((t for t in trials if (t.graph, t.per_channel) == DEFAULT), trials[0])
    fastest = min(t.int8_us_batch1 for t in passing)
    close = [t for t in passing if t.int8_us_batch1 <= fastest * (1 + MARGIN)]
    return min(close, key=lambda t: ((t.graph, t.per_channel) != DEFAULT, not t.per_channel, t.int8_us_batch1))


def _quality(blobs, fmt, graph, pc, batch, latents, images, ref_probs) -> dict:
    runtime = validate.RUNTIME_FOR[fmt]
    fp32 = open_session(blobs[fmt, graph, pc, "fp32", batch], fmt, runtime, threads=1)
    int8 = open_session(blobs[fmt, graph, pc, "int8", batch], fmt, runtime, threads=1)
    out32 = _run(fp32, latents)
    probs8 = _run(int8, latents)
    ref_bce, ref_err = bce_nats(images, ref_probs), pixel_error(images, ref_probs)
    bce, err = bce_nats(images, probs8), pixel_error(images, probs8)
    return {
        "fp32_diff": float(np.max(np.abs(out32.reshape(ref_probs.shape) - ref_probs))),
        "bce": bce,
        "err": 100 * err,
        "quality_ok": bce <= ref_bce * validate.BCE_RATIO and 100 * err <= 100 * ref_err + validate.PIXEL_ERROR_PP,
        "int8_session": int8,
    }


def _run(sess, latents: np.ndarray) -> np.ndarray:
    """Float latents through one session (quantizing around int8 files), any batch."""
    spec_in, spec_out = sess.input, sess.output
    x = latents
    if spec_in.dtype == "int8":
        x = np.clip(np.rint(latents / spec_in.scale) + spec_in.zero_point, -128, 127).astype(np.int8)
    else:
        x = x.astype(np.float32)
    if sess.batch is None:
        y = sess.run(x)
    else:
        y = np.concatenate([sess.run(x[i : i + 1]) for i in range(len(x))])
    if spec_out.dtype == "int8" and spec_out.scale:
        y = (y.astype(np.float32) - spec_out.zero_point) * np.float32(spec_out.scale)
    return y


def _interleaved_us(sessions, one_latent: np.ndarray) -> list[float]:
    """Best µs per call of each int8 session at batch 1, the sessions timed in turns."""
    inputs = []
    for s in sessions:
        spec = s.input
        q = np.clip(np.rint(one_latent / spec.scale) + spec.zero_point, -128, 127) if spec.scale else one_latent
        inputs.append(np.ascontiguousarray(q, dtype=np.int8 if spec.dtype == "int8" else np.float32))
    best = [float("inf")] * len(sessions)
    for _ in range(TIMING_ROUNDS):
        for i, (s, x) in enumerate(zip(sessions, inputs)):
            t0 = time.perf_counter()
            for _ in range(TIMING_CALLS):
                s.run(x)
            best[i] = min(best[i], (time.perf_counter() - t0) / TIMING_CALLS * 1e6)
    return [round(b, 1) for b in best]
