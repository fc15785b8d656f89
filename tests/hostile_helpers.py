"""Shared by the hostile-input tests: run the CLI in a child and measure its own peak memory;
build bombs (PNG, .npz) without ever holding what they declare."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: Runs ``compressor.cli.main`` and, however it ends, writes this process's VmHWM (kB) to argv[1].
#: (``getrusage(RUSAGE_CHILDREN)`` would include the test process's own size: a forked child
#: inherits its parent's high-water mark on Linux.)
_CLI_WITH_PEAK = """
import sys
from pathlib import Path
report = sys.argv.pop(1)
try:
    from compressor.cli import main
    code = main(sys.argv[1:])
finally:
    status = Path("/proc/self/status").read_text()
    Path(report).write_text(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
sys.exit(code)
"""


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


def png_bomb(width: int, height: int, bit_depth: int = 16, colour: int = 6) -> bytes:
    """A PNG of zero pixels declaring ``width x height`` (16-bit RGBA by default), deflated row by row."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\0" * (1 + width * channels * bit_depth // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def npz_bomb(shape: tuple, dtype: str = "u1") -> bytes:
    """An .npz of zeros of ``shape``, written one image at a time."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("images.npy", "w", force_zip64=True) as member:
            header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(member, header)
            row = np.zeros(shape[1:], dtype).tobytes()
            for _ in range(shape[0]):
                member.write(row)
    return buf.getvalue()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime: to show that nothing changed."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}
