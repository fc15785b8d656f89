"""What several test modules share: the checkout's root, the skip rule, and the test digits.

Test modules import from here (never from each other or from conftest.py), so a helper has
one home. Fixtures live in conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.hostile import CLI_WITH_PEAK, npz_bomb, png_bomb  # noqa: F401 (the bombs live in the bench)

ROOT = Path(__file__).resolve().parents[1]

#: Set by .ci/run: a test that needs the machine (root, apt, qemu, a second runtime) must run there.
REQUIRE_SYSTEM_TESTS = "COMPRESSOR_REQUIRE_SYSTEM_TESTS"


def system_tests_required() -> bool:
    return os.environ.get(REQUIRE_SYSTEM_TESTS) == "1"


def skip_or_fail(reason: str):
    """Skip, saying why; in CI (COMPRESSOR_REQUIRE_SYSTEM_TESTS=1) a skip is a failure instead.

    Every skip in this suite goes through here, so none can vanish silently from CI.
    """
    if system_tests_required():
        pytest.fail(f"required on this machine ({REQUIRE_SYSTEM_TESTS}=1), but: {reason}")
    pytest.skip(reason)


def importorskip(module: str):
    """``pytest.importorskip`` that CI turns into a failure (see :func:`skip_or_fail`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        skip_or_fail(f"{module} cannot be imported: {e}")


def cache_dir(name: str) -> Path:
    """A folder under the checkout's .cache/ (gitignored) or $COMPRESSOR_CACHE, for slow-to-build things."""
    root = Path(os.environ.get("COMPRESSOR_CACHE") or ROOT / ".cache")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def mnist5k_test(n: int | None = None, *, binarize: bool = True) -> np.ndarray:
    """The first ``n`` held-back mnist5k digits as float32 (N, 28, 28) in [0, 1] (binarized at 0.5 by default)."""
    from export import datasets

    return datasets.load("mnist5k", binarize=binarize).test[:n, ..., 0]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 levels 0..255 (0/255 for binarized images), rounded."""
    return np.rint(np.asarray(images) * 255).astype(np.uint8)


def run_without_tensorflow(code: str, *args: str, timeout: int = 300):
    """Run ``code`` in a fresh interpreter that cannot import TensorFlow at all."""
    from export import isolation

    return isolation.run(code, *args, timeout=timeout)


def pip_site(name: str, requirements: list[str], *, timeout: int = 900) -> Path:
    """A folder with ``requirements`` pip-installed into it (``--target``), built once and cached.

    For what cannot share the test venv: tflite-runtime 2.14 needs numpy<2. Needs the package
    index the first time, as the aarch64 harness does; where pip cannot install, the test skips
    (CI: fails, see skip_or_fail).
    """
    import hashlib
    import shutil
    import subprocess
    import sys

    key = hashlib.sha256("\n".join([sys.version, *requirements]).encode()).hexdigest()[:12]
    final = cache_dir("sites") / f"{name}-{key}"
    if (final / ".complete").is_file():
        return final
    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    proc = subprocess.run([*cmd, "--target", str(tmp), *requirements], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        skip_or_fail(f"pip could not install {' '.join(requirements)}: {proc.stderr.strip()[-500:]}")
    (tmp / ".complete").write_text("\n".join(requirements) + "\n")
    try:
        tmp.rename(final)
    except OSError:  # built meanwhile by another process: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def run_in_site(site: Path, *args: str, timeout: int = 600):
    """``python -S ARGS`` seeing only ``site`` and this checkout (not the test venv's packages)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, timeout=timeout, env=env)


#: tflite-runtime 2.14 (the last release) runs only beside numpy<2, so it gets its own site; onnxruntime
#: is there too, so that runtime="auto" has a choice to make without ai-edge-litert.
TFLITE_SITE_REQUIREMENTS = ["numpy<2", "tflite-runtime==2.14.0", "pillow==13.0.0", "onnxruntime==1.32.0"]


def without_modules(*names: str) -> str:
    """Python source that makes importing the top-level modules ``names`` fail, as on a device without them."""
    return (
        "import sys\n"
        "class _Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {names!r}:\n"
        "            raise ImportError('not installed on this device: ' + name)\n"
        "sys.meta_path.insert(0, _Absent())\n"
    )


# --- hostile-input helpers: the CLI in a child with its own peak memory; bombs ----------------

#: The child script: ``getrusage(RUSAGE_CHILDREN)`` would include the test process's own size (a
#: forked child inherits its parent's high-water mark on Linux), so the child reports its VmHWM.
_CLI_WITH_PEAK = CLI_WITH_PEAK


@dataclass
class CliRun:
    code: int
    out: str
    err: str
    peak_mb: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip() and "XNNPACK" not in line]


def run_cli(*args, tmp_path: Path, timeout: float = 120) -> CliRun:
    """``compressor ARGS`` in a child process; asserts that it printed no traceback."""
    peak = tmp_path / f".peak-{len(list(tmp_path.glob('.peak-*')))}"
    done = subprocess.run(
        [sys.executable, "-c", _CLI_WITH_PEAK, str(peak), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    assert "Traceback" not in done.stderr, done.stderr
    peak_mb = int(peak.read_text()) / 1024 if peak.exists() else float("nan")
    return CliRun(done.returncode, done.stdout, done.stderr, peak_mb)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: to show that nothing changed."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# --- what a statement imports, in a fresh interpreter -------------------------------------
#: Packages the device side must never import.
HEAVY = ("tensorflow", "keras", "tf2onnx", "export", "bench")


def imported_after(statement: str) -> set[str]:
    """Top-level packages imported by ``statement`` in a fresh interpreter (this checkout on the path)."""
    code = f"import sys\n{statement}\nprint('\\n'.join('MODULE ' + m for m in sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    ).stdout.splitlines()
    return {line[7:].split(".")[0] for line in out if line.startswith("MODULE ")}


def synthetic_binary(seed: int, n: int = 20, h: int = 8, w: int = 9):
    """``(int8 levels, bool bits)`` (N, H, W): random levels, each pixel ink with the probability
    its level says, for binary residual tests that need no network."""
    rs = np.random.RandomState(seed)
    levels = rs.randint(-128, 128, size=(n, h, w)).astype(np.int8)
    bits = rs.rand(n, h, w) < (levels.astype(float) + 128.5) / 256
    return levels, bits


def synthetic_binary2_tables(steps: int):
    """A layout-2 context table learned from :func:`synthetic_binary` images, and ``steps`` copies
    of a small 3-dimension latent table."""
    from compressor.coding import binary_context2
    from compressor.coding.entropy import build_table

    levels, bits = synthetic_binary(0, n=80)
    latent = build_table(np.random.RandomState(1).randint(-3, 4, size=(200, 3)))
    return binary_context2.build_table(levels, bits), [latent] * steps
