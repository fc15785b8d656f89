"""Gateway side: MQTT messages -> ``OUT/DEVICE/NAME.png``, each (device, sequence) written once.

:class:`Gateway` handles one message at a time and knows nothing about MQTT:

1. the format (:mod:`~compressor.mqtt.uplinks`) gives the device and the payload;
2. the payload (:mod:`~compressor.mqtt.payload`) gives the sequence number, the name and the
   image message; a sequence number already handled for that device is a duplicate (another
   image in its file is logged bad: a camera that lost its counter and counts again from 0). A
   short-form payload's number is extended, and its redelivery recognised by (number,
   message digest), by :mod:`~compressor.mqtt.short_sequences`;
3. the decoder turns the message into pixels (a message of another model fails its check);
4. the PNG is written atomically and made durable, and the sequence number is recorded in
   the device's progress file (``OUT/DEVICE/mqtt-progress.json``) at most ``FLUSH_S`` later
   (both through :class:`~compressor.io.gateway_store.GatewayFolder`, which the TCP receiver
   uses too).

The progress file is a record and a fast path, not the guarantee: a message redelivered after
a crash that beat the progress file finds its PNG on disk with the same pixels and is logged
``already-on-disk``, not written again (a device's numbered files past its record are taken
as handled when it is loaded, so short-form numbers extend from where the files are). So the
progress file need not be synced per image, which halves the gateway's fsyncs.

A bad message (not parseable, another model, damaged, a name clash, a device id that the file
system folds onto another's folder, by case or trailing dots) is logged with its
device and sequence number and counted as handled; it never stops the gateway. Only a
failure of the gateway's own disk stops it, *without* acknowledging the message, so the
broker keeps it.

:func:`run` connects a Gateway to a broker: persistent session, QoS 1 subscription, and a
PUBACK sent only after the message is handled (paho's manual ack). So a gateway killed
at any moment loses nothing: an unacknowledged message is redelivered, and one written but
not yet recorded is found on disk with the same pixels and recorded then
("already-on-disk"), not written twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from compressor.errors import CodeError, MqttError, UplinkError
from compressor.io.gateway_store import ALREADY_ON_DISK, CLASH, GatewayFolder
from compressor.mqtt import client as mqttc
from compressor.mqtt import uplinks
from compressor.mqtt.payload import MAX_SEQUENCE, unpack_payload
from compressor.mqtt.sequences import SeenSequences
from compressor.mqtt.short_sequences import RECENT, Extender, message_digest

PROGRESS_FILE = "mqtt-progress.json"
MAX_DEVICES_IN_MEMORY = 1024  # progress of others is reloaded from disk when they speak again
FLUSH_S = 0.5  # longest a handled sequence number waits before its progress file records it
INCOMPLETE_EXIT = 3


class _Twin(MqttError):
    """A device id whose folder holds another device's progress: a file system that folds case
    (FAT/exFAT cards, macOS, Windows) or drops trailing dots (FAT/exFAT, Windows: ``cam1.`` is
    ``cam1``) maps two ids to one folder. Any peer can pick such an id, so it is a ``bad``
    message for that id, never a stop of the gateway for every device."""


class _Device:
    """One device on the gateway: its folder (:class:`GatewayFolder`) and its numbering (:class:`Extender`)."""

    def __init__(self, folder: Path, device: str):
        self.device = device
        self.store = GatewayFolder(folder, PROGRESS_FILE, error=MqttError, what="gateway progress")
        doc = self.store.load() or {"device": device}
        owner = doc.get("device")
        if isinstance(owner, str) and owner != device:
            raise _Twin(
                f"device {device!r} would share the folder of device {owner!r} on this file system "
                f"(case or trailing dots folded); not written (give devices ids that differ by more than "
                f"case and trailing dots, or move {self.store.progress_path} away if it was put there)"
            )
        if owner != device:
            raise self.store.damaged(f"'device' is {owner!r}")
        try:
            self.seen = SeenSequences(doc.get("seen", []))
            recent = _recent(doc.get("recent", []))
        except ValueError as e:
            raise self.store.damaged(e) from None
        forgotten = doc.get("forgotten", 0)
        self.seen.forgotten = forgotten if type(forgotten) is int and forgotten >= 0 else 0
        upto = doc.get("forgotten_upto")
        if type(upto) is int and -1 <= upto <= MAX_SEQUENCE:
            self.seen.forgotten_upto = upto
        elif self.seen.forgotten:  # a record from before the bound was kept: any number may be in a gap
            self.seen.forgotten_upto = MAX_SEQUENCE
        ranges = self.seen.ranges()
        self.numbers = Extender(self.seen, recent, ranges[-1][1] if ranges else -1)
        # Files written after the last record (a crash): their numbers are handled too.
        self.dirty = bool(self.numbers.catch_up(lambda x: self.store.has(_numbered(x))))
        self.kept = self.store.folder.is_dir()  # once it had a folder, its progress is always saved

    def record(self, seq: int, digest: str | None = None, short: bool = False) -> None:
        self.numbers.record(seq, digest, short)
        self.dirty = True
        self.kept = self.kept or self.store.folder.is_dir()  # an image placed: see save

    def save(self) -> None:
        """Write the progress file, if anything changed, and only once the device has a folder.

        The folder appears with the device's first image: messages that never decode (another
        model, damage, a stranger on the broker inventing device ids) leave nothing on disk,
        so they cannot fill it with one folder and progress file per invented id. A folder
        taken away after that (an archiving job) is made again: its numbers are still handled.
        """
        if self.dirty and self.kept:
            recent = [[x, d] for x, d in sorted(self.numbers.recent.items())]
            doc = {"device": self.device, "seen": self.seen.ranges(), "forgotten": self.seen.forgotten}
            doc["forgotten_upto"] = self.seen.forgotten_upto
            self.store.save({**doc, "recent": recent})
            self.dirty = False


def _recent(items) -> dict[int, str | None]:
    """The progress file's ``recent``: [[number, digest or null], ...], at most RECENT + 1 pairs."""
    if not isinstance(items, list) or len(items) > RECENT + 1:
        raise ValueError(f"'recent' must be a list of at most {RECENT + 1} pairs")
    out = {}
    for item in items:
        ok = isinstance(item, list) and len(item) == 2 and type(item[0]) is int and 0 <= item[0] <= MAX_SEQUENCE
        if not ok or not (item[1] is None or (isinstance(item[1], str) and len(item[1]) == 16)):
            raise ValueError(f"bad 'recent' entry {item!r:.60}")
        out[item[0]] = item[1]
    return out


def _numbered(seq: int) -> str:
    """The file name of an unnamed image: its sequence number, 8 digits at least."""
    return f"{seq:08d}"


class Gateway:
    """Decodes payloads into ``out/DEVICE/NAME.png``; ``decode(message) -> uint8 (H, W)``.

    ``handle`` returns the event it logged: a dict with ``event`` one of ``written``,
    ``already-on-disk``, ``duplicate``, ``bad`` (plus device, seq, reason where known).
    ``flush`` writes pending progress files; ``handle`` calls it every ``FLUSH_S``, and a
    caller should call it when idle and before exiting. Both may be called from any thread.
    """

    def __init__(self, out: str | Path, decode: Callable[[bytes], np.ndarray], fmt: str = "raw", log=None):
        if fmt not in uplinks.FORMATS:
            raise ValueError(f"format must be one of {uplinks.FORMATS}, got {fmt!r}")
        self.out, self.decode, self.fmt = Path(out), decode, fmt
        self.log = log or (lambda event: None)
        self._devices: dict[str, _Device] = {}
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def handle(self, topic: str, data: bytes) -> dict:
        """Handle one message. Raises only ``OSError``/``MqttError`` for the gateway's own storage."""
        with self._lock:
            event = self._handle(topic, data)
            if time.monotonic() - self._flushed >= FLUSH_S:
                self._flush()
        self.log(event)
        return event

    def flush(self) -> None:
        """Write the progress files of devices with sequence numbers not yet recorded."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        for state in self._devices.values():
            state.save()
        self._flushed = time.monotonic()

    def _handle(self, topic: str, data: bytes) -> dict:
        try:
            device, raw = uplinks.parse(self.fmt, topic, data)
        except UplinkError as e:
            return {"event": "bad", "topic": topic, "seq": None, "reason": str(e)}
        try:
            payload = unpack_payload(raw)
        except CodeError as e:
            return {"event": "bad", "device": device, "seq": None, "reason": str(e)}
        try:
            state = self._device(device)
        except _Twin as e:
            return {"event": "bad", "device": device, "seq": None, "reason": str(e)}
        if payload.short:
            return self._handle_short(state, payload)
        seq = payload.sequence
        name = payload.name if payload.name is not None else _numbered(seq)
        # A number already handled is a redelivery unless its file holds another image (a camera
        # whose counter went back, e.g. a lost state file: logged bad, below) or it may lie in a
        # gap given up to bound memory (SeenSequences.maybe_forgotten: written if new). With no
        # file it is a duplicate without a decode: the message was bad, or a downstream process
        # took its image away, and writing it again would deliver that image twice.
        again = seq in state.seen and not state.numbers.found_on_disk(seq)
        if again and not state.store.has(name) and not state.seen.maybe_forgotten(seq):
            return {"event": "duplicate", "device": device, "seq": seq}
        pixels = self._decode(state, payload.message, seq)
        if isinstance(pixels, dict):
            return pixels
        kind, path = state.store.place(name, pixels)
        state.record(seq)
        if kind == CLASH:
            reason = f"{path} exists with another image; not overwritten (names must be unique per device)"
            if again and payload.name is None:  # a named one: as likely the redelivery of a name clash
                reason += f"; number {seq} was handled before: has the camera's counter gone back (lost state file)?"
            return {"event": "bad", "device": device, "seq": seq, "reason": reason}
        if again and kind == ALREADY_ON_DISK:
            return {"event": "duplicate", "device": device, "seq": seq}
        return {"event": kind, "device": device, "seq": seq, "file": str(path)}

    def _handle_short(self, state: _Device, payload) -> dict:
        """A short-form payload: its number is extended (:mod:`compressor.mqtt.short_sequences`)."""
        device, residue, digest = state.device, payload.sequence, message_digest(payload.message)
        seq = state.numbers.redelivery(residue, digest)
        if seq is not None:
            return {"event": "duplicate", "device": device, "seq": seq}
        pixels = self._decode(state, payload.message, None)
        if isinstance(pixels, dict):  # not recorded: a foreign or damaged message must not take a number
            return pixels
        for found in state.numbers.unknown(residue):  # written just before a crash, not yet recorded
            if state.store.holds(_numbered(found), pixels):
                state.record(found, digest, short=True)
                file = str(state.store.image_path(_numbered(found)))
                return {"event": "already-on-disk", "device": device, "seq": found, "file": file}
        for seq in state.numbers.candidates(residue):
            kind, path = state.store.place(_numbered(seq), pixels)
            if kind != CLASH:  # a clash: that number's file holds another image; try one window on
                state.record(seq, digest, short=True)
                return {"event": kind, "device": device, "seq": seq, "file": str(path)}
        reason = (
            "no number left for this short-form image: every candidate's file is taken, "
            f"or the device's numbers reach {MAX_SEQUENCE}"
        )
        return {"event": "bad", "device": device, "seq": None, "reason": reason}

    def _decode(self, state: _Device, message: bytes, seq: int | None):
        """The pixels, or the ``bad`` event (``seq`` recorded as handled, if given) when it does not decode."""
        try:
            return self.decode(message)
        except CodeError as e:  # another model, damaged, a lossless check that failed
            reason = str(e)
        except Exception as e:  # a message that trips the decoder must not stop every later one
            reason = f"the decoder failed on this message ({type(e).__name__}: {e}); please report it"
        if seq is not None:
            state.record(seq)
        return {"event": "bad", "device": state.device, "seq": seq, "reason": reason}

    def _device(self, device: str) -> _Device:
        state = self._devices.get(device)
        if state is None:
            state = _Device(self.out / device, device)  # no folder until an image is written: see save
            if len(self._devices) >= MAX_DEVICES_IN_MEMORY:
                self._devices.pop(next(iter(self._devices))).save()
            self._devices[device] = state
        return state


def run(
    gateway: Gateway,
    broker: mqttc.Broker,
    topics: Sequence[str],
    client_id: str,
    *,
    count: int | None = None,
    idle_timeout: float | None = None,
    log: Callable[[dict], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> int:
    """Subscribe and handle messages until ``count`` new images are on disk, ``idle_timeout``
    seconds pass without a message, or ``stop`` is set.

    Returns 0 (count reached, or stopped with no count), ``INCOMPLETE_EXIT`` (idle before
    ``count``); raises MqttError when the broker refuses us or the gateway's disk fails.
    Once stopping (``stop``, Ctrl-C, an error), messages still in paho's buffers are left
    unacknowledged for the broker to deliver to the next session, not decoded: a gateway with a
    backlog stops at once instead of after the backlog (a test saw over 30 s on a loaded machine).
    """
    stop = stop or threading.Event()
    cond = threading.Condition()
    state = {"new": 0, "last": time.monotonic(), "fatal": None}

    def on_connect(client, userdata, flags, reason_code, properties):
        if why := mqttc.refusal(reason_code):
            fail(why)
            return
        if reason_code.is_failure:
            log({"event": "refused-connection", "reason": str(reason_code)})
            return
        log(
            {
                "event": "connected",
                "broker": f"{broker.host}:{broker.port}",
                "client_id": client_id,
                "session_present": bool(flags.session_present),
            }
        )
        client.subscribe([(t, 1) for t in topics])

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            fail(f"broker refused the subscription to {list(topics)}: check the topic and the account's ACL")
            return
        log({"event": "subscribed", "topics": list(topics), "qos": 1})

    def on_disconnect(client, userdata, flags, reason_code, properties):
        if not stop.is_set():
            log({"event": "disconnected", "reason": str(reason_code)})

    def on_message(client, userdata, msg):
        if stop.is_set():  # stopping: leave it unacknowledged, the broker delivers it to the next session
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<not UTF-8>"
        try:
            event = gateway.handle(topic, msg.payload) if topic != "<not UTF-8>" else None
        except (OSError, MqttError) as e:  # our own disk: keep the message on the broker, stop
            fail(f"cannot store the image from {topic}: {e}")
            return
        except Exception as e:  # a bug must not kill paho's thread silently; keep the message too
            fail(f"unexpected {type(e).__name__} on {topic}: {e}")
            return
        if event is None:
            log({"event": "bad", "topic": topic, "seq": None, "reason": "topic is not UTF-8"})
        client.ack(msg.mid, msg.qos)
        with cond:
            state["last"] = time.monotonic()
            if event is not None and event["event"] == "written":
                state["new"] += 1
            cond.notify_all()

    def fail(why: str):
        with cond:
            state["fatal"] = state["fatal"] or why
            cond.notify_all()

    client = mqttc.make_client(broker, client_id, manual_ack=True)
    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_disconnect, client.on_message = on_disconnect, on_message
    mqttc.start(client, broker)
    try:
        with cond:
            while True:
                if state["fatal"] is not None:
                    raise MqttError(state["fatal"])
                if count is not None and state["new"] >= count:
                    return 0
                if stop.is_set():
                    return 0 if count is None else INCOMPLETE_EXIT
                idle = time.monotonic() - state["last"]
                if idle_timeout is not None and idle >= idle_timeout:
                    log({"event": "idle", "seconds": round(idle, 1), "written": state["new"]})
                    return INCOMPLETE_EXIT if count is not None else 0
                cond.wait(0.2)
                if time.monotonic() - state["last"] >= FLUSH_S:
                    gateway.flush()
    finally:
        stop.set()
        client.disconnect()
        client.loop_stop()
        with contextlib.suppress(OSError):  # a record only: the PNGs are on disk already
            gateway.flush()
