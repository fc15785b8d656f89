"""A Python environment that has only the edge runtimes installed: no TensorFlow at all.

The main job decodes in such an environment to prove the device side, not just to claim
it: the interpreter runs with ``-S`` (no site-packages) and sees a folder of links to the
installed numpy, ai-edge-litert and onnxruntime (and what they need), plus this project.
TensorFlow is not *blocked* there; it is simply not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGE_DISTRIBUTIONS = ("numpy", "ai-edge-litert", "onnxruntime")


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


def build(target: str | os.PathLike, names=EDGE_DISTRIBUTIONS) -> Path:
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


def run_module(site: str | os.PathLike, module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -S -m module args`` seeing only ``site`` and this project."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    cmd = [sys.executable, "-S", "-m", module, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
