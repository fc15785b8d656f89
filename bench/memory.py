"""Resident memory of this process: current, and peak since the last reset.

Peak RSS per measured row needs a high-water mark that can be reset between rows, or
every row would report the largest model loaded so far. Linux (and so a Raspberry Pi)
resets ``VmHWM`` when ``5`` is written to ``/proc/self/clear_refs``; elsewhere the peak is
the process's lifetime maximum (``resource.getrusage``), and rows say so with
``peak_mem_resettable: false``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Make the peak equal the current RSS; False where the OS cannot."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> float | None:
    """Current resident set size in MB (1e6 bytes), or None where unknown."""
    rss = _status_mb("VmRSS")
    if rss is None:
        try:
            import psutil  # the bench extra; gives RSS on macOS and Windows
        except ImportError:
            return None
        rss = round(psutil.Process().memory_info().rss / 1e6, 2)
    return rss


def peak_mb() -> float | None:
    """Peak resident set size in MB since :func:`reset_peak` (or since start)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    kb_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb_or_bytes / (1e6 if sys.platform == "darwin" else 1e3), 2)


def _status_mb(key: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) * 1024 / 1e6, 2)
    except (OSError, ValueError, IndexError):
        return None
    return None
