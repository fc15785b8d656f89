"""The local engine: every unit in this process, one after another; no Ray.

It makes the same calls as a Ray worker (:mod:`compressor.jobs.work`), so its output is the
reference that ``--engine ray`` must match byte for byte. It needs pyarrow for the Parquet
file and nothing else beyond the device install.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from compressor.jobs.sources import Plan


def run(work_cls, kwargs: dict, plan: Plan, sink, *, on_rows: Callable[[int], None] | None = None, **_) -> None:
    """Feed every unit of ``plan`` through one ``work_cls(**kwargs)`` into ``sink``."""
    work = work_cls(**kwargs)
    for unit in plan.units:
        for table in work({"unit": [unit.to_json()]}):
            sink.write(table)
            if on_rows is not None:
                on_rows(table.num_rows)


class ProgressLine:
    """``label: 3,072/10,000 images (31%), 2,950 images/s`` on one rewritten stderr line.

    Drawn at most twice a second, and only on a terminal, so logs and pipes stay clean; the
    summary line printed at the end is the record.
    """

    def __init__(self, label: str, stream=None):
        self.label, self.total, self.done = label, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = getattr(self.stream, "isatty", lambda: False)()
        self.start, self.last = time.perf_counter(), float("-inf")

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.perf_counter()
        if self.enabled and (now - self.last >= 0.5 or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            self.stream.write(
                f"\r{self.label}: {self.done:,}/{self.total:,} images ({100 * self.done / self.total:.0f}%), "
                f"{rate:,.0f} images/s"
            )
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
