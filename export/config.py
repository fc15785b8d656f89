"""Training defaults, kept TF-free so the CLI can show them without importing TensorFlow."""

DATA = "mnist5k"
LATENT_DIM = 16
EPOCHS = 30
BATCH_SIZE = 100
LEARNING_RATE = 1e-3
SEED = 0
WIDTH = 1.0
WIDTHS = (0.5, 1.0, 2.0)
"""The model ladder: every layer's channels times this (1 = the tutorial's 32/64)."""
DECODER_GRAPH = "fixed"
"""The decoder graph option an export uses by default: a fixed rule (LiteRT conv_phases_dw, ONNX
Runtime conv_d2s), so exports are reproducible (export/variants.py says why these)."""
DECODER_GRAPH_OPTIONS = ("fixed", "conv_phases", "conv_phases_dw", "conv_d2s", "transpose", "auto")
"""``--decoder-graph``: the fixed rule, one graph of export/graphs.py for both runtimes, or
``auto`` (the fastest on the exporting machine, by timing)."""
