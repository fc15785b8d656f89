"""Equivalent inference graphs of the trained decoder: same weights, same float function.

Why: int8 runtimes run a plain convolution much faster than a transposed one (XNNPACK
reaches ~2x the GMAC/s on CONV_2D that it reaches on TRANSPOSE_CONV here), so the exported
decoder may be a *rewritten* graph of the very same trained Keras weights. Every graph here
is exact in real arithmetic; ``export/variants.py`` checks each against Keras in float and
keeps, per runtime, the fastest whose float file matches.

The rewrite of a Conv2DTranspose (stride ``s``, kernel ``k``, padding 'same', TensorFlow's
definition) as a convolution followed by depth-to-space: output pixel ``o = s*m + a``
(phase ``a`` in ``0..s-1``) sums ``x[m - d] * w[t]`` over the taps ``t = s*d + a + pb``
that fall in ``0..k-1`` (``pb = (k - s) // 2``, TensorFlow's 'same' padding before). So all
``s*s`` phases of output row ``m`` read input rows ``m - dmax .. m - dmin``: a valid
convolution over the input padded by ``(dmax, -dmin)`` with a ``(dmax - dmin + 1)``-tap
window, whose ``s*s*C_out`` output channels hold the phases in depth-to-space order
(``(a_h * s + a_w) * C_out + c``), and taps that a phase does not use are zero. A 3x3,
stride-2 layer becomes a 2x2 convolution with 4x the output channels (16 taps of which 9
are non-zero); a stride-1 layer becomes an ordinary 'same' convolution with the kernel
flipped. Bias and ReLU commute with the channel shuffle, so they fuse into the convolution.

``conv_phases_dw`` also rewrites a stride-1 layer with *one* output channel (the decoder's
last, 32 -> 1 logits) as a depthwise convolution with the same taps followed by a 1x1
convolution whose weights are all 1 (plus the bias): exact in real arithmetic, since
``sum_c sum_t w[t, c] x[t, c]`` is the sum over ``c`` of each channel's own 3x3 filter. Why:
XNNPACK's int8 convolution kernels compute 8 or 16 output channels at a time, so a 1-channel
convolution runs at 1/8 of their speed on AVX2 (28x28x32 -> 1: 45 us, as long as 32 -> 8),
while its depthwise form is vectorised over the 32 channels (25 us both layers, measured in
one run). The int8 file rounds the depthwise outputs once more; the export's quality checks
judge that like any other int8 file.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

#: Decoder graph variants, in the order they are tried. ``transpose`` is the trained graph.
DECODER_GRAPHS = ("transpose", "conv_d2s", "conv_phases", "conv_phases_dw")


def transposed_as_conv(kernel: np.ndarray, bias: np.ndarray, stride: int) -> dict:
    """A Conv2DTranspose's weights (kh, kw, C_out, C_in) -> an equivalent conv + depth-to-space.

    Returns ``kernel`` (wh, ww, C_in, s*s*C_out), ``bias`` (s*s*C_out,) and ``pad``
    ((top, bottom), (left, right)) for a *valid* convolution over the zero-padded input.
    """
    kh, kw, c_out, c_in = kernel.shape
    taps_h, pad_h = _phase_taps(kh, stride)
    taps_w, pad_w = _phase_taps(kw, stride)
    wh, ww = sum(pad_h) + 1, sum(pad_w) + 1
    out = np.zeros((wh, ww, c_in, stride * stride * c_out), kernel.dtype)
    for a_h in range(stride):
        for a_w in range(stride):
            phase = (a_h * stride + a_w) * c_out
            for j_h, t_h in taps_h[a_h]:
                for j_w, t_w in taps_w[a_w]:
                    out[j_h, j_w, :, phase : phase + c_out] = kernel[t_h, t_w].T
    return {"kernel": out, "bias": np.tile(bias, stride * stride), "pad": (pad_h, pad_w)}


def _phase_taps(k: int, s: int) -> tuple[list[list[tuple[int, int]]], tuple[int, int]]:
    """Per phase ``a``: the (window index, kernel tap) pairs; and the (before, after) padding."""
    pb = max(k - s, 0) // 2
    per_phase = [[(d, s * d + a + pb) for d in range(-k, k + 1) if 0 <= s * d + a + pb < k] for a in range(s)]
    ds = [d for taps in per_phase for d, _ in taps]
    dmax, dmin = max(ds), min(ds)
    return [[(dmax - d, t) for d, t in taps] for taps in per_phase], (dmax, -dmin)


def phase_convolutions(conv: dict, c_out: int, stride: int, taps_h, taps_w) -> list[dict]:
    """:func:`transposed_as_conv`'s convolution split by output phase, dropping the zero taps.

    Phase ``(a_h, a_w)`` (in depth-to-space order) only reads the window rows/columns of its
    own taps, a contiguous range ``j0..j1`` of the full window: a *valid* convolution of that
    sub-kernel over the input padded by ``(pad_before - j0, pad_after - (window - 1 - j1))``.
    For a 3x3 stride-2 layer the four phases are 2x2, 2x1, 1x2 and 1x1 convolutions: 9 taps
    instead of the 16 that the single 2x2 convolution with 4x the channels multiplies (7 of
    them by zero), so 44 % fewer multiply-accumulates for the same numbers.
    """
    kernel = conv["kernel"]
    wh, ww = kernel.shape[:2]
    (top, bottom), (left, right) = conv["pad"]
    out = []
    for a_h in range(stride):
        for a_w in range(stride):
            rows = sorted(j for j, _ in taps_h[a_h])
            cols = sorted(j for j, _ in taps_w[a_w])
            phase = (a_h * stride + a_w) * c_out
            out.append(
                {
                    "kernel": kernel[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1, :, phase : phase + c_out],
                    "bias": conv["bias"][phase : phase + c_out],
                    "pad": (
                        (top - rows[0], bottom - (wh - 1 - rows[-1])),
                        (left - cols[0], right - (ww - 1 - cols[-1])),
                    ),
                }
            )
    return out


def decoder_graph(decoder, variant: str):
    """The Keras probability decoder (latent -> sigmoid probabilities) as ``variant``."""
    from export.model import probability_decoder

    if variant == "transpose":
        return probability_decoder(decoder)
    if variant in ("conv_d2s", "conv_phases", "conv_phases_dw"):
        return _conv_d2s_decoder(
            decoder, split_phases=variant != "conv_d2s", depthwise_output=variant == "conv_phases_dw", graph=variant
        )
    raise ValueError(f"unknown decoder graph {variant!r}; choose one of {', '.join(DECODER_GRAPHS)}")


def _conv_d2s_decoder(decoder, *, split_phases: bool = False, depthwise_output: bool = False, graph: str = "conv_d2s"):
    """Every Conv2DTranspose of ``decoder`` rewritten as (pad +) Conv2D (+ depth-to-space); with
    ``split_phases``, a stride-s layer as s*s phase convolutions concatenated before depth-to-space;
    with ``depthwise_output``, a stride-1 layer with one output channel as depthwise + all-ones 1x1."""
    latent = keras.Input(shape=decoder.input_shape[1:], name="latent")
    x = latent
    weights: list[tuple[str, list[np.ndarray]]] = []
    for layer in decoder.layers:
        if not isinstance(layer, keras.layers.Conv2DTranspose):
            x = layer.__class__.from_config(layer.get_config())(x)
            weights.append((layer.name, layer.get_weights()))
            continue
        (stride, stride_w) = layer.strides
        if stride != stride_w or layer.padding != "same" or layer.dilation_rate != (1, 1):
            raise ValueError(f"{layer.name}: only square strides with padding 'same' can be rewritten")
        kernel, bias = layer.get_weights()
        conv = transposed_as_conv(kernel, bias, stride)
        if split_phases and stride > 1:
            taps_h, _ = _phase_taps(kernel.shape[0], stride)
            taps_w, _ = _phase_taps(kernel.shape[1], stride)
            phases = []
            for i, ph in enumerate(phase_convolutions(conv, kernel.shape[2], stride, taps_h, taps_w)):
                y = x
                if any(ph["pad"][0] + ph["pad"][1]):
                    y = keras.layers.ZeroPadding2D(ph["pad"], name=f"{layer.name}_pad{i}")(y)
                name = f"{layer.name}_conv{i}"
                activation = layer.get_config()["activation"]
                phases.append(
                    keras.layers.Conv2D(kernel.shape[2], ph["kernel"].shape[:2], activation=activation, name=name)(y)
                )
                weights.append((name, [ph["kernel"], ph["bias"]]))
            x = keras.layers.Concatenate(name=f"{layer.name}_phases")(phases)
            x = DepthToSpace(stride, name=f"{layer.name}_d2s")(x)
            continue
        (top, bottom), (left, right) = conv["pad"]
        wh, ww = conv["kernel"].shape[:2]
        symmetric = top == bottom == (wh - 1) // 2 and left == right == (ww - 1) // 2 and wh % 2 and ww % 2
        if not symmetric:
            x = keras.layers.ZeroPadding2D(((top, bottom), (left, right)), name=f"{layer.name}_pad")(x)
        if depthwise_output and stride == 1 and conv["kernel"].shape[-1] == 1:
            taps, c_in = conv["kernel"], conv["kernel"].shape[2]
            padding = "same" if symmetric else "valid"
            x = keras.layers.DepthwiseConv2D((wh, ww), padding=padding, name=f"{layer.name}_dw")(x)
            weights.append((f"{layer.name}_dw", [taps, np.zeros(c_in, taps.dtype)]))
            activation = layer.get_config()["activation"]
            x = keras.layers.Conv2D(1, 1, activation=activation, name=f"{layer.name}_sum")(x)
            weights.append((f"{layer.name}_sum", [np.ones((1, 1, c_in, 1), taps.dtype), conv["bias"]]))
            continue
        x = keras.layers.Conv2D(
            conv["kernel"].shape[-1],
            (wh, ww),
            padding="same" if symmetric else "valid",
            activation=layer.get_config()["activation"],
            name=f"{layer.name}_conv",
        )(x)
        weights.append((f"{layer.name}_conv", [conv["kernel"], conv["bias"]]))
        if stride > 1:
            x = DepthToSpace(stride, name=f"{layer.name}_d2s")(x)
    probs = keras.layers.Activation("sigmoid", name="probs")(x)
    model = keras.Model(latent, probs, name=f"probability_decoder_{graph}")
    for name, w in weights:
        if w:
            model.get_layer(name).set_weights(w)
    return model


class DepthToSpace(keras.layers.Layer):
    """tf.nn.depth_to_space as a layer: TFLite DEPTH_TO_SPACE, ONNX DepthToSpace (DCR order)."""

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = block

    def call(self, x):
        return tf.nn.depth_to_space(x, self.block)

    def compute_output_shape(self, shape):
        b = self.block
        n, h, w, c = shape
        return (n, None if h is None else h * b, None if w is None else w * b, c // (b * b))

    def get_config(self):
        return super().get_config() | {"block": self.block}
