"""The rewritten decoder graphs compute the trained decoder's function, and the ladder's widths scale it."""

from __future__ import annotations

import numpy as np
import pytest


def _random_decoder(width: float = 1.0, seed: int = 0):
    from export.model import make_decoder

    decoder = make_decoder(width=width)
    rng = np.random.default_rng(seed)
    for layer in decoder.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in weights])
    return decoder


@pytest.mark.parametrize("graph", ["conv_d2s", "conv_phases", "conv_phases_dw"])
@pytest.mark.parametrize("width", [0.5, 1.0])
def test_rewritten_graphs_equal_transposed_convolutions_in_float(width, graph):
    from export.graphs import decoder_graph

    decoder = _random_decoder(width)
    z = np.random.default_rng(1).normal(size=(32, decoder.input_shape[-1])).astype(np.float32)
    reference = decoder_graph(decoder, "transpose").predict(z, verbose=0)
    rewritten = decoder_graph(decoder, graph).predict(z, verbose=0)
    assert rewritten.shape == reference.shape
    assert np.max(np.abs(rewritten - reference)) < 1e-5


@pytest.mark.parametrize("k, s", [(3, 2), (3, 1), (4, 2), (5, 2), (3, 3)])
def test_transposed_convolution_rewrite_matches_tensorflow_for_other_kernels_and_strides(k, s):
    import tensorflow as tf

    from export.graphs import DepthToSpace, transposed_as_conv

    rng = np.random.default_rng(k * 10 + s)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    kernel = rng.normal(size=(k, k, 4, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    want = tf.nn.conv2d_transpose(x, kernel, (2, 5 * s, 6 * s, 4), s, padding="SAME").numpy() + bias
    conv = transposed_as_conv(kernel, bias, s)
    padded = tf.pad(x, [(0, 0), conv["pad"][0], conv["pad"][1], (0, 0)])
    y = tf.nn.conv2d(padded, conv["kernel"], 1, padding="VALID") + conv["bias"]
    got = (DepthToSpace(s)(y) if s > 1 else y).numpy()
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 1e-4


@pytest.mark.parametrize("k, s", [(3, 2), (4, 2), (5, 2), (3, 3), (5, 3)])
def test_phase_convolutions_drop_only_zero_taps_and_match_tensorflow(k, s):
    import tensorflow as tf

    from export.graphs import DepthToSpace, _phase_taps, phase_convolutions, transposed_as_conv

    rng = np.random.default_rng(k * 10 + s)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    kernel = rng.normal(size=(k, k, 4, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    want = tf.nn.conv2d_transpose(x, kernel, (2, 5 * s, 6 * s, 4), s, padding="SAME").numpy() + bias
    taps_h, _ = _phase_taps(k, s)
    phases = phase_convolutions(transposed_as_conv(kernel, bias, s), 4, s, taps_h, taps_h)
    assert sum(p["kernel"].shape[0] * p["kernel"].shape[1] for p in phases) == k * k  # every tap once
    outs = [
        tf.nn.conv2d(tf.pad(x, [(0, 0), *p["pad"], (0, 0)]), p["kernel"], 1, padding="VALID") + p["bias"]
        for p in phases
    ]
    got = DepthToSpace(s)(tf.concat(outs, axis=-1)).numpy()
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 1e-4


def test_unknown_decoder_graph_is_refused_with_the_choices():
    from export.graphs import decoder_graph

    with pytest.raises(ValueError, match="transpose, conv_d2s, conv_phases, conv_phases_dw"):
        decoder_graph(_random_decoder(), "winograd")


def test_width_scales_every_layer_and_the_mac_count():
    from export.model import channels, count_macs, make_decoder, make_encoder

    assert channels(1.0) == (32, 64) and channels(0.5) == (16, 32) and channels(2.0) == (64, 128)
    enc, dec = make_encoder(width=0.5), make_decoder(width=0.5)
    assert [layer.filters for layer in enc.layers if hasattr(layer, "filters")] == [16, 32]
    assert [layer.filters for layer in dec.layers if hasattr(layer, "filters")] == [32, 16, 1]
    full, half = count_macs(width=1.0), count_macs(width=0.5)
    assert full["decoder"] == 4_766_720  # the tutorial decoder's 4.77 M MACs
    assert 0.2 < half["decoder"] / full["decoder"] < 0.3


def test_training_config_refuses_widths_off_the_ladder():
    from export.train import TrainConfig

    with pytest.raises(ValueError, match="width must be one of"):
        TrainConfig(width=0.75)
