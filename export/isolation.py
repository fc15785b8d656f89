"""Run code in a fresh interpreter that cannot use TensorFlow: how the device side is proven.

Two strengths, both used by the main job (``python -m export demo``) and by the tests:

* :func:`run` / :func:`run_module` -- the normal environment, but every import of TensorFlow,
  Keras, tf2onnx or ``export`` fails, so the child could not have used them even by accident;
* :func:`build_edge_site` / :func:`run_in_edge_site` -- ``python -S`` seeing only a folder of
  links to the installed numpy, ai-edge-litert, onnxruntime, Pillow (and what they need) plus
  this checkout: TensorFlow is not blocked there, it is simply not installed.

It lives with ``export`` because the demo and the tests are its users; nothing in
``compressor`` or ``bench`` imports it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "keras", "tf2onnx", "export")
EDGE_DISTRIBUTIONS = ("numpy", "ai-edge-litert", "onnxruntime", "pillow")
_GUARD = f"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ImportError('not available on the device side: ' + name)
sys.meta_path.insert(0, _Block())
"""


def command(code: str, *args: str) -> list[str]:
    """argv that runs ``code`` with TensorFlow (and ``export``) imports blocked."""
    return [sys.executable, "-c", _GUARD + code, *args]


def run(code: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(command(code, *args), capture_output=True, text=True, timeout=timeout, env=env)


def run_module(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m module args`` with TensorFlow imports blocked."""
    return run(
        f"import runpy; sys.argv = [{module!r}] + sys.argv[1:]; runpy.run_module({module!r}, run_name='__main__')",
        *args,
        timeout=timeout,
    )


def closure(names=EDGE_DISTRIBUTIONS) -> list[str]:
    """The installed distributions ``names`` need (extras excluded), names included."""
    seen: dict[str, None] = {}

    def visit(name: str) -> None:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            return
        key = dist.metadata["Name"].lower()
        if key in seen:
            return
        seen[key] = None
        for req in requires(name) or []:
            if "extra ==" not in req:
                visit(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])

    for n in names:
        visit(n)
    return list(seen)


def build_edge_site(target: str | os.PathLike, names=EDGE_DISTRIBUTIONS) -> Path:
    """Fill ``target`` with links to the top-level packages of ``closure(names)``."""
    site = Path(target)
    site.mkdir(parents=True, exist_ok=True)
    for name in closure(names):
        dist = distribution(name)
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(tops):
            if top in ("..", "__pycache__") or top.endswith((".dist-info", ".data")):
                continue
            link = site / top
            if not link.exists() and (base / top).exists():
                link.symlink_to(base / top)
    return site


def run_in_edge_site(
    site: str | os.PathLike, module: str, *args: str, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``python -S -m module args`` seeing only ``site`` and this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    cmd = [sys.executable, "-S", "-m", module, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
