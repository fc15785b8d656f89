"""What machine produced a result: CPU, cores, OS, Python, runtime versions, Pi health.

Latency numbers are meaningless without the machine beside them, and on a Raspberry Pi
they also depend on its state: a ``powersave`` governor, a hot SoC or an under-voltage
event each slow it down by a factor of two or more. Everything here is read from files
(``/proc``, ``/sys``) or package metadata, never by importing heavy packages, and every
item that cannot be read is ``None`` rather than an error: a result is still worth having
without the temperature. ``root`` lets tests point the reader at a fake file tree.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from compressor.runtime import sessions as runtimes

_ARM_PARTS = {  # /proc/cpuinfo "CPU part" of ARM cores found on single-board computers
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd40": "Neoverse-V1",
    "0xd4f": "Neoverse-V2",
}

# Bits of the Raspberry Pi firmware's get_throttled word.
THROTTLE_BITS = {
    0: "under_voltage_now",
    1: "arm_frequency_capped_now",
    2: "throttled_now",
    3: "soft_temperature_limit_now",
    16: "under_voltage_occurred",
    17: "arm_frequency_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}
_PACKAGES = (
    "numpy",
    "ai-edge-litert",
    "tflite-runtime",
    "onnxruntime",
    "onnxruntime-gpu",
    "pillow",
    "pillow-jxl-plugin",
    "matplotlib",
    "tensorflow",
    "tensorflow-cpu",
)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask in a container, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def describe(name: str | None = None, root: str | os.PathLike = "/") -> dict:
    """The ``device`` block of a result (docs/bench.md)."""
    root = Path(root)
    pi_model = _read(root / "proc/device-tree/model")
    pi = None
    if pi_model and pi_model.startswith("Raspberry Pi"):
        pi = {"model": pi_model, "throttled": throttled(root)}
    info = {
        "name": name or (pi_model if pi else platform.node()) or "unknown",
        "cpu_model": cpu_model(root),
        "cores": os.cpu_count(),
        "cores_usable": usable_cores(),
        "arch": platform.machine(),
        "os": _os_name(root),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "runtimes": runtimes.available(),
        "onnx_providers": _onnx_providers(),
        "packages": {p: _version(p) for p in _PACKAGES if _version(p)},
        "cpu_governor": _read(root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_max_mhz": _khz_to_mhz(_read(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")),
        "temperature_c": temperature_c(root),
        "raspberry_pi": pi,
    }
    return info


def cpu_model(root: Path = Path("/")) -> str:
    """'AMD EPYC 7B13', 'Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)', or the arch when unknown."""
    text = _read(root / "proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Processor", "cpu model"):
        if fields.get(key):
            return fields[key]
    part = _ARM_PARTS.get(fields.get("CPU part", "").lower())
    board = fields.get("Model") or fields.get("Hardware")
    if board and part:
        return f"{board} ({part})"
    return board or part or platform.processor() or platform.machine() or "unknown"


def temperature_c(root: Path = Path("/")) -> float | None:
    """SoC temperature from thermal zone 0 (millidegrees in sysfs), if there is one."""
    raw = _read(root / "sys/class/thermal/thermal_zone0/temp")
    try:
        return round(int(raw) / 1000.0, 1) if raw else None
    except ValueError:
        return None


def throttled(root: Path = Path("/")) -> dict | None:
    """The Pi firmware's throttling word, decoded, from sysfs or ``vcgencmd get_throttled``."""
    raw = _read(root / "sys/devices/platform/soc/soc:firmware/get_throttled")
    if raw is None and Path(root) == Path("/") and shutil.which("vcgencmd"):
        try:
            out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
            raw = out.strip().partition("=")[2] or None
        except (OSError, subprocess.SubprocessError):
            raw = None
    if raw is None:
        return None
    try:
        word = int(raw, 16)  # sysfs prints bare hex, vcgencmd "0x..."; both parse
    except ValueError:
        return None
    flags = {name: bool(word >> bit & 1) for bit, name in THROTTLE_BITS.items()}
    return {"raw": f"0x{word:x}", **flags}


def _os_name(root: Path) -> str:
    text = _read(root / "etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return platform.platform()


def _onnx_providers() -> list[str] | None:
    if runtimes.available().get("onnx") is None:
        return None
    import onnxruntime  # noqa: PLC0415 - installed (checked above) and light

    return list(onnxruntime.get_available_providers())


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _khz_to_mhz(raw: str | None) -> float | None:
    try:
        return round(int(raw) / 1000.0) if raw else None
    except ValueError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace").strip().strip("\x00").strip() or None
    except OSError:
        return None


if __name__ == "__main__":  # pragma: no cover - a quick look at this machine
    import json

    print(json.dumps(describe(), indent=2))
