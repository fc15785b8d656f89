"""The project's speed targets, read off a result's latency rows.

- the int8 TFLite decoder is at least 15x faster than the Keras ``tf.function`` decoder at
  batch 1 on one thread (needs ``--with-keras``);
- the int8 TFLite decoder takes at most 50 µs per image at its large batch on one thread,
  shown with the decoder's multiply-accumulates per image and the implied GMAC/s.

Computed from the rows rather than measured separately, so the report recomputes the same
numbers for every device from its JSON alone.
"""

from __future__ import annotations

SPEEDUP_GOAL = 15.0
LARGE_BATCH_GOAL_US = 50.0
_TFLITE_RUNTIMES = ("litert", "tflite")


def _find(rows: list[dict], **want) -> list[dict]:
    return [
        r
        for r in rows
        if r.get("status") == "ok" and r.get("device") == "cpu" and all(r.get(k) == v for k, v in want.items())
    ]


def _int8_decoder(rows: list[dict], batch_filter) -> dict | None:
    for runtime in _TFLITE_RUNTIMES:
        found = [r for r in _find(rows, component="decoder", runtime=runtime, precision="int8", num_threads=1)]
        found = [r for r in found if batch_filter(r["batch"])]
        if found:
            return max(found, key=lambda r: r["batch"])
    return None


def compute(result: dict) -> dict:
    """The ``targets`` block (docs/bench.md): each target's value, goal and whether it is met."""
    rows = result.get("latency", [])
    out = {}
    tfl = _int8_decoder(rows, lambda b: b == 1)
    keras = _find(rows, component="decoder", runtime="tensorflow", batch=1, num_threads=1)
    speed = {"goal": f">= {SPEEDUP_GOAL:g}x", "value": None, "met": None}
    if tfl is None:
        speed["note"] = "no int8 TFLite decoder row at batch 1, 1 thread"
    elif not keras:
        speed["note"] = "Keras baseline not measured (run with --with-keras RUN on a machine with TensorFlow)"
    else:
        ratio = keras[0]["inference_time_us"]["avg"] / tfl["inference_time_us"]["avg"]
        speed.update(
            value=round(ratio, 2),
            met=ratio >= SPEEDUP_GOAL,
            tflite_us=tfl["inference_time_us"]["avg"],
            tflite_runtime=tfl["runtime"],
            keras_us=keras[0]["inference_time_us"]["avg"],
        )
    out["decoder_int8_speedup_vs_keras_b1"] = speed

    large = _int8_decoder(rows, lambda b: b is not None and b > 1)
    macs = (result.get("bundle", {}).get("macs") or {}).get("decoder")
    batch = {"goal": f"<= {LARGE_BATCH_GOAL_US:g} us/image", "value": None, "met": None, "macs_per_image": macs}
    if large is None:
        batch["note"] = "no int8 TFLite decoder row at a batch above 1 on 1 thread"
    else:
        us = large["us_per_image"]
        batch.update(value=us, met=us <= LARGE_BATCH_GOAL_US, batch=large["batch"], runtime=large["runtime"])
        batch["gmac_per_s"] = round(macs / us / 1e3, 2) if macs else None
    out["decoder_int8_us_per_image_large_batch"] = batch
    return out


def describe(targets: dict) -> list[str]:
    """One line per target, for the console and the report."""
    lines = []
    s = targets.get("decoder_int8_speedup_vs_keras_b1", {})
    if s.get("value") is None:
        lines.append(f"int8 TFLite decoder vs Keras tf.function (batch 1, 1 thread): {s.get('note', 'n/a')}")
    else:
        lines.append(
            f"int8 TFLite decoder vs Keras tf.function (batch 1, 1 thread): {s['value']:.1f}x faster "
            f"({s['tflite_us']:.1f} vs {s['keras_us']:.1f} us per call; goal {s['goal']}: "
            f"{'met' if s['met'] else 'NOT met'})"
        )
    b = targets.get("decoder_int8_us_per_image_large_batch", {})
    if b.get("value") is None:
        lines.append(f"int8 TFLite decoder at a large batch: {b.get('note', 'n/a')}")
    else:
        gmacs = f", {b['gmac_per_s']:.1f} GMAC/s" if b.get("gmac_per_s") else ""
        lines.append(
            f"int8 TFLite decoder, batch {b['batch']}, 1 thread: {b['value']:.1f} us/image "
            f"({b['macs_per_image']:,} MACs/image{gmacs}; goal {b['goal']}: {'met' if b['met'] else 'NOT met'})"
        )
    return lines
