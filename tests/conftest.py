"""Shared fixtures: one small real model, trained and exported once per test session.

The model is the real CVAE trained for a few epochs on the embedded MNIST digits and
exported to real TFLite/ONNX files; tests run them in the real runtimes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from export import isolation

ROOT = Path(__file__).resolve().parents[1]
TEST_EPOCHS = 10


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    from export.train import TrainConfig, train

    run = tmp_path_factory.mktemp("run")
    metrics = train(TrainConfig(epochs=TEST_EPOCHS), run, progress=False)
    return run, metrics


@pytest.fixture(scope="session")
def bundle_dir(trained_run, tmp_path_factory):
    from export.pipeline import export_run

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_run(trained_run[0], out, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def enc(bundle_dir):
    """The int8 LiteRT encoder of the session's bundle."""
    import compressor

    return compressor.Encoder.load(bundle_dir / "encoder", runtime="litert")


@pytest.fixture(scope="session")
def dec(bundle_dir):
    """The int8 LiteRT decoder of the session's bundle."""
    import compressor

    return compressor.Decoder.load(bundle_dir / "decoder", runtime="litert")


def run_without_tensorflow(code: str, *args: str, timeout: int = 300):
    """Run ``code`` in a fresh interpreter that cannot import TensorFlow at all."""
    return isolation.run(code, *args, timeout=timeout)
