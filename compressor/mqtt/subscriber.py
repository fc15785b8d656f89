"""Gateway side: MQTT messages -> ``OUT/DEVICE/NAME.png``, each (device, sequence) written once.

:class:`Gateway` handles one message at a time and knows nothing about MQTT:

1. the format (:mod:`~compressor.mqtt.uplinks`) gives the device and the payload;
2. the payload (:mod:`~compressor.mqtt.payload`) gives the sequence number, the name and the
   image message; a sequence number already handled for that device is a duplicate;
3. the decoder turns the message into pixels (a message of another model fails its check);
4. the PNG is written atomically and made durable, and the sequence number is recorded in
   the device's progress file (``OUT/DEVICE/mqtt-progress.json``) at most ``FLUSH_S`` later.

The progress file is a record and a fast path, not the guarantee: a message redelivered after
a crash that beat the progress file finds its PNG on disk with the same pixels and is logged
``already-on-disk``, not written again. So the progress file need not be synced per image,
which halves the gateway's fsyncs.

A bad message (not parseable, another model, damaged, a name clash) is logged with its
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
from compressor.io.atomic import atomic_write_json
from compressor.io.files import read_image, write_png
from compressor.mqtt import client as mqttc
from compressor.mqtt import uplinks
from compressor.mqtt.payload import unpack_payload
from compressor.mqtt.sequences import SeenSequences, read_json_state

PROGRESS_FILE = "mqtt-progress.json"
MAX_DEVICES_IN_MEMORY = 1024  # progress of others is reloaded from disk when they speak again
FLUSH_S = 0.5  # longest a handled sequence number waits before its progress file records it
INCOMPLETE_EXIT = 3


class _Device:
    def __init__(self, folder: Path, device: str):
        self.folder, self.device = folder, device
        doc = read_json_state(folder / PROGRESS_FILE, "gateway progress")
        try:
            self.seen = SeenSequences((doc or {}).get("seen", []))
        except ValueError as e:
            raise MqttError(f"{folder / PROGRESS_FILE} is damaged ({e}); move it away to start over") from None
        forgotten = (doc or {}).get("forgotten", 0)
        self.seen.forgotten = forgotten if type(forgotten) is int and forgotten >= 0 else 0
        if doc is not None and doc.get("device") != device:
            raise MqttError(f"{folder / PROGRESS_FILE} belongs to device {doc.get('device')!r}; move it away")

        self.dirty = False

    def record(self, seq: int) -> None:
        self.seen.add(seq)
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            doc = {"device": self.device, "seen": self.seen.ranges(), "forgotten": self.seen.forgotten}
            atomic_write_json(self.folder / PROGRESS_FILE, doc)
            self.dirty = False


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
        seq = payload.sequence
        state = self._device(device)
        if seq in state.seen:
            return {"event": "duplicate", "device": device, "seq": seq}
        try:
            pixels = self.decode(payload.message)
        except CodeError as e:  # another model, damaged, a lossless check that failed
            state.record(seq)
            return {"event": "bad", "device": device, "seq": seq, "reason": str(e)}
        except Exception as e:  # a message that trips the decoder must not stop every later one
            state.record(seq)
            reason = f"the decoder failed on this message ({type(e).__name__}: {e}); please report it"
            return {"event": "bad", "device": device, "seq": seq, "reason": reason}
        path = state.folder / f"{payload.name if payload.name is not None else f'{seq:08d}'}.png"
        event = "written"
        if path.exists():  # written before a crash, before the progress file; or another image's name
            if not np.array_equal(read_image(path), pixels):
                state.record(seq)
                reason = f"{path} exists with another image; not overwritten (names must be unique per device)"
                return {"event": "bad", "device": device, "seq": seq, "reason": reason}
            event = "already-on-disk"
        else:
            write_png(path, pixels)
        state.record(seq)
        return {"event": event, "device": device, "seq": seq, "file": str(path)}

    def _device(self, device: str) -> _Device:
        state = self._devices.get(device)
        if state is None:
            folder = self.out / device
            folder.mkdir(parents=True, exist_ok=True)
            state = _Device(folder, device)
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
