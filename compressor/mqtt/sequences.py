"""Sequence numbers that survive restarts: the camera's counter and the gateway's record of what it has.

Camera: :class:`SequenceCounter` *reserves* numbers on disk before the images carrying them
are published, so a publisher killed mid-batch and started again continues after the
reserved block and never reuses a number (a reserved number that was never sent is a gap,
which the gateway tolerates).

Gateway: :class:`SeenSequences` is the set of numbers already handled for one device, kept
as sorted inclusive ranges, so an in-order stream costs one range whatever its length. QoS 1
redelivery and network-server retries arrive out of order, so it is a set, not a watermark.
Memory is bounded: past ``max_ranges`` gaps the two oldest ranges are joined (the oldest gap
is forgotten and reported), so a hostile device cannot grow it without limit. Every number
in a forgotten gap is at most ``forgotten_upto``, so a late image can still be told from a
redelivery there (by its file) without keeping the gaps.

Both are written with :mod:`compressor.io.atomic`, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

from compressor.errors import MqttError
from compressor.io.atomic import atomic_write_json
from compressor.mqtt.payload import MAX_SEQUENCE

MAX_RANGES = 4096
MAX_STATE_BYTES = 1 << 20
MAX_HISTORY = 256  # message digests a camera keeps for the short form's guard (short_sequences.GUARD)


def read_json_state(path: Path, what: str) -> dict | None:
    """A small JSON object written by this module, or None if the file does not exist."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(raw) > MAX_STATE_BYTES:
        raise MqttError(f"{path} ({what}) is over {MAX_STATE_BYTES} bytes: damaged; move it away to start over")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise MqttError(f"{path} ({what}) is damaged ({e}); move it away to start over") from None
    if not isinstance(doc, dict):
        raise MqttError(f"{path} ({what}) is damaged (not a JSON object); move it away to start over")
    return doc


class SequenceCounter:
    """The camera's next sequence number for one device, persisted in ``path``.

    ``history`` (sequence -> message digest of the last images sent) is kept in the same file
    for :class:`~compressor.mqtt.short_sequences.FormChooser`, so its guard against identical
    images holds across restarts; :meth:`remember` stores it.
    """

    def __init__(self, path: str | Path, device: str):
        self.path, self.device = Path(path), device
        self.history: dict[int, str] = {}
        doc = read_json_state(self.path, "publisher sequence state")
        if doc is None:
            self.next = 0
        else:
            nxt = doc.get("next_sequence")
            if doc.get("device") != device:
                raise MqttError(
                    f"{self.path} counts sequence numbers for device {doc.get('device')!r}, not {device!r}: "
                    "give each device its own --state file"
                )
            if isinstance(nxt, bool) or not isinstance(nxt, int) or not 0 <= nxt <= MAX_SEQUENCE + 1:
                raise MqttError(f"{self.path} has no valid next_sequence; move it away to start over")
            self.next = nxt
            history = doc.get("history", [])
            ok = isinstance(history, list) and len(history) <= MAX_HISTORY
            ok = ok and all(
                isinstance(h, list) and len(h) == 2 and type(h[0]) is int and isinstance(h[1], str) for h in history
            )
            if not ok:
                raise MqttError(f"{self.path} has a damaged history; move it away to start over")
            self.history = {h[0]: h[1] for h in history}

    def reserve(self, count: int) -> range:
        """``count`` fresh numbers, recorded as used on disk before they are returned."""
        if self.next + count > MAX_SEQUENCE + 1:
            raise MqttError(f"device {self.device!r} has used its {MAX_SEQUENCE + 1} sequence numbers")
        block = range(self.next, self.next + count)
        self._write(block.stop, self.history)
        self.next = block.stop
        return block

    def remember(self, history: dict[int, str]) -> None:
        """Store the digests of the images about to be sent (before they are published)."""
        self.history = dict(sorted(history.items())[-MAX_HISTORY:])
        self._write(self.next, self.history)

    def _write(self, next_sequence: int, history: dict[int, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"device": self.device, "next_sequence": next_sequence}
        atomic_write_json(self.path, {**doc, "history": [[s, d] for s, d in sorted(history.items())]})


class SeenSequences:
    """A set of sequence numbers as sorted, disjoint, non-adjacent inclusive ranges ``[first, last]``."""

    def __init__(self, ranges: list[list[int]] | None = None, max_ranges: int = MAX_RANGES):
        self.max_ranges = max_ranges
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self.forgotten = 0  # numbers in gaps given up to keep memory bounded
        self.forgotten_upto = -1  # the highest number a forgotten gap may hold (-1: none forgotten)
        for r in ranges or []:
            ok = isinstance(r, list) and len(r) == 2 and all(type(v) is int for v in r)
            if not ok or not 0 <= r[0] <= r[1] <= MAX_SEQUENCE or (self._lasts and r[0] <= self._lasts[-1] + 1):
                raise ValueError(f"bad range {r!r}")
            self._firsts.append(r[0])
            self._lasts.append(r[1])
        if len(self._firsts) > max_ranges:
            raise ValueError(f"{len(self._firsts)} ranges, more than {max_ranges}")

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self._firsts, seq) - 1
        return i >= 0 and seq <= self._lasts[i]

    def maybe_forgotten(self, seq: int) -> bool:
        """Whether ``seq`` may be in a gap given up to bound memory rather than handled.

        Ranges are only ever joined, never split, so a gap joined away stays below the end of
        the range it was joined into: ``forgotten_upto``, the highest such end.
        """
        return seq <= self.forgotten_upto

    def __len__(self) -> int:
        return sum(b - a + 1 for a, b in zip(self._firsts, self._lasts))

    def ranges(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self._firsts, self._lasts)]

    def add(self, seq: int) -> None:
        if seq in self:
            return
        i = bisect.bisect_right(self._firsts, seq)  # ranges before i start at or below seq
        joins_left = i > 0 and self._lasts[i - 1] == seq - 1
        joins_right = i < len(self._firsts) and self._firsts[i] == seq + 1
        if joins_left and joins_right:
            self._lasts[i - 1] = self._lasts.pop(i)
            self._firsts.pop(i)
        elif joins_left:
            self._lasts[i - 1] = seq
        elif joins_right:
            self._firsts[i] = seq
        else:
            self._firsts.insert(i, seq)
            self._lasts.insert(i, seq)
        if len(self._firsts) > self.max_ranges:  # forget the oldest gap
            self.forgotten += self._firsts[1] - self._lasts[0] - 1
            self._lasts[0] = self._lasts.pop(1)
            self._firsts.pop(1)
            self.forgotten_upto = max(self.forgotten_upto, self._lasts[0])
