"""The short form's two halves: when the camera may send it, and how the gateway extends it.

The short form (:mod:`compressor.mqtt.payload`) carries a sequence number modulo ``WINDOW``
(64) in one byte, so a camera that has run for days still pays one byte per image. The full
number is rebuilt on the gateway from the device's recorded progress, as RTP and LoRaWAN do
with their 16-bit counters. Correctness rests on both sides keeping one contract:

**Camera** (:class:`FormChooser`) sends the *full* form for an image when

1. it is the first image of a run (a restart: the gateway may be far behind, or ahead);
2. the number before it was not sent in this run (a refused image, a reserved block skipped);
3. its number is a multiple of ``RESYNC`` (32): a gateway that lost track is corrected within
   32 images;
4. its message is byte-identical to the message of ``seq - k*WINDOW`` for k = 1..4 (``GUARD``),
   as the camera recorded them (the record survives restarts in the camera's state file).
   A static scene produces identical messages; without rule 4 the gateway could not tell
   the new image from a redelivery of the old one;
5. its number is 0..127, where the full form is one byte too.

and the short form otherwise (an unnamed version-1 entropy message; anything else is full).

**Gateway** (:class:`Extender`) keeps per device the numbers handled (a set), the highest of
them, and the message digest of each handled number in the last ``RECENT`` (128). A short
payload with residue ``r`` and message digest ``d`` is:

1. a **redelivery** of ``x`` if some handled ``x`` in the last ``RECENT`` numbers has
   ``x % WINDOW == r`` and digest ``d`` (rule 4 on the camera makes this unambiguous for any
   image sent less than ``GUARD - RECENT`` = 128 numbers after the gateway's highest);
2. after a crash, an image **already on disk** under ``x`` when ``x % WINDOW == r`` and ``x`` was
   found on disk past the record (:meth:`Extender.catch_up`) with the same pixels;
3. otherwise a **new image** numbered ``x``, the one number with ``x % WINDOW == r`` in
   ``[high - LATE + 1, high + WINDOW - LATE]``: up to ``LATE - 1`` (15) behind the highest (an
   image overtaken in transit keeps its number) or up to 48 ahead (images lost on the radio).
   If that ``x`` is already handled (with another digest), ``x + WINDOW``; and while the file
   that number names exists with other pixels (a record lost in a crash), one more window on.

What can go wrong, and why it is only a wrong *name*: a radio gap of 48 or more consecutive
lost uplinks (LoRaWAN; MQTT QoS 1 loses nothing) numbers the next short images a window (or more)
too low, until the next full form (at most ``RESYNC`` images). They are still written, once
each: a misnamed image takes a number whose own image was lost on the radio, and a
redelivery of it is recognised by its digest under that number. Never dropped, never
duplicated. The one residual case: after a radio gap of 128 or more lost uplinks, a short
image byte-identical (same code) to one of the gateway's last 128 with the same residue is
taken for its redelivery -- the same pixels are on disk, under the earlier number.

Pure bookkeeping: no I/O; the gateway's files are checked by its caller
(:class:`compressor.mqtt.subscriber.Gateway`). The layout is in docs/format.md, "Short form".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

from compressor.mqtt.payload import MAX_SEQUENCE, header_size, short_form_fits
from compressor.mqtt.payload import SHORT_WINDOW as WINDOW

RESYNC = 32
GUARD = 4 * WINDOW
RECENT = 2 * WINDOW
LATE = 16
MAX_PROBES = 1024  # windows stepped past clashing files before a short image is refused


def message_digest(message: bytes) -> str:
    """What camera and gateway compare messages by: BLAKE2b, 8 bytes, hex."""
    return hashlib.blake2b(bytes(message), digest_size=8).hexdigest()


class FormChooser:
    """The camera's choice of payload form for consecutive images (rules in the module docstring).

    ``history``: sequence number -> message digest of the camera's last sends (from its state
    file, so rule 4 holds across restarts). :meth:`sent` records each image as it is packed.
    """

    def __init__(self, history: Mapping[int, str] | None = None):
        self.history: dict[int, str] = dict(history or {})
        self._previous: int | None = None  # the last number sent in this run

    def short(self, sequence: int, message: bytes, name: str | None = None) -> bool:
        """Whether image ``sequence`` may go in the short form (the caller then calls :meth:`sent`)."""
        if not short_form_fits(message, name) or self._previous is None or self._previous != sequence - 1:
            return False
        if header_size(sequence) == 1:  # numbers 0..127: the full form is as short, and says more
            return False
        if sequence % RESYNC == 0:
            return False
        digest = message_digest(message)
        return all(self.history.get(sequence - k * WINDOW) != digest for k in range(1, GUARD // WINDOW + 1))

    def sent(self, sequence: int, message: bytes) -> None:
        self._previous = sequence
        self.history[sequence] = message_digest(message)
        for old in [s for s in self.history if s <= sequence - GUARD]:
            del self.history[old]

    def skipped(self) -> None:
        """An image was not sent (refused): the next one goes in the full form."""
        self._previous = None


class Extender:
    """The gateway's numbering for one device: handled numbers, the highest, recent digests.

    ``seen`` is a set-like of handled numbers (``in``, ``add``); ``recent`` maps the last
    ``RECENT`` handled numbers to their message digests (None: handled, digest unknown, e.g.
    found on disk after a crash). Both are the caller's to persist.
    """

    def __init__(self, seen, recent: Mapping[int, str | None] | None = None, high: int = -1):
        self.seen = seen
        self.recent: dict[int, str | None] = dict(recent or {})
        self.high = high

    def redelivery(self, residue: int, digest: str) -> int | None:
        """The handled number whose redelivery a short payload is, or None (rule 1)."""
        for x, d in self.recent.items():
            if d == digest and x % WINDOW == residue:
                return x
        return None

    def found_on_disk(self, sequence: int) -> bool:
        """Whether ``sequence`` was taken as handled only because its file was found (after a crash)."""
        return sequence in self.recent and self.recent[sequence] is None

    def unknown(self, residue: int) -> list[int]:
        """Recent handled numbers with this residue whose digest is unknown (found on disk after a
        crash): the caller compares their files' pixels before taking a short image for new."""
        return [x for x, d in self.recent.items() if d is None and x % WINDOW == residue]

    def candidates(self, residue: int) -> Iterable[int]:
        """Numbers a new short image may take, best first (rule 2); the caller skips clashing files.

        None past ``MAX_SEQUENCE``: a device whose highest number is near the top (a hostile or
        broken full-form number) must not make the gateway record a number its own progress
        file then refuses to load, which stopped the gateway at that device's next message.
        """
        low = self.high - LATE + 1
        x = low + (residue - low) % WINDOW
        if x < 0:
            x += WINDOW
        if x in self.seen:
            x += WINDOW
        for k in range(MAX_PROBES):
            if x + k * WINDOW > MAX_SEQUENCE:
                return
            if x + k * WINDOW not in self.seen:
                yield x + k * WINDOW

    def record(self, sequence: int, digest: str | None, short: bool = True) -> None:
        """``sequence`` is handled (written, found on disk, or refused as bad).

        ``digest``: of a short-form message (None: unknown, found on disk). A full-form
        payload's number is recorded without a digest entry: a short payload is never the
        redelivery of a full one (a redelivery is the same bytes).
        """
        self.seen.add(sequence)
        self.high = max(self.high, sequence)
        if short:
            self.recent[sequence] = digest
        else:
            self.recent.pop(sequence, None)
        if self.recent and min(self.recent) <= self.high - RECENT:
            for old in [s for s in self.recent if s <= self.high - RECENT]:
                del self.recent[old]

    def catch_up(self, exists: Callable[[int], bool]) -> list[int]:
        """After a crash the record may lag the files: take numbers whose file ``exists`` past the highest.

        Looks up to ``WINDOW`` numbers past the last one found, so a gap (a bad image, a lost
        uplink) does not stop it. Returns the numbers taken (recorded with unknown digest).
        """
        found, x, last = [], self.high + 1, self.high
        while x - last <= WINDOW and x <= MAX_SEQUENCE:  # a file named past it is not a number
            if exists(x):
                self.record(x, None)
                found.append(x)
                last = x
            x += 1
        return found
