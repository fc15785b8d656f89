"""Shared fixtures: one small real model, trained and exported once per test session.

The grayscale model is the one ``python -m export demo`` trains and exports in the demo fixture
(which reuses the session's binary run): the slowest fixture, shared so that no second grayscale
model is trained and exported for the tests.

The model is the real CVAE trained for a few epochs on the embedded MNIST digits and
exported to real TFLite/ONNX files; tests run them in the real runtimes.

Every test that uses the model (directly or through another fixture) is marked ``slow``
here, so ``pytest -m "not slow"`` is the quick edit-test loop (well under a minute).
One hypothesis profile for the whole suite: derandomized (CI and a laptop draw the same
examples) and without per-example deadlines (a loaded machine is not a failure).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from tests import support
from tests.support import ROOT, mnist5k_test, run_without_tensorflow, to_uint8  # noqa: F401

# ROOT and run_without_tensorflow are re-exported only so that a test file written before
# tests/support.py still imports; test_device_side_is_light asks it to import from tests.support.

TEST_EPOCHS = 10

settings.register_profile("project", max_examples=200, derandomize=True, deadline=None, print_blob=True)
settings.load_profile("project")

#: Fixtures that train, export, measure or pip-install: a test that uses any of them is slow.
SLOW_FIXTURES = frozenset(
    {"trained_run", "bundle_dir", "gray_bundle_dir", "enc", "dec", "bench_result", "tflite_site", "demo"}
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
def gray_bundle_dir(demo):
    """The grayscale model of the demo (:func:`demo`): trained with the session's settings but
    ``--grayscale``, and exported with its residual tables, by ``python -m export demo`` itself.

    The demo trains and exports this model anyway; a second grayscale model of the session's own
    would cost a training and an export (about two minutes) and prove nothing more.
    """
    repo, proc, _ = demo
    if proc.returncode != 0:
        pytest.fail("the demo failed, so it made no grayscale bundle: see test_the_demo_runs_every_step")
    return repo / "out" / "bundle-gray"


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


@pytest.fixture(scope="session")
def bench_images(tmp_path_factory):
    """64 real uint8 test digits in an .npy file (grey, as a camera would send them)."""
    path = tmp_path_factory.mktemp("bench_images") / "test_images.npy"
    np.save(path, to_uint8(mnist5k_test(64, binarize=False)))
    return path


@pytest.fixture(scope="session")
def bench_result_file(bundle_dir, bench_images, tmp_path_factory):
    """One real ``python -m bench bench`` run, in a process that cannot import TensorFlow."""
    from export import isolation

    out = tmp_path_factory.mktemp("bench_results") / "this.json"
    proc = isolation.run_module(
        "bench",
        *("bench", "--bundle", str(bundle_dir), "--images", str(bench_images), "-o", str(out)),
        *("--quick", "--num-runs", "3", "--min-secs", "0", "--warmup-runs", "1", "--threads", "1"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="session")
def bench_result(bench_result_file) -> dict:
    return json.loads(bench_result_file.read_text())


@pytest.fixture(scope="session")
def tflite_site():
    """tflite-runtime 2.14 + numpy<2 (+ onnxruntime), pip-installed into .cache/sites once."""
    return support.pip_site("tflite-2.14", support.TFLITE_SITE_REQUIREMENTS)


@pytest.fixture(scope="session")
def demo(trained_run, tmp_path_factory):
    """A scratch copy of the checkout in which ``python -m export demo --no-ladder`` ran.

    The session's trained run is put where the demo looks for it, with the settings it is
    given (``--epochs TEST_EPOCHS``), so it reuses it instead of training: every other step runs. The
    ladder is left out: it trains a second model, and a width-0.5 model of 10 epochs does not
    pass the int8 ONNX validation (30 epochs do). Used by tests/test_readme.py (the documents'
    commands run in this checkout) and tests/test_reproducible_export.py (the demo's export of
    the copied run is a second export of the session's run, made in another process).
    """
    repo = tmp_path_factory.mktemp("scratch") / "checkout"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(trained_run[0], repo / "out" / "run")
    t0 = time.monotonic()
    proc = subprocess.run(
        [".venv/bin/python", "-m", "export", "demo", "--epochs", str(TEST_EPOCHS), "--no-ladder"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return repo, proc, time.monotonic() - t0
