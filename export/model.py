"""The convolutional VAE of the TensorFlow tutorial, as two separate Keras models.

Encoder: Conv2D 32 and 64 (3x3, stride 2, relu) -> Flatten -> Dense(2*latent), split into
posterior mean and log-variance. Decoder: Dense((H/4)*(W/4)*32, relu) -> Reshape ->
Conv2DTranspose 64 and 32 (3x3, stride 2, same, relu) -> Conv2DTranspose 1 (stride 1) giving
logits. ``width`` scales every layer's channels (0.5: 16/32, 2: 64/128), the model ladder
from a Pi Zero to a gateway; 1 is the tutorial. Keeping the halves separate from the start
is what lets them ship to different devices: the camera only needs the encoder, the
gateway only the decoder.

The loss is the negative ELBO with the Bernoulli log-likelihood of the logits and the
*analytic* KL divergence to N(0, I) (the tutorial uses a single-sample estimate of the same
quantity; the analytic form has the same expectation and lower variance). The likelihood
term uses one reparameterized sample per image.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from export.config import LATENT_DIM

IMAGE_SHAPE = (28, 28)


def channels(width: float = 1.0) -> tuple[int, int]:
    """The two channel counts (tutorial: 32, 64) of a model ``width`` times as wide."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, round(32 * width)), max(1, round(64 * width))


def make_encoder(image_shape=IMAGE_SHAPE, latent_dim: int = LATENT_DIM, width: float = 1.0) -> keras.Model:
    """image (H, W, 1) -> concat(mean, logvar), shape (2*latent_dim,)."""
    h, w = _check_shape(image_shape)
    c1, c2 = channels(width)
    return keras.Sequential(
        [
            keras.Input(shape=(h, w, 1), name="image"),
            keras.layers.Conv2D(c1, 3, strides=2, activation="relu", name="conv1"),
            keras.layers.Conv2D(c2, 3, strides=2, activation="relu", name="conv2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(2 * latent_dim, name="posterior"),
        ],
        name="encoder",
    )


def make_decoder(image_shape=IMAGE_SHAPE, latent_dim: int = LATENT_DIM, width: float = 1.0) -> keras.Model:
    """latent (latent_dim,) -> logits (H, W, 1)."""
    h, w = _check_shape(image_shape)
    c1, c2 = channels(width)
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,), name="latent"),
            keras.layers.Dense((h // 4) * (w // 4) * c1, activation="relu", name="project"),
            keras.layers.Reshape((h // 4, w // 4, c1), name="reshape"),
            keras.layers.Conv2DTranspose(c2, 3, strides=2, padding="same", activation="relu", name="deconv1"),
            keras.layers.Conv2DTranspose(c1, 3, strides=2, padding="same", activation="relu", name="deconv2"),
            keras.layers.Conv2DTranspose(1, 3, strides=1, padding="same", name="logits"),
        ],
        name="decoder",
    )


def mean_encoder(encoder: keras.Model) -> keras.Model:
    """A standalone graph image -> posterior mean, sharing no layers with ``encoder``.

    Devices only need the mean (it is what gets quantized), so the log-variance half of
    the last Dense is dropped by copying its first ``latent`` columns into a fresh layer.
    """
    convs = [encoder.get_layer("conv1"), encoder.get_layer("conv2")]
    dense = encoder.get_layer("posterior")
    kernel, bias = dense.get_weights()
    latent = kernel.shape[1] // 2
    h, w = encoder.input_shape[1:3]
    model = keras.Sequential(
        [
            keras.Input(shape=(h, w, 1), name="image"),
            keras.layers.Conv2D(convs[0].filters, 3, strides=2, activation="relu", name="conv1"),
            keras.layers.Conv2D(convs[1].filters, 3, strides=2, activation="relu", name="conv2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(latent, name="mean"),
        ],
        name="mean_encoder",
    )
    for src in convs:
        model.get_layer(src.name).set_weights(src.get_weights())
    model.get_layer("mean").set_weights([kernel[:, :latent], bias[:latent]])
    return model


def probability_decoder(decoder: keras.Model) -> keras.Model:
    """latent -> pixel probabilities: the sigmoid lives inside the exported graph."""
    latent = keras.Input(shape=decoder.input_shape[1:], name="latent")
    probs = keras.layers.Activation("sigmoid", name="probs")(decoder(latent))
    return keras.Model(latent, probs, name="probability_decoder")


def split_posterior(params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    mean, logvar = tf.split(params, 2, axis=1)
    return mean, logvar


def negative_elbo(encoder, decoder, x: tf.Tensor, eps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-image (neg. ELBO, reconstruction nats, KL nats), with eps ~ N(0, I) given."""
    mean, logvar = split_posterior(encoder(x, training=True))
    z = mean + tf.exp(0.5 * logvar) * eps
    logits = decoder(z, training=True)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits)
    recon = tf.reduce_sum(bce, axis=[1, 2, 3])
    kl = 0.5 * tf.reduce_sum(tf.square(mean) + tf.exp(logvar) - 1.0 - logvar, axis=1)
    return recon + kl, recon, kl


def _check_shape(image_shape) -> tuple[int, int]:
    h, w = (int(v) for v in image_shape)
    if h <= 0 or w <= 0 or h % 4 or w % 4:
        raise ValueError(f"image shape must be positive and divisible by 4, got {h}x{w}")
    return h, w


def count_macs(image_shape=IMAGE_SHAPE, latent_dim: int = LATENT_DIM, width: float = 1.0) -> dict[str, int]:
    """Multiply-accumulates per image of the exported encoder (mean only) and decoder.

    The trained graph's count (the useful work); a rewritten decoder graph
    (``export/graphs.py``) multiplies some zero taps on top.
    """
    h, w = _check_shape(image_shape)
    c1, c2 = channels(width)
    h1, w1 = (h - 3) // 2 + 1, (w - 3) // 2 + 1
    h2, w2 = (h1 - 3) // 2 + 1, (w1 - 3) // 2 + 1
    enc = h1 * w1 * 9 * c1 + h2 * w2 * 9 * c1 * c2 + h2 * w2 * c2 * latent_dim
    q = (h // 4) * (w // 4)
    # transposed convolutions cost input pixels x k*k x c_in x c_out
    dec = latent_dim * q * c1 + q * 9 * c1 * c2 + (h // 2) * (w // 2) * 9 * c2 * c1 + h * w * 9 * c1
    return {"encoder": int(enc), "decoder": int(dec)}


__all__ = [
    "LATENT_DIM",
    "channels",
    "count_macs",
    "make_decoder",
    "make_encoder",
    "mean_encoder",
    "negative_elbo",
    "probability_decoder",
]
