"""The CVAE's shapes, its loss, and what a training run writes."""

import json

import numpy as np
import pytest

from export.model import make_decoder, make_encoder, mean_encoder, negative_elbo, probability_decoder


@pytest.mark.parametrize("shape", [(28, 28), (32, 48)])
def test_encoder_and_decoder_shapes_follow_the_input_size(shape):
    enc, dec = make_encoder(shape, 8), make_decoder(shape, 8)
    x = np.zeros((3, *shape, 1), np.float32)
    assert enc(x).shape == (3, 16)
    assert dec(np.zeros((3, 8), np.float32)).shape == (3, *shape, 1)


def test_image_sizes_not_divisible_by_four_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        make_encoder((30, 28))


def test_mean_encoder_returns_the_first_half_of_the_posterior():
    enc = make_encoder()
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(mean_encoder(enc)(x), enc(x)[:, :16], atol=1e-6)


def test_probability_decoder_is_the_sigmoid_of_the_logits():
    dec = make_decoder()
    z = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    np.testing.assert_allclose(probability_decoder(dec)(z), 1 / (1 + np.exp(-np.asarray(dec(z)))), atol=1e-6)


def test_negative_elbo_is_reconstruction_plus_analytic_kl():
    enc, dec = make_encoder(), make_decoder()
    x = (np.random.default_rng(0).random((2, 28, 28, 1)) > 0.5).astype(np.float32)
    loss, recon, kl = (np.asarray(t) for t in negative_elbo(enc, dec, x, np.zeros((2, 16), np.float32)))
    np.testing.assert_allclose(loss, recon + kl, rtol=1e-6)
    assert (kl >= 0).all() and (recon > 0).all()


def test_training_lowers_the_loss(trained_run):
    _, metrics = trained_run
    losses = [row["train_loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0] - 20
    assert metrics["val_elbo"] == max(row["val_elbo"] for row in metrics["history"])


def test_the_best_epoch_is_chosen_on_validation_data_and_never_looks_at_the_test_split(trained_run):
    run, metrics = trained_run
    best = max(metrics["history"], key=lambda row: row["val_elbo"])
    assert metrics["best_epoch"] == best["epoch"]
    assert not any("test" in key for row in metrics["history"] for key in row)
    config = json.loads((run / "config.json").read_text())
    assert config["n_train"] + config["n_validation"] == 4500 and config["n_validation"] == 450


def test_run_directory_holds_weights_config_metrics_and_pictures(trained_run):
    run, metrics = trained_run
    names = {p.name for p in run.iterdir()}
    assert {
        "config.json",
        "metrics.json",
        "encoder.weights.h5",
        "decoder.weights.h5",
        "reconstructions.png",
        "samples.png",
    } <= names
    config = json.loads((run / "config.json").read_text())
    assert config["latent_dim"] == 16 and config["image_shape"] == [28, 28] and config["n_test"] == 500
    assert json.loads((run / "metrics.json").read_text())["best_epoch"] == metrics["best_epoch"]
    from compressor.io.files import read_image

    assert read_image(run / "reconstructions.png").shape[1] == 8 * 30 + 2


def test_a_finished_run_reloads_to_the_same_model(trained_run):
    from export import datasets
    from export.train import evaluate, load_run

    run, metrics = trained_run
    _, _, enc, dec = load_run(run)
    again = evaluate(enc, dec, datasets.load("mnist5k").test)
    assert again["elbo"] == pytest.approx(metrics["test_elbo"], abs=1e-3)


@pytest.mark.slow  # trains two models
def test_same_seed_gives_the_same_weights(tmp_path):
    from export import datasets
    from export.train import TrainConfig, load_run, train

    full = datasets.load("mnist5k")
    small = datasets.Dataset("small", full.train[:300], full.test[:100], True)
    for name in ("a", "b"):
        train(TrainConfig(epochs=1, data="small"), tmp_path / name, progress=False, dataset=small)
    wa = load_run(tmp_path / "a")[3].get_weights()
    wb = load_run(tmp_path / "b")[3].get_weights()
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
