"""Validate a bundle's coding.json completely, before any runtime or coder sees it.

coding.json decides every byte of every code (steps, entropy tables, the lossless table),
so a value that is wrong in type or range must stop the bundle at load, not surface later as
a ``RuntimeWarning``, a division by zero or a table that decodes garbage. The checks follow
docs/bundle.md: 1..16 finite positive distinct steps, one valid table per step for the
model's latent size, a default and a lossless step index in range, a known lossless runtime
and precision, and a total table size within :data:`compressor.limits.MAX_TABLE_ENTRIES`.
"""

from __future__ import annotations

import math
from typing import Any

from compressor import limits
from compressor.coding.binary_context2 import ContextTable2
from compressor.coding.entropy import CdfTable
from compressor.coding.lossless import LosslessTable
from compressor.coding.rangecoder import PRECISION
from compressor.errors import ManifestError
from compressor.runtime.sessions import RUNTIMES

MAX_STEPS = 16
PRECISIONS = ("fp32", "int8")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check(raw: Any, *, latent_dim: int, where: str) -> None:
    """Raise ``ManifestError`` naming the first thing in ``raw`` (parsed coding.json) that is wrong."""

    def fail(message: str) -> None:
        raise ManifestError(f"{where}: {message}; re-export the bundle")

    if not isinstance(raw, dict):
        fail(f"must be a JSON object, got {type(raw).__name__}")
    for key in ("steps", "tables", "default_step_index"):
        if key not in raw:
            fail(f"missing required key {key!r}")
    if "precision" in raw and raw["precision"] != PRECISION:
        fail(f"'precision' must be {PRECISION}, got {raw['precision']!r}")
    steps = raw["steps"]
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        fail(f"'steps' must be a list of 1..{MAX_STEPS} numbers")
    for i, s in enumerate(steps):
        if not _is_number(s) or not math.isfinite(s) or s <= 0:
            fail(f"step {i} must be a finite positive number, got {s!r}")
    if len({float(s) for s in steps}) != len(steps):
        fail("'steps' holds the same step twice")
    default = raw["default_step_index"]
    if not _is_int(default) or not 0 <= default < len(steps):
        fail(f"'default_step_index' must be an integer 0..{len(steps) - 1}, got {default!r}")
    tables = raw["tables"]
    if not isinstance(tables, list) or len(tables) != len(steps):
        fail(f"'tables' must be a list of {len(steps)} tables, one per step")
    entries = 0
    for i, t in enumerate(tables):
        freqs = t.get("freqs") if isinstance(t, dict) else None
        if isinstance(freqs, list):
            entries += sum(len(row) if isinstance(row, list) else 1 for row in freqs)
        if entries > limits.MAX_TABLE_ENTRIES:
            fail(f"entropy tables hold more than {limits.MAX_TABLE_ENTRIES} entries")
        try:
            table = CdfTable.from_json(t)
        except ManifestError as e:
            fail(f"table {i}: {e}")
        if table.dims != latent_dim:
            fail(f"table {i} has {table.dims} dimensions, the model's latent has {latent_dim}")
    if "lossless" in raw:
        _check_lossless(raw["lossless"], len(steps), fail)
    if "binary_context2" in raw:
        _check_binary_context2(raw["binary_context2"], len(steps), fail)


def _check_lossless(section: Any, steps: int, fail) -> None:
    if not isinstance(section, dict):
        fail("'lossless' must be an object")
    for key in ("p1_freq", "runtime", "precision"):
        if key not in section:
            fail(f"'lossless' lacks {key!r}")
    freqs = section["p1_freq"]
    if not isinstance(freqs, list) or len(freqs) != 256:
        fail("'lossless.p1_freq' must be a list of 256 integers")
    if section["runtime"] not in RUNTIMES:
        fail(f"'lossless.runtime' must be one of {', '.join(RUNTIMES)}, got {section['runtime']!r}")
    if section["precision"] not in PRECISIONS:
        fail(f"'lossless.precision' must be one of {', '.join(PRECISIONS)}, got {section['precision']!r}")
    index = section.get("step_index", 0)
    if not _is_int(index) or not 0 <= index < steps:
        fail(f"'lossless.step_index' must be an integer 0..{steps - 1}, got {index!r}")
    try:
        LosslessTable.from_json(section)
    except ManifestError as e:
        fail(str(e))


def _check_binary_context2(section: Any, steps: int, fail) -> None:
    """Binary residual layout 2: the table itself, and a runtime, precision and step that exist."""
    if not isinstance(section, dict):
        fail("'binary_context2' must be an object")
    try:
        table = ContextTable2.from_json(section)
    except ManifestError as e:
        fail(str(e))
    if table.runtime not in RUNTIMES or table.precision not in PRECISIONS:
        fail(f"'binary_context2' names an unknown runtime/precision {table.runtime!r}/{table.precision!r}")
    if not 0 <= table.step_index < steps:
        fail(f"'binary_context2.step_index' must be an integer 0..{steps - 1}, got {table.step_index!r}")
