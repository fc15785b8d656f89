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
