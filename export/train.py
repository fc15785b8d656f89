"""Train the CVAE and write a run directory that ``python -m export export`` turns into a bundle.

A run directory holds::

    config.json           what was trained on and how (enough to rebuild the models)
    encoder.weights.h5    best-epoch weights (Keras 3 format)
    decoder.weights.h5
    metrics.json          per-epoch train loss and validation ELBO, the chosen epoch, its test ELBO, wall time
    reconstructions.png   test digits (odd rows) above their reconstructions (even rows)
    samples.png           decoder(z) for z drawn from the prior N(0, I)

Determinism: all randomness (weight init, shuffling, reparameterization noise) comes from
``seed``, and TensorFlow's op determinism is switched on, so the same seed on the same
machine gives the same weights.

Model selection never sees the test split: a validation set (``VALIDATION_FRACTION`` of the
training split, a fixed shuffle of ``seed``) is held out of training, the epoch with the best
validation ELBO is kept, and the test ELBO of that epoch is measured once, at the end.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.io.atomic import atomic_write_json
from compressor.io.files import write_png
from export import config as D


@dataclass(frozen=True)
class TrainConfig:
    data: str = D.DATA
    binarize: bool = True
    latent_dim: int = D.LATENT_DIM
    epochs: int = D.EPOCHS
    batch_size: int = D.BATCH_SIZE
    learning_rate: float = D.LEARNING_RATE
    seed: int = D.SEED
    width: float = D.WIDTH

    def __post_init__(self):
        if self.width not in D.WIDTHS:
            raise ValueError(f"width must be one of {', '.join(map(str, D.WIDTHS))}, got {self.width}")
        for name in ("latent_dim", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


#: Share of the training split held out to choose the best epoch.
VALIDATION_FRACTION = 0.1


def train(config: TrainConfig, run_dir: str | Path, *, progress: bool = True, dataset=None) -> dict:
    """Train, keep the best epoch, write the run directory, return the metrics dict."""
    import keras
    import tensorflow as tf

    from export import datasets
    from export.model import make_decoder, make_encoder, negative_elbo

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    data = dataset if dataset is not None else datasets.load(config.data, binarize=config.binarize)
    shape = data.image_shape
    fit_idx, val_idx = datasets.split_indices(
        len(data.train), max(1, round(len(data.train) * VALIDATION_FRACTION)), config.seed + 1
    )
    fit, val = data.train[fit_idx], data.train[val_idx]
    encoder = make_encoder(shape, config.latent_dim, config.width)
    decoder = make_decoder(shape, config.latent_dim, config.width)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    variables = encoder.trainable_variables + decoder.trainable_variables
    noise = tf.random.Generator.from_seed(config.seed)

    @tf.function(reduce_retracing=True)
    def step(x):
        eps = noise.normal((tf.shape(x)[0], config.latent_dim))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(negative_elbo(encoder, decoder, x, eps)[0])
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    history, best = [], None
    best_weights = None
    start = time.perf_counter()
    n_batches = -(-len(fit) // config.batch_size)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        order = np.random.RandomState(config.seed + epoch).permutation(len(fit))
        losses = []
        for b in range(n_batches):
            batch = fit[order[b * config.batch_size : (b + 1) * config.batch_size]]
            losses.append(float(step(tf.constant(batch))))
            if progress and sys.stderr.isatty():
                _bar(epoch, config.epochs, b + 1, n_batches, losses[-1])
        valid = evaluate(encoder, decoder, val, seed=config.seed)
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "val_elbo": valid["elbo"],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        history.append(row)
        if best is None or row["val_elbo"] > best["val_elbo"]:
            best, best_weights = row, (encoder.get_weights(), decoder.get_weights())
        if progress:
            print(
                f"\repoch {epoch:3d}/{config.epochs}  train loss {row['train_loss']:8.3f}  "
                f"validation ELBO {row['val_elbo']:8.3f}  ({row['seconds']:.1f}s){' *' if best is row else ''}",
                file=sys.stderr,
            )
    wall = time.perf_counter() - start
    encoder.set_weights(best_weights[0])
    decoder.set_weights(best_weights[1])
    test = evaluate(encoder, decoder, data.test, seed=config.seed)  # once, for the chosen epoch

    encoder.save_weights(run_dir / "encoder.weights.h5")
    decoder.save_weights(run_dir / "decoder.weights.h5")
    cfg = dataclasses.asdict(config) | {
        "image_shape": list(shape),
        "n_train": int(len(fit)),
        "n_validation": int(len(val)),
        "n_test": int(len(data.test)),
        "data_fingerprint": data.fingerprint(),
    }
    atomic_write_json(run_dir / "config.json", cfg)
    metrics = {
        "best_epoch": best["epoch"],
        "selection": f"epoch with the best validation ELBO ({len(val)} images held out of the training split); "
        "the test split is measured once, for that epoch",
        "val_elbo": best["val_elbo"],
        "test_elbo": test["elbo"],
        "test_recon_nats": test["recon_nats"],
        "test_kl_nats": test["kl_nats"],
        "elbo_estimator": "analytic KL + 1 reparameterized sample per image (fixed noise seed)",
        "wall_seconds": round(wall, 2),
        "history": history,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    write_png(run_dir / "reconstructions.png", reconstruction_grid(encoder, decoder, data.test[:32]))
    write_png(run_dir / "samples.png", sample_grid(decoder, config.latent_dim, seed=config.seed))
    return metrics


def evaluate(encoder, decoder, images: np.ndarray, *, seed: int = 0, batch_size: int = 500) -> dict:
    """Mean test ELBO (nats per image) with a fixed noise draw so epochs are comparable."""
    import tensorflow as tf

    from export.model import negative_elbo

    latent = decoder.input_shape[-1]
    eps_all = np.random.RandomState(seed + 1_000_003).standard_normal((len(images), latent)).astype(np.float32)
    sums = np.zeros(3)
    for i in range(0, len(images), batch_size):
        x = tf.constant(images[i : i + batch_size])
        eps = tf.constant(eps_all[i : i + batch_size])
        parts = negative_elbo(encoder, decoder, x, eps)
        sums += [float(tf.reduce_sum(p)) for p in parts]
    loss, recon, kl = sums / len(images)
    return {"elbo": -loss, "recon_nats": recon, "kl_nats": kl}


def load_run(run_dir: str | Path):
    """(config dict, metrics dict, encoder, decoder) of a finished run directory."""
    from export.model import make_decoder, make_encoder

    run_dir = Path(run_dir)
    missing = [
        n
        for n in ("config.json", "metrics.json", "encoder.weights.h5", "decoder.weights.h5")
        if not (run_dir / n).exists()
    ]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished training run: missing {', '.join(missing)}")
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    width = config.setdefault("width", 1.0)  # runs from before the model ladder are width 1
    encoder = make_encoder(config["image_shape"], config["latent_dim"], width)
    decoder = make_decoder(config["image_shape"], config["latent_dim"], width)
    encoder.load_weights(run_dir / "encoder.weights.h5")
    decoder.load_weights(run_dir / "decoder.weights.h5")
    return config, metrics, encoder, decoder


def tile(images: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """(N, H, W[, 1]) in [0, 1] -> one (rows*(H+pad)+pad, ...) mosaic with grey gutters."""
    images = images.reshape(images.shape[0], images.shape[1], images.shape[2])
    n, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5, np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return out


def reconstruction_grid(encoder, decoder, images: np.ndarray, cols: int = 8) -> np.ndarray:
    import tensorflow as tf

    from export.model import split_posterior

    mean, _ = split_posterior(encoder(images, training=False))
    recon = tf.sigmoid(decoder(mean, training=False)).numpy()
    rows = []
    for i in range(0, len(images), cols):
        rows += [images[i : i + cols], recon[i : i + cols]]
    return tile(np.concatenate(rows), cols)


def sample_grid(decoder, latent_dim: int, *, seed: int = 0, n: int = 32) -> np.ndarray:
    import tensorflow as tf

    z = np.random.RandomState(seed + 7).standard_normal((n, latent_dim)).astype(np.float32)
    return tile(tf.sigmoid(decoder(z, training=False)).numpy(), 8)


def _bar(epoch: int, epochs: int, done: int, total: int, loss: float) -> None:
    width = 30
    filled = width * done // total
    print(
        f"\repoch {epoch:3d}/{epochs} [{'#' * filled}{'.' * (width - filled)}] loss {loss:8.3f}",
        end="",
        file=sys.stderr,
    )
