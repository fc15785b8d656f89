"""MQTT messages -> (device, payload bytes), for our own topics and for LoRaWAN network servers.

Three formats, chosen with ``compressor subscribe --format``:

* ``raw``: the MQTT payload is the payload of :mod:`compressor.mqtt.payload`; the device is
  the last level of the topic (``PREFIX/DEVICE``).
* ``chirpstack``: ChirpStack v4 uplink events, JSON marshaler, on
  ``application/APPLICATION_ID/device/DEV_EUI/event/up``; the payload is base64 in ``data``,
  the device is ``deviceInfo.devEui``.
* ``ttn``: The Things Stack v3 uplink messages on ``v3/APP_ID@TENANT/devices/DEVICE_ID/up``;
  the payload is base64 in ``uplink_message.frm_payload``, the device is
  ``end_device_ids.device_id``.

A network server's JSON is input from the network, so it is parsed strictly and within a
budget: size checked before parsing, no NaN/Infinity, no duplicate keys, bounded nesting,
the base64 text checked for length and alphabet before it is decoded. Anything wrong raises
:class:`~compressor.errors.UplinkError` naming the field, never a traceback.

The ``*_uplink`` builders produce the same JSON (the fields this module reads, plus the
usual envelope), so a camera or a test can stand in for a network server.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from compressor.errors import UplinkError
from compressor.io import jsonfile
from compressor.mqtt.payload import MAX_PAYLOAD_BYTES

FORMATS = ("raw", "chirpstack", "ttn")
DEFAULT_TOPICS = {"chirpstack": "application/+/device/+/event/up", "ttn": "v3/+/devices/+/up"}
MAX_JSON_BYTES = 64 * 1024  # a TTN uplink seen by many gateways is a few KiB of rx_metadata
MAX_JSON_DEPTH = 32
MAX_FRM_PAYLOAD = 255  # the LoRaWAN PHY payload limit; the largest application payload is 242
_MARSHALER_HINT = "; set the network server's MQTT integration to the JSON marshaler"
_DEVICE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def device_problem(device: object) -> str | None:
    """Why ``device`` cannot name the gateway's folder for it, or None if it can."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        return f"device {device!r:.80} must be 1..64 of A-Z a-z 0-9 . _ - and not start with '.'"
    return None


def parse(fmt: str, topic: str, data: bytes) -> tuple[str, bytes]:
    """``(device, payload)`` of one MQTT message in format ``fmt``."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"an MQTT message is bytes, got {type(data).__name__}")
    if fmt == "raw":
        device = topic.rsplit("/", 1)[-1]
        if problem := device_problem(device):
            raise UplinkError(f"topic {topic!r:.120}: last level is the device; {problem}")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise UplinkError(f"{len(data)}-byte message is over the {MAX_PAYLOAD_BYTES}-byte limit")
        return device, bytes(data)
    if fmt == "chirpstack":
        doc = _load(data, "ChirpStack uplink")
        device = _field(doc, "deviceInfo", "devEui", kind=str)
        return _checked_device(device, "deviceInfo.devEui"), _base64(doc, "data")
    if fmt == "ttn":
        doc = _load(data, "The Things Stack uplink")
        device = _field(doc, "end_device_ids", "device_id", kind=str)
        return _checked_device(device, "end_device_ids.device_id"), _base64(doc, "uplink_message", "frm_payload")
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def chirpstack_uplink(dev_eui: str, payload: bytes, *, f_cnt: int = 0, f_port: int = 1) -> bytes:
    """A ChirpStack v4 uplink event (JSON marshaler) carrying ``payload``; topic: see :func:`uplink_topic`."""
    doc = {
        "deduplicationId": "00000000-0000-0000-0000-000000000000",
        "deviceInfo": {"applicationId": "compressor", "deviceName": dev_eui, "devEui": dev_eui},
        "fCnt": f_cnt,
        "fPort": f_port,
        "confirmed": False,
        "data": base64.b64encode(payload).decode("ascii"),
    }
    return json.dumps(doc).encode("utf-8")


def ttn_uplink(device_id: str, payload: bytes, *, f_cnt: int = 0, f_port: int = 1) -> bytes:
    """A The Things Stack v3 uplink message carrying ``payload``; topic: see :func:`uplink_topic`."""
    doc = {
        "end_device_ids": {"device_id": device_id, "application_ids": {"application_id": "compressor"}},
        "uplink_message": {"f_port": f_port, "f_cnt": f_cnt, "frm_payload": base64.b64encode(payload).decode("ascii")},
    }
    return json.dumps(doc).encode("utf-8")


def wrap(fmt: str, device: str, payload: bytes, f_cnt: int = 0) -> bytes:
    """The MQTT message a network server in format ``fmt`` would publish for this uplink."""
    if fmt == "raw":
        return payload
    if fmt == "chirpstack":
        return chirpstack_uplink(device, payload, f_cnt=f_cnt)
    if fmt == "ttn":
        return ttn_uplink(device, payload, f_cnt=f_cnt)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def uplink_topic(fmt: str, application: str, device: str) -> str:
    """The topic a network server publishes a device's uplinks on."""
    if fmt == "chirpstack":
        return f"application/{application}/device/{device}/event/up"
    if fmt == "ttn":
        return f"v3/{application}/devices/{device}/up"
    raise ValueError(f"format must be chirpstack or ttn, got {fmt!r}")


# --- strict JSON ---------------------------------------------------------------------------
def _load(data: bytes, what: str) -> dict:
    try:
        doc = jsonfile.loads(bytes(data), max_bytes=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH)
    except jsonfile.TooLarge as e:
        raise UplinkError(f"{what}: {e}") from None
    except jsonfile.TooDeep as e:
        raise UplinkError(f"{what}: {e}: not a network server uplink") from None
    except UnicodeDecodeError:
        raise UplinkError(f"{what} is not UTF-8 JSON{_MARSHALER_HINT}") from None
    except ValueError as e:
        raise UplinkError(f"{what} is not valid JSON ({e}){_MARSHALER_HINT}") from None
    if not isinstance(doc, dict):
        raise UplinkError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _field(doc: dict, *path: str, kind: type):
    node = doc
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise UplinkError(f"uplink has no {'.'.join(path[: i + 1])}")
        node = node[key]
    if not isinstance(node, kind):
        raise UplinkError(f"uplink {'.'.join(path)} must be a {kind.__name__}, got {type(node).__name__}")
    return node


def _checked_device(device: str, field: str) -> str:
    if problem := device_problem(device):
        raise UplinkError(f"uplink {field}: {problem}")
    return device


def _base64(doc: dict, *path: str) -> bytes:
    text = _field(doc, *path, kind=str)
    limit = 4 * -(-MAX_FRM_PAYLOAD // 3)
    if len(text) > limit:
        raise UplinkError(
            f"uplink {'.'.join(path)} is {len(text)} base64 characters; a LoRaWAN payload is at most {limit}"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise UplinkError(f"uplink {'.'.join(path)} is not base64: {e}") from None
