"""The device side never imports TensorFlow, Keras, tf2onnx or the export package."""

import os
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("tensorflow", "keras", "tf2onnx", "export")


def _imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join('MODULE ' + m for m in sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    ).stdout.splitlines()
    return {line[7:].split(".")[0] for line in out if line.startswith("MODULE ")}


def test_importing_compressor_leaves_tensorflow_out():
    assert not _imported_after("import compressor") & set(HEAVY)


def test_importing_every_device_module_leaves_tensorflow_out():
    modules = sorted(p.stem for p in (ROOT / "compressor").glob("*.py") if p.stem != "__init__")
    stmt = "\n".join(f"import compressor.{m}" for m in modules) + "\nimport bench"
    assert not _imported_after(stmt) & set(HEAVY)


def test_cli_help_starts_without_tensorflow():
    assert not _imported_after(
        "import compressor.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass"
    ) & set(HEAVY)


def test_the_edge_environment_has_no_tensorflow_installed_and_still_decodes(bundle_dir, tmp_path):
    import json

    import numpy as np

    import compressor
    from bench import edge_env
    from export import datasets

    images = (datasets.load("mnist5k").test[:20, ..., 0] * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", images)
    codes = tmp_path / "codes.bin"
    codes.write_bytes(compressor.Encoder.load(bundle_dir).compress_stream(images, joint=True))
    site = edge_env.build(tmp_path / "site")
    proc = edge_env.run_module(
        site, "bench.decode_check", str(codes), str(bundle_dir / "decoder"), str(tmp_path / "x.npy")
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["tensorflow_installed"] is False and report["images"] == 20
    assert report["pixel_error_%"] < 10
