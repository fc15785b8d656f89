"""Camera side: images -> payloads that fit -> QoS 1 messages that reach the broker, even across outages.

Two steps, usable apart:

1. :func:`encode_payloads` turns images into :mod:`~compressor.mqtt.payload` payloads. With
   ``max_payload`` (51 for LoRaWAN DR0 in most regions) each image gets the finest step whose
   *whole payload* fits, or, when a step or quality was asked for and that does not fit, the
   finest coarser one that does (the item says so); an image that fits at no step is refused
   and named, and the others go on.
2. :class:`Publisher` publishes them with QoS 1 on one topic and waits for the broker's
   PUBACKs. paho keeps every unacknowledged message and resends it after a reconnect, so
   messages published while the broker is away are delivered when it is back. At most
   ``window`` messages wait for a PUBACK at once, which bounds memory during a long outage.

Sequence numbers come from a :class:`~compressor.mqtt.sequences.SequenceCounter`, reserved on
disk first, so a restarted camera never reuses one. Most payloads carry them in the 1-byte
short form; :class:`~compressor.mqtt.short_sequences.FormChooser` says which may.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from compressor import wire
from compressor.errors import MqttError, RateError
from compressor.mqtt import client as mqttc
from compressor.mqtt.payload import SHORT_WINDOW, header_size, pack_payload, unpack_payload
from compressor.mqtt.short_sequences import FormChooser

DEFAULT_WINDOW = 1000


@dataclass
class Item:
    """One image on its way: its number, its name, its payload (None: refused) and why, if anything changed.

    ``short``: the payload is in the 1-byte short form (:mod:`compressor.mqtt.short_sequences`).
    """

    sequence: int
    name: str
    payload: bytes | None
    step_index: int | None = None
    note: str | None = None
    short: bool = False
    message: bytes | None = field(default=None, repr=False)


def encode_payloads(
    encoder,
    images,
    names: Sequence[str],
    sequences: Sequence[int],
    *,
    max_payload: int | None = None,
    step: float | None = None,
    quality: int | None = None,
    mode: str = "entropy",
    with_names: bool = True,
    forms: FormChooser | None = None,
) -> list[Item]:
    """One :class:`Item` per image of ``images`` (N, H, W); see the module docstring for how a step is chosen.

    ``forms`` decides which payloads take the short form; by default a fresh
    :class:`FormChooser` (this call is a run: its first image goes in the full form). The step
    is chosen against the full form's size, so an image in the short form only gets smaller.
    """
    items = _encode(encoder, images, names, sequences, max_payload, step, quality, mode, with_names)
    forms = forms if forms is not None else FormChooser()
    for item in items:
        if item.payload is None:
            forms.skipped()
        elif forms.short(item.sequence, item.message, item.name if with_names else None):
            item.payload, item.short = pack_payload(item.sequence, item.message, short=True), True
            forms.sent(item.sequence, item.message)
        else:
            forms.sent(item.sequence, item.message)
    return items


def _encode(encoder, images, names, sequences, max_payload, step, quality, mode, with_names) -> list[Item]:
    images = np.asarray(images)
    if len(names) != len(images) or len(sequences) != len(images):
        raise ValueError(f"{len(images)} images, {len(names)} names, {len(sequences)} sequence numbers")
    carried = list(names) if with_names else [None] * len(names)
    items = [Item(s, n, None) for s, n in zip(sequences, names)]
    every = len(images)  # each image has its name and sequence number already: the caller's budget held
    if max_payload is None:
        messages = encoder.compress(images, step=step, quality=quality, mode=mode, max_images=every)
        for item, msg, name in zip(items, messages, carried):
            _fill(item, msg, name, encoder.coding.model_id)
        return items
    budgets = [max_payload - header_size(s, n) for s, n in zip(sequences, carried)]
    asked = step is not None or quality is not None or mode == "lossless"
    if asked:
        wanted = encoder.coding.step_index(step, quality) if mode != "lossless" else None
        for i, msg in enumerate(encoder.compress(images, step=step, quality=quality, mode=mode, max_images=every)):
            if len(msg) <= budgets[i]:
                _fill(items[i], msg, carried[i], encoder.coding.model_id)
            elif mode == "lossless":
                need = len(msg) - budgets[i] + max_payload
                items[i].note = f"does not fit in {max_payload} bytes: its lossless payload needs {need}: not sent"
            else:
                _fit(encoder, images[i : i + 1], items[i], carried[i], budgets[i], max_payload, mode, wanted)
        return items
    groups: dict[int, list[int]] = {}
    for i, b in enumerate(budgets):
        groups.setdefault(b, []).append(i)
    for budget, idx in groups.items():
        try:
            messages = (
                encoder.compress(images[idx], target_bytes=budget, mode=mode, max_images=every) if budget >= 2 else None
            )
        except RateError:
            messages = None
        if messages is not None:
            for i, msg in zip(idx, messages):
                _fill(items[i], msg, carried[i], encoder.coding.model_id)
        else:  # at least one does not fit: find which, one by one
            for i in idx:
                _fit(encoder, images[i : i + 1], items[i], carried[i], budget, max_payload, mode, None)
    return items


def _fill(item: Item, message: bytes, name: str | None, model_id: bytes) -> None:
    item.payload, item.message = pack_payload(item.sequence, message, name), message
    item.step_index = wire.unpack_message(model_id, message)[0].step_index


def _fit(encoder, image, item: Item, name, budget: int, max_payload: int, mode: str, wanted: int | None) -> None:
    """The finest step whose payload fits, coarser than ``wanted`` when a step was asked for; else refuse."""
    n = len(encoder.coding.steps)
    if budget >= 2:
        if wanted is None:
            try:
                _fill(item, encoder.compress(image, target_bytes=budget, mode=mode)[0], name, encoder.coding.model_id)
                return
            except RateError:
                pass
        else:
            for index in range(wanted + 1, n):
                msg = encoder.compress(image, step=encoder.coding.steps[index], mode=mode)[0]
                if len(msg) <= budget:
                    _fill(item, msg, name, encoder.coding.model_id)
                    item.note = f"quality lowered from {n - wanted} to {n - index} to fit {max_payload} bytes"
                    return
    item.note = f"does not fit in {max_payload} bytes even at the coarsest step (quality 1): not sent"


@dataclass
class PublishResult:
    """Where a publish ended: which sequence numbers the broker acknowledged."""

    published: list[int] = field(default_factory=list)
    acknowledged: set[int] = field(default_factory=set)
    error: str | None = None
    payload_bytes: list[int] = field(default_factory=list)  # as published (a short payload may go full)

    @property
    def unacknowledged(self) -> list[int]:
        return [s for s in self.published if s not in self.acknowledged]


class Publisher:
    """Publishes payloads on ``topic`` with QoS 1 and a persistent session; see the module docstring."""

    def __init__(
        self,
        broker: mqttc.Broker,
        topic: str,
        client_id: str,
        *,
        window: int = DEFAULT_WINDOW,
        log: Callable[[str], None] = lambda msg: None,
        wrap: Callable[[bytes, int], bytes] | None = None,
    ):
        if not topic or any(c in topic for c in "+#\0"):
            raise ValueError(f"publish topic must be a plain topic without wildcards, got {topic!r}")
        if window < 1:
            raise ValueError("window must be >= 1")
        self.broker, self.topic, self.client_id, self.window, self.log = broker, topic, client_id, window, log
        self.wrap = wrap or (lambda payload, sequence: payload)
        self._connected = False
        self._unsteady: set[int] = set()  # mids that may still be overtaken: see publish()
        self._cond = threading.Condition()
        self._mids: dict[int, int] = {}  # mid -> sequence number, while unacknowledged
        self._early: set[int] = set()  # PUBACKs that arrived before publish() returned the mid
        self._fatal: str | None = None
        self._closing = False
        self.result = PublishResult()
        self.client = mqttc.make_client(broker, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def __enter__(self) -> Publisher:
        mqttc.start(self.client, self.broker)
        return self

    def __exit__(self, *exc) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, sequence: int, payload: bytes, timeout: float | None = None) -> None:
        """Queue one payload (waits while ``window`` are unacknowledged), then ``wrap`` it.

        A short-form payload is sent in the full form instead while the link is not steady:
        not connected, or some message published before a (re)connection is not yet
        acknowledged. paho sends a message published at that moment at once, ahead of those
        it stored to resend after the connection, so it can overtake them by any number; a
        short image overtaken by more than 15 would be misnumbered (docs/format.md).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._mids) >= self.window and self._fatal is None:
                if not self._cond.wait(_left(deadline)) and _left(deadline) == 0:
                    raise MqttError(f"no PUBACK from {self.broker.host}:{self.broker.port} for {timeout:g} s")
            self._check()
            steady = self._connected and not self._unsteady
        if not steady:
            payload = full_form(sequence, payload)
        # Not under self._cond: paho calls on_publish while holding its own queue lock.
        info = self.client.publish(self.topic, self.wrap(payload, sequence), qos=1)
        if info.rc == mqttc.paho().MQTT_ERR_QUEUE_SIZE:
            raise MqttError("paho's message queue is full")
        with self._cond:
            self.result.published.append(sequence)
            self.result.payload_bytes.append(len(payload))
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.result.acknowledged.add(sequence)
            else:
                self._mids[info.mid] = sequence
                if not steady:
                    self._unsteady.add(info.mid)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Until the broker has accepted the connection (True), or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._connected and self._fatal is None:
                if not self._cond.wait(_left(deadline)) and _left(deadline) == 0:
                    break
            self._check()
            return self._connected

    def wait(self, timeout: float | None = None) -> bool:
        """Until every published payload is acknowledged (True), or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._mids and self._fatal is None:
                if not self._cond.wait(_left(deadline)) and _left(deadline) == 0:
                    break
            self._check()
            return not self._mids

    def _check(self) -> None:
        if self._fatal is not None:
            self.result.error = self._fatal
            raise MqttError(self._fatal)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if why := mqttc.refusal(reason_code):
            with self._cond:
                self._fatal = why
                self._cond.notify_all()
            client.disconnect()
            return
        if not reason_code.is_failure:
            with self._cond:
                self._connected = True
                self._cond.notify_all()
            self.log(f"connected to {self.broker.host}:{self.broker.port} as {self.client_id}")
        else:
            self.log(f"broker refused the connection ({reason_code}); retrying")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            self._unsteady |= set(self._mids)  # paho resends these after the reconnection
            waiting = len(self._mids)
        if self._closing:
            return
        self.log(f"disconnected ({reason_code}); {waiting} messages kept for resending; reconnecting")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            seq = self._mids.pop(mid, None)
            self._unsteady.discard(mid)
            if seq is None:
                self._early.add(mid)
            else:
                self.result.acknowledged.add(seq)
            self._cond.notify_all()


def full_form(sequence: int, payload: bytes) -> bytes:
    """``payload`` with its number in the full form (unchanged if it is not a short-form payload)."""
    if payload[:1] and payload[0] & 0xFC == 0xF8:
        parsed = unpack_payload(payload)
        if parsed.short and parsed.sequence == sequence % SHORT_WINDOW:
            return pack_payload(sequence, parsed.message)
    return payload


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
