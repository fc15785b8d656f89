"""How fast can this CPU run the shipped int8 decoder? Each of its layers timed alone, beside it.

    python -m bench.decoder_floor BUNDLE [--rounds 60]

Why: issue 13 asks for the int8 LiteRT decoder at >= 40 GMAC/s ("a plain int8 Conv2D of similar
size reaches ~40 GMAC/s here under XNNPACK"). Whether the shipped file is slow, or simply made of
layers that run no faster on this CPU, is a measurement: this script reads the bundle's batch-1
int8 LiteRT decoder, rebuilds every compute op in it (FULLY_CONNECTED, CONV_2D,
DEPTHWISE_CONV_2D, with LOGISTIC folded into the op before it) as a one-layer Keras model of the
same input and kernel shape, converts each to int8 TFLite by the export's own converter
(``export.convert.to_tflite``: per-channel weights, int8 in and out) with its weightless-file
guard off (a one-layer file is only about 1 to 1.5 KB, near the guard's 1 KiB floor, and still
holds its weights), and times them all and the decoder file in turns on one thread. The
weights are random: XNNPACK's int8 kernels take the same time for any values. Each layer reads
the input its op reads (after any PAD, whose own cost is ~1 µs here), with the op's padding.

Prints one line per layer (µs, MACs, GMAC/s), the sum of the layers alone and the decoder file's
own time. When the two agree, the file adds no overhead of its own, and the sum is the floor of
this network on this CPU and runtime: only fewer or larger layers (another network) go faster.
Needs the ``train`` extra (TensorFlow builds the one-layer files); never imported by
``compressor``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from bench.ladder import best_us_interleaved

COMPUTE_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def decoder_layers(path: str) -> list[dict]:
    """The compute ops of an int8 TFLite file: kind, input shape, kernel shape, MACs, sigmoid after."""
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(model_path=path)
    shapes = {t["index"]: tuple(int(v) for v in t["shape"]) for t in it.get_tensor_details()}
    ops = it._get_ops_details()  # a private but long-standing method: the public API lists tensors only
    layers = []
    for op in ops:
        if op["op_name"] == "LOGISTIC" and layers:
            layers[-1]["sigmoid"] = True
        if op["op_name"] not in COMPUTE_OPS:
            continue
        x, w = shapes[op["inputs"][0]], shapes[op["inputs"][1]]
        out = shapes[op["outputs"][0]]
        if op["op_name"] == "FULLY_CONNECTED":
            macs = int(np.prod(w))
        elif op["op_name"] == "CONV_2D":
            macs = int(np.prod(out[1:3])) * int(np.prod(w))  # (C_out, kh, kw, C_in) per output pixel
        else:  # depthwise (1, kh, kw, C): kh * kw MACs per output value
            macs = int(np.prod(out[1:])) * int(np.prod(w[1:3]))
        layers.append({"op": op["op_name"], "input": x, "kernel": w, "output": out, "macs": macs, "sigmoid": False})
    return layers


def one_layer_model(layer: dict):
    """A Keras model of one layer with the decoder layer's shapes (the int8 cost depends on nothing else)."""
    import keras

    x = inp = keras.Input(layer["input"][1:], batch_size=1)
    if layer["op"] == "FULLY_CONNECTED":
        x = keras.layers.Dense(layer["kernel"][0], activation="relu")(x)
    elif layer["op"] == "CONV_2D":
        c_out, kh, kw, _ = layer["kernel"]
        act = None if layer["sigmoid"] else "relu"
        x = keras.layers.Conv2D(c_out, (kh, kw), padding=_padding(layer, kh, kw), activation=act)(x)
    else:
        _, kh, kw, _ = layer["kernel"]
        x = keras.layers.DepthwiseConv2D((kh, kw), padding=_padding(layer, kh, kw))(x)
    if layer["sigmoid"]:
        x = keras.layers.Activation("sigmoid")(x)
    return keras.Model(inp, x)


def _padding(layer: dict, kh: int, kw: int) -> str:
    """'valid' where the op's output is its input less the kernel's reach, else 'same'."""
    (h, w), (oh, ow) = layer["input"][1:3], layer["output"][1:3]
    return "valid" if (oh, ow) == (h - kh + 1, w - kw + 1) and (kh, kw) != (1, 1) else "same"


def to_int8(model, shape: tuple[int, ...]) -> bytes:
    """Full-integer TFLite with per-channel weights and int8 input/output, by the export's own
    converter, calibrated on 16 random inputs of ``shape`` (batch 1). No size floor: a
    one-layer file may be about 1 KiB and still hold its weights."""
    from export.convert import to_tflite

    representative = np.random.default_rng(0).random((16, *shape[1:]), np.float32)
    return to_tflite(model, representative, min_bytes=0)


def _runner(it):
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    return it.invoke


def measure(bundle: str, rounds: int = 60) -> dict:
    """Every layer's µs alone and the decoder file's, timed in turns (best of ``rounds``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ai_edge_litert import interpreter as litert

    path = str(Path(bundle) / "decoder" / "decoder_int8_b1.tflite")
    layers = decoder_layers(path)
    fns = {}
    for i, layer in enumerate(layers):
        blob = to_int8(one_layer_model(layer), layer["input"])
        fns[i] = _runner(litert.Interpreter(model_content=blob, num_threads=1))
    fns["decoder"] = _runner(litert.Interpreter(model_path=path, num_threads=1))
    best = best_us_interleaved(fns, rounds=rounds, calls=10)
    for i, layer in enumerate(layers):
        layer["us"] = best[i]
        layer["gmac_s"] = round(layer["macs"] / best[i] / 1e3, 1)
    total_macs = sum(layer["macs"] for layer in layers)
    return {
        "decoder_file": path,
        "layers": layers,
        "layers_sum_us": round(sum(best[i] for i in range(len(layers))), 1),
        "decoder_us": best["decoder"],
        "decoder_macs": total_macs,
        "decoder_gmac_s": round(total_macs / best["decoder"] / 1e3, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", help="an exported bundle (its decoder/decoder_int8_b1.tflite is read)")
    p.add_argument("--rounds", type=int, default=60, help="timing rounds (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print("bench.decoder_floor: TensorFlow is not installed; install the train extra: pip install -e '.[train]'")
        return 2
    res = measure(args.bundle, args.rounds)
    print(f"{'layer':34s} {'µs':>7s} {'MMAC':>6s} {'GMAC/s':>7s}")
    for layer in res["layers"]:
        name = f"{layer['op']} {'x'.join(map(str, layer['input'][1:]))} k{'x'.join(map(str, layer['kernel']))}"
        name += " +sigmoid" if layer["sigmoid"] else ""
        print(f"{name:34s} {layer['us']:7.1f} {layer['macs'] / 1e6:6.2f} {layer['gmac_s']:7.1f}")
    print(f"{'sum of the layers alone':34s} {res['layers_sum_us']:7.1f}")
    mmac = res["decoder_macs"] / 1e6
    print(f"{'the decoder file':34s} {res['decoder_us']:7.1f} {mmac:6.2f} {res['decoder_gmac_s']:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
