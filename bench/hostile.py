"""Build hostile inputs, run the device CLI on each in a child process, print time and peak memory.

    python -m bench.hostile --bundle out/bundle [--only NAME ...]

Cases (issue 11): streams of ≤ 1 MB that declare very many cheap images (empty entropy
payloads, a joint block, lossless payloads that take ~1 ms of CPU each, 251-byte names),
image files that declare more pixels than they hold (16-bit RGBA PNG, .npz and .npy bombs),
devices and pipes given as input, and 300 idle TCP connections to ``compressor receive``.

For every CLI run: wall seconds, the child's own peak RSS (``VmHWM`` read by the child as it
exits: ``getrusage`` would report the parent's size too, which a forked child inherits), exit status,
the last stderr line and whether a traceback was printed. Image cases also measure the
refusal itself inside a child (``read_images`` alone, Pillow plugins preloaded): seconds
and peak RSS above what the process had before the call. Prints one JSON object shaped
``{"name", "description", "results"}``; exit status 1 if any CLI run printed a traceback or
the gateway did not stop on Ctrl-C (SIGINT) within 60 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from bench.processes import interruptible
from compressor import limits, wire
from compressor.codec import Decoder

ROOT = Path(__file__).resolve().parents[1]

REFUSAL_PROBE = """
import json, sys, time
from pathlib import Path
from PIL import Image
Image.init()
from compressor.errors import CompressorError
from compressor.io.files import read_images

def kb(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1])

before = kb("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, so the peak below is this call's
t0 = time.perf_counter()
try:
    images, _ = read_images([sys.argv[1]])
    outcome = f"read {images.shape}"
except CompressorError as e:
    outcome = f"{type(e).__name__}: {e}"
seconds = time.perf_counter() - t0
extra = (kb("VmHWM") - before) / 1024
print(json.dumps({"seconds": round(seconds, 4), "extra_peak_mb": round(extra, 1), "outcome": outcome[:160]}))
"""


#: Runs ``compressor.cli.main`` and, however it ends, writes the process's VmHWM (kB) to argv[1].
CLI_WITH_PEAK = """
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


def run_cli(args: list[str], *, timeout: float = 120.0) -> dict:
    """Run ``compressor ARGS`` in a child process; wall time and the child's own peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", CLI_WITH_PEAK, str(peak), *args],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=timeout,
            )
            code, stderr = done.returncode, done.stderr
        except subprocess.TimeoutExpired as e:
            code, stderr = "timeout", (e.stderr or b"").decode("utf-8", "replace")
        wall = time.perf_counter() - start
        peak_kb = int(peak.read_text()) if peak.exists() else 0
    lines = [line for line in stderr.splitlines() if line.strip() and "XNNPACK" not in line]
    return {
        "exit": code,
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "traceback": "Traceback" in stderr,
        "stderr": lines[-1][:200] if lines else "",
    }


def probe_refusal(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", REFUSAL_PROBE, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    if done.returncode:
        return {"probe_error": done.stderr.strip().splitlines()[-1][:200]}
    return json.loads(done.stdout)


# --- streams ---------------------------------------------------------------------------
def stream_cases(dec: Decoder) -> dict[str, bytes]:
    mid, index = dec.coding.model_id, dec.coding.default_index
    cap = limits.MAX_DECODE_IMAGES
    empty_1mb = wire.pack_stream(mid, "entropy", index, [b""] * 1_000_000)
    cases = {
        "entropy_empty_payloads_1MB": empty_1mb,
        "entropy_empty_payloads_at_limit": wire.pack_stream(mid, "entropy", index, [b""] * cap),
        "joint_empty_block_at_limit": wire.pack_stream(mid, "entropy", index, [b""], joint_count=cap),
        "joint_zero_latents_at_limit": wire.pack_stream(
            mid, "entropy", index, [_zero_joint_block(dec, index, cap)], joint_count=cap
        ),
        "names_251_bytes_at_limit": wire.pack_stream(
            mid, "entropy", index, [b""] * cap, names=[f"{i:06d}".ljust(251, "n") for i in range(cap)]
        ),
    }
    payload = _cheap_lossless_payload(dec)
    if payload is not None:
        cases["lossless_cheap_payloads_at_limit"] = wire.pack_stream(
            mid, "lossless", dec.coding.lossless.step_index, [payload] * cap
        )
        n = (1 << 20) // (len(payload) + 1)
        cases["lossless_cheap_payloads_1MB"] = wire.pack_stream(
            mid, "lossless", dec.coding.lossless.step_index, [payload] * n
        )
    return cases


def _zero_joint_block(dec: Decoder, index: int, count: int) -> bytes:
    """The joint block of ``count`` all-zero latents: the fewest bytes per image a joint code takes."""
    from compressor.coding import entropy

    return entropy.encode_joint(np.zeros((count, dec.part.latent_dim), np.int64), dec.coding.tables[index])


def _cheap_lossless_payload(dec: Decoder) -> bytes | None:
    """The shortest valid lossless payload: latent 0 and exactly the pixels the decoder predicts
    for it, so every image costs the full per-pixel decoding but ~3 bytes of stream."""
    from compressor.coding import lossless

    table = dec.coding.lossless
    if table is None:
        return None
    index = table.step_index
    symbols = np.zeros((1, dec.part.latent_dim), np.int64)
    levels = dec.network.run_native(dec.network.quantize_input(symbols * dec.coding.steps[index]))[..., 0]
    bits = levels[0] >= 0
    return lossless.encode(symbols[0], bits, levels[0], dec.coding.tables[index], table)


# --- images ----------------------------------------------------------------------------
def png_bomb(width: int, height: int, bit_depth: int = 16, colour: int = 6, rows: int | None = None) -> bytes:
    """A PNG of zero pixels (deflated in one pass, so a huge declared image stays small)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = b"\0" * (1 + width * channels * bit_depth // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height if rows is None else rows)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def npz_bomb(shape: tuple, dtype: str = "u1") -> bytes:
    """An .npz of zeros, written member-first so only one row is ever in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("images.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
            )
            row = np.zeros(shape[1:], dtype).tobytes()
            for _ in range(shape[0]):
                member.write(row)
    return buf.getvalue()


def image_cases(folder: Path) -> dict[str, Path]:
    files = {
        "png16_rgba_8000x8000": png_bomb(8000, 8000, 16, 6),
        "png_header_100000x100000": png_bomb(100_000, 100_000, 8, 0, rows=0),
        "png16_rgba_at_pixel_budget": png_bomb(256, 256, 16, 6),
        "npz_uint8_400MB_declared": npz_bomb((500_000, 28, 28), "u1"),
        "npz_float64_at_byte_budget": npz_bomb((limits.MAX_INPUT_BYTES // (8 * 784), 28, 28), "<f8"),
    }
    paths = {}
    for name, data in files.items():
        suffix = ".npz" if name.startswith("npz") else ".png"
        paths[name] = folder / f"{name}{suffix}"
        paths[name].write_bytes(data)
    npy = folder / "npy_absurd_shape.npy"
    with open(npy, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 28, 28)})
    paths["npy_absurd_shape"] = npy
    fifo = folder / "fifo.png"
    os.mkfifo(fifo)
    paths["fifo"] = fifo
    paths["dev_zero"] = Path("/dev/zero")
    return paths


# --- transport -------------------------------------------------------------------------
def idle_connections(bundle: str, folder: Path, count: int = 300) -> dict:
    """RSS and threads of ``compressor receive`` before and with ``count`` idle connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "compressor.cli", "receive", "-o", str(folder / "gw"), "--bundle", bundle]
    proc = subprocess.Popen(
        [*cmd, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=interruptible,  # stopped with SIGINT, even when this bench runs in the background
    )
    try:
        assert "listening" in proc.stdout.readline()
        before = _status(proc.pid)
        socks, failed = [], 0
        for _ in range(count):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:  # refused or reset while the gateway turns the surplus away
                failed += 1
        time.sleep(2.0)
        during = _status(proc.pid)
        refused = 0
        for c in socks:
            c.settimeout(0.2)
            try:
                if c.recv(4096):
                    refused += 1
            except OSError:
                pass
            c.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:  # Ctrl-C stops a gateway within a poll; a loaded machine may take seconds to schedule it
            stopped = proc.wait(timeout=60) is not None
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            stopped = False
    return {
        "stopped_on_ctrl_c": stopped,
        "connections": count,
        "rss_mb_before": before["rss_mb"],
        "rss_mb_with_connections": during["rss_mb"],
        "threads_before": before["threads"],
        "threads_with_connections": during["threads"],
        "answered_busy_error": refused,
        "connect_failed": failed,
    }


def _status(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "threads": int(fields["Threads"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="out/bundle", help="bundle to decode with (default: %(default)s)")
    parser.add_argument("--only", nargs="*", help="run only cases whose name contains one of these")
    args = parser.parse_args(argv)
    bundle = str(Path(args.bundle).resolve())
    wanted = (lambda name: any(w in name for w in args.only)) if args.only else (lambda name: True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["baseline_refused_missing_file"] = run_cli(["encode", str(tmp / "none.png"), "-o", str(tmp / "x")])
        dec = Decoder.load(bundle, runtime="litert")
        for name, data in stream_cases(dec).items():
            if not wanted(name):
                continue
            path = tmp / f"{name}.lzc"
            path.write_bytes(data)
            out = tmp / f"out-{name}"
            row = run_cli(["decode", str(path), "-o", str(out), "--bundle", bundle])
            row["stream_bytes"] = len(data)
            row["declared_images"] = wire.declared_count(data)
            row["files_written"] = len(list(out.iterdir())) if out.exists() else 0
            results[f"decode:{name}"] = row
            if wanted("info"):
                results[f"info:{name}"] = run_cli(["info", str(path)])
        for name, path in image_cases(tmp).items():
            if not wanted(name):
                continue
            row = run_cli(["encode", str(path), "-o", str(tmp / "codes.lzc"), "--bundle", bundle], timeout=30)
            row["file_bytes"] = path.stat().st_size if path.is_file() else None
            row["refusal"] = probe_refusal(path) if name not in ("fifo",) else None
            results[f"encode:{name}"] = row
        if wanted("idle_connections"):
            results["receive:300_idle_connections"] = idle_connections(bundle, tmp)
    report = {
        "name": "hostile",
        "description": f"hostile inputs against the CLI; python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        "results": results,
    }
    print(json.dumps(report, indent=2))
    stuck = any(r.get("stopped_on_ctrl_c") is False for r in results.values())
    return 1 if stuck or any(r.get("traceback") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
