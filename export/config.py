"""Training defaults, kept TF-free so the CLI can show them without importing TensorFlow."""

DATA = "mnist5k"
LATENT_DIM = 16
EPOCHS = 30
BATCH_SIZE = 100
LEARNING_RATE = 1e-3
SEED = 0
