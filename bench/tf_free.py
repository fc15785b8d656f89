"""Run a module in a fresh interpreter in which TensorFlow cannot be imported.

This is how the main job and the tests prove the device side: the process that decodes
could not have used TensorFlow even by accident, because every import of it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "keras", "tf2onnx", "export")
_GUARD = f"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ImportError('not available on the device side: ' + name)
sys.meta_path.insert(0, _Block())
"""


def command(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", _GUARD + code, *args]


def run(code: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(command(code, *args), capture_output=True, text=True, timeout=timeout, env=env)


def run_module(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run(
        f"import runpy; sys.argv = [{module!r}] + sys.argv[1:]; runpy.run_module({module!r}, run_name='__main__')",
        *args,
        timeout=timeout,
    )
