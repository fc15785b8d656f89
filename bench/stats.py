"""Latency statistics: percentiles and the summary written for every measured row.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, numpy's
default), so a reader can recompute them with ``numpy.percentile``. Implemented in plain
Python so the numbers do not depend on the numpy version a device happens to have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

PERCENTILES = (50, 90, 99)


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, interpolated linearly between ranks.

    Raises ``ValueError`` for no values or ``q`` outside 0..100, and for NaN in either.
    """
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:  # also refuses NaN
        raise ValueError(f"percentile q must be in 0..100, got {q!r}")
    if any(math.isnan(v) for v in data):
        raise ValueError("percentile of values containing NaN")
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    return data[lo] + (data[hi] - data[lo]) * frac


def summarize(samples_us: list[float]) -> dict:
    """``{count, avg, std, min, max, p50, p90, p99}`` of per-call times in µs.

    ``avg`` and ``std`` follow litert's benchmark_model (``std`` is the population standard
    deviation, as there); values are rounded to 0.01 µs.
    """
    if not samples_us:
        raise ValueError("no timing samples")
    n = len(samples_us)
    avg = sum(samples_us) / n
    std = math.sqrt(sum((s - avg) ** 2 for s in samples_us) / n)
    out = {"count": n, "avg": avg, "std": std, "min": min(samples_us), "max": max(samples_us)}
    for q in PERCENTILES:
        out[f"p{q}"] = percentile(samples_us, q)
    return {k: (v if k == "count" else round(v, 2)) for k, v in out.items()}
