"""The arithmetic of "bytes needed for the same quality": ours ÷ the best classical codec.

A classical codec is measured along a quality sweep (one point per setting: mean bytes per
image, each image a complete file, and the quality of the decoded files). At one of our
operating points of quality ``q`` the bytes a codec needs are read off its sweep:

- quality is "goodness", higher is better: PSNR in dB for grayscale images, minus the pixel
  error in % for binary ones (so 0 % error is the best finite value); a lossless setting and
  a lossy setting that happens to be exact have infinite goodness;
- the sweep's cheapest way to reach at least ``g`` is the running minimum of bytes taken
  from the best setting down (a setting that costs more for less quality never counts);
- between two settings the bytes are interpolated linearly in quality; below the lowest
  setting's quality the lowest setting is needed; above the best setting's quality the
  codec cannot reach ``q`` and needs ``inf`` bytes.

The best classical codec at ``q`` is the cheapest of every lossy sweep and every lossless
size (lossless reaches every quality). When no lossy setting reaches ``q`` the comparison
is with the best lossless size, and the row says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

INF = float("inf")


def goodness(quality: float | None, *, binary: bool) -> float:
    """Higher-is-better quality: PSNR dB (None = exact = inf), or minus pixel error % for binary images."""
    if binary:
        return -float(quality)
    return INF if quality is None or not math.isfinite(quality) else float(quality)


def bytes_for_quality(sweep: Iterable[tuple[float, float]], target: float) -> float:
    """Bytes per image a codec's sweep needs for goodness ``target``; ``inf`` beyond its reach.

    ``sweep``: ``(bytes_per_image, goodness)`` pairs, one per setting, in any order.
    """
    points = [(float(g), float(b)) for b, g in sweep if not math.isnan(g)]
    if not points:
        return INF
    exact = [b for g, b in points if g == INF]
    finite = sorted((g, b) for g, b in points if g != INF)
    if target == INF or (finite and target > finite[-1][0]) or not finite:
        return min(exact, default=INF)
    gs = np.array([g for g, _ in finite])
    bs = np.array([b for _, b in finite])
    cheapest = np.minimum.accumulate(bs[::-1])[::-1]  # bytes to reach at least gs[i]
    needed = float(np.interp(target, gs, cheapest))
    return min(needed, min(exact, default=INF))


@dataclass(frozen=True)
class Comparison:
    """The best classical codec at one quality: its name, the bytes it needs, and how it got there."""

    codec: str
    bytes_per_image: float
    lossless_fallback: bool  # no lossy setting of any codec reaches the quality
    below_sweep: bool = False  # the quality is below the codec's lowest setting: its cheapest file


def best_classical(
    sweeps: dict[str, list[tuple[float, float]]], lossless: dict[str, float], target: float
) -> Comparison:
    """The cheapest classical way to reach goodness ``target``.

    ``sweeps``: ``{codec: [(bytes, goodness), ...]}`` lossy settings; ``lossless``:
    ``{codec: bytes}`` for each lossless mode. Raises ``ValueError`` when there is nothing
    to compare with.
    """
    lossy = {name: bytes_for_quality(points, target) for name, points in sweeps.items()}
    candidates = {n: b for n, b in lossy.items() if math.isfinite(b)}
    candidates |= {f"{n} lossless": float(b) for n, b in lossless.items()}
    if not candidates:
        raise ValueError("no classical codec was measured: nothing to compare with")
    name = min(candidates, key=lambda n: (candidates[n], n))
    floor = name in sweeps and all(g > target for _, g in sweeps[name])
    return Comparison(name, candidates[name], not any(math.isfinite(b) for b in lossy.values()), floor)


def ratio(ours_bytes: float, comparison: Comparison) -> float:
    """Ours ÷ best classical bytes for the same quality (below 1: we need fewer bytes)."""
    return ours_bytes / comparison.bytes_per_image
