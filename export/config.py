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
DECODER_GRAPH = "conv_d2s"
"""The decoder graph an export ships by default: a fixed rule, so exports are reproducible
(export/variants.py says why this one)."""
DECODER_GRAPH_OPTIONS = ("conv_d2s", "conv_phases", "transpose", "auto")
"""``--decoder-graph``: a graph of export/graphs.py, or ``auto`` (the fastest here, by timing)."""
