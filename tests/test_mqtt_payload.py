"""The MQTT/LoRaWAN payload, uplink JSON parsing and sequence bookkeeping: bytes and files only.

No broker and no model here (tests/test_mqtt.py has both). Hostile input is the normal case:
every refusal is a CompressorError with a reason, never a traceback or an allocation first.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressor.errors import CodeError, CorruptCodeError, MqttError, TruncatedCodeError, UplinkError
from compressor.errors import UnsupportedFormatVersionError as NewerError
from compressor.mqtt import uplinks
from compressor.mqtt.client import Broker
from compressor.mqtt.payload import (
    MAX_PAYLOAD_BYTES,
    MAX_SEQUENCE,
    SHORT_WINDOW,
    header_size,
    pack_payload,
    short_form_fits,
    unpack_payload,
)
from compressor.mqtt.sequences import SeenSequences, SequenceCounter

MSG = bytes([0x40, 0x9C, 1, 2, 3, 4, 5, 6])  # shaped like an 8-byte image message


# --- payload ---------------------------------------------------------------------------------
@given(st.integers(0, MAX_SEQUENCE), st.binary(min_size=2, max_size=60), st.booleans())
def test_payload_round_trips_sequence_name_and_message(seq, message, named):
    name = f"img-{seq}" if named else None
    data = pack_payload(seq, message, name)
    assert unpack_payload(data) == (seq, name, message, False)
    assert len(data) == header_size(seq, name) + len(message)


def test_sequence_header_is_one_byte_to_127_and_two_bytes_to_8191():
    sizes = [header_size(s) for s in (0, 127, 128, 8191, 8192, 2**20 - 1, 2**20, 2**27, MAX_SEQUENCE)]
    assert sizes == [1, 1, 2, 2, 3, 3, 4, 5, 5]
    assert header_size(0, "a") == 2 + 2  # a named payload uses the 2-byte form at least, then length + name


def test_unnamed_payload_is_the_message_plus_its_sequence_byte():
    assert pack_payload(5, MSG) == bytes([5]) + MSG
    assert pack_payload(300, MSG, "ab") == bytes([0b1010_0001, 300 & 0xFF, 2]) + b"ab" + MSG


@pytest.mark.parametrize(
    "data, error, words",
    [
        (b"", TruncatedCodeError, "empty"),
        (b"\x80", TruncatedCodeError, "ends inside its 2-byte"),
        (b"\xf0\x00\x00", TruncatedCodeError, "ends inside its 5-byte"),
        (b"\x80\x05" + MSG, CorruptCodeError, "overlong"),
        (b"\xc0\x00\x05" + MSG, CorruptCodeError, "overlong"),
        (b"\xf3\xff\xff\xff\xff" + MSG, CorruptCodeError, "over 4294967295"),
        (b"\xfc" + MSG, NewerError, "upgrade"),
        (b"\xff" + MSG, NewerError, "upgrade"),
        (b"\xf8\x00", TruncatedCodeError, "short-form"),
        (bytes([0xA0, 0]), TruncatedCodeError, "name length"),
        (bytes([0xA0, 0, 9, 0x61]), TruncatedCodeError, "inside its name"),
        (bytes([0xA0, 0, 2, 0xFF, 0xFE]) + MSG, CorruptCodeError, "not UTF-8"),
        (bytes([0xA0, 0, 5]) + b"../ab" + MSG, CorruptCodeError, "must not contain"),
        (bytes([0xA0, 0, 3]) + b".ab" + MSG, CorruptCodeError, "start with '.'"),
        (bytes([0x01, 0x40]), TruncatedCodeError, "at least 2"),
        (bytes(MAX_PAYLOAD_BYTES + 1), CorruptCodeError, "limit"),
    ],
)
def test_damaged_payloads_are_refused_with_the_reason(data, error, words):
    with pytest.raises(error, match=words):
        unpack_payload(data)


@given(st.integers(0, MAX_SEQUENCE), st.integers(0, 15), st.binary(min_size=1, max_size=60))
def test_short_form_is_one_byte_and_gives_the_sequence_modulo_64_and_the_message_back(seq, step, rest):
    message = bytes([0x40 | step]) + rest  # version 1, entropy mode
    data = pack_payload(seq, message, short=True)
    assert len(data) == 1 + len(message) and header_size(seq, short=True) == 1
    assert unpack_payload(data) == (seq % SHORT_WINDOW, None, message, True)


def test_short_form_takes_only_unnamed_version_1_entropy_messages():
    assert short_form_fits(MSG) and not short_form_fits(MSG, "a")
    for first in (0x50, 0x60, 0x70, 0x80, 0x00):  # raw, lossless, residual modes; version 2; version 0
        assert not short_form_fits(bytes([first]) + MSG[1:])
        with pytest.raises(ValueError, match="short form"):
            pack_payload(1, bytes([first]) + MSG[1:], short=True)
    with pytest.raises(ValueError, match="short form"):
        pack_payload(1, MSG, "a", short=True)


def test_an_old_reader_refuses_the_short_form_as_a_newer_layout():
    """Readers before the short form took every first byte 11111xxx as "reserved: upgrade"."""
    data = pack_payload(1000, MSG, short=True)
    assert data[0] >> 3 == 0b11111
    assert pack_payload(1000, MSG, short=True)[0] in range(0xF8, 0xFC)  # 0xFC..0xFF stay reserved


def test_packing_refuses_names_that_cannot_be_file_names():
    for bad in ("", "a/b", ".hidden", "x" * 252, "nul\0"):
        with pytest.raises(ValueError):
            pack_payload(1, MSG, bad)
    with pytest.raises(ValueError, match="sequence"):
        pack_payload(MAX_SEQUENCE + 1, MSG)


@given(st.binary(max_size=300))
def test_random_bytes_give_a_payload_or_a_code_error_never_a_crash(data):
    try:
        unpack_payload(data)
    except CodeError:
        pass


# --- uplinks ---------------------------------------------------------------------------------
def test_chirpstack_uplink_gives_the_dev_eui_and_the_payload():
    payload = pack_payload(7, MSG)
    data = uplinks.chirpstack_uplink("0004a30b001c0530", payload, f_cnt=3)
    topic = uplinks.uplink_topic("chirpstack", "app1", "0004a30b001c0530")
    assert topic == "application/app1/device/0004a30b001c0530/event/up"
    assert uplinks.parse("chirpstack", topic, data) == ("0004a30b001c0530", payload)


def test_ttn_uplink_gives_the_device_id_and_frm_payload():
    payload = pack_payload(7, MSG, "cam-a")
    data = uplinks.ttn_uplink("eui-70b3d57ed0000001", payload)
    topic = uplinks.uplink_topic("ttn", "app1@ttn", "eui-70b3d57ed0000001")
    assert uplinks.parse("ttn", topic, data) == ("eui-70b3d57ed0000001", payload)


def test_a_real_chirpstack_v4_event_with_its_envelope_is_read():
    event = {
        "deduplicationId": "3c4f8e9a-43cd-4b6e-8f0f-7b1e8c2f9d11",
        "time": "2026-11-28T06:00:00.000000+00:00",
        "deviceInfo": {
            "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
            "tenantName": "ChirpStack",
            "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
            "applicationName": "cameras",
            "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
            "deviceProfileName": "EU868 class A",
            "deviceName": "cam-1",
            "devEui": "0101010101010101",
            "tags": {},
        },
        "devAddr": "00189440",
        "adr": True,
        "dr": 0,
        "fCnt": 10,
        "fPort": 1,
        "confirmed": False,
        "data": base64.b64encode(pack_payload(40, MSG)).decode(),
        "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": -60, "snr": 10.5, "context": "EFwMtA=="}],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 12}}},
    }
    device, payload = uplinks.parse(
        "chirpstack", "application/x/device/0101010101010101/event/up", json.dumps(event).encode()
    )
    assert device == "0101010101010101" and unpack_payload(payload).sequence == 40


@pytest.mark.parametrize(
    "fmt, data, words",
    [
        ("chirpstack", b"\x0a\x10\xc3\x28", "JSON marshaler"),  # the protobuf marshaler
        ("chirpstack", b"\x08\x01\x12", "JSON marshaler"),
        ("chirpstack", b"[1, 2]", "expected a JSON object"),
        ("chirpstack", b'{"data": "AAAA"}', "no deviceInfo"),
        ("chirpstack", b'{"deviceInfo": {"devEui": "00"}, "data": "!!"}', "not base64"),
        ("chirpstack", b'{"deviceInfo": {"devEui": "00"}}', "no data"),
        ("chirpstack", b'{"deviceInfo": {"devEui": 5}, "data": "AA=="}', "must be a str"),
        ("chirpstack", b'{"deviceInfo": {"devEui": "../x"}, "data": "AA=="}', "device"),
        ("chirpstack", b'{"deviceInfo": {"devEui": "0"}, "devEui": 1, "devEui": 2}', "twice"),
        ("chirpstack", b'{"deviceInfo": {"devEui": "0"}, "x": NaN}', "NaN"),
        ("chirpstack", b"[" * 100_000, "limit"),
        ("chirpstack", b"[" * 1000 + b"]" * 1000, "nested"),
        ("ttn", b'{"end_device_ids": {"device_id": "d"}, "uplink_message": {}}', "frm_payload"),
        (
            "ttn",
            json.dumps({"end_device_ids": {"device_id": "d"}, "uplink_message": {"frm_payload": "A" * 400}}),
            "base64 characters",
        ),
        ("raw", bytes(MAX_PAYLOAD_BYTES + 1), "limit"),
    ],
)
def test_hostile_uplinks_are_refused_with_one_reason(fmt, data, words):
    data = data.encode() if isinstance(data, str) else data
    with pytest.raises(UplinkError, match=words):
        uplinks.parse(fmt, "v3/a/devices/d/up" if fmt == "ttn" else "cams/cam1", data)


def test_raw_topic_must_end_in_a_usable_device_name():
    assert uplinks.parse("raw", "site/cams/cam-7", b"xy")[0] == "cam-7"
    for topic in ("cams/..", "cams/", "cams/.hidden", "cams/" + "x" * 65):
        with pytest.raises(UplinkError, match="device"):
            uplinks.parse("raw", topic, b"xy")


# --- sequences ---------------------------------------------------------------------------------
def test_restarted_camera_continues_after_its_reserved_numbers(tmp_path):
    state = tmp_path / "cam.json"
    assert list(SequenceCounter(state, "cam").reserve(3)) == [0, 1, 2]
    assert list(SequenceCounter(state, "cam").reserve(2)) == [3, 4]  # a new process: no reuse


def test_camera_state_of_another_device_or_damaged_is_refused(tmp_path):
    state = tmp_path / "cam.json"
    SequenceCounter(state, "cam").reserve(1)
    with pytest.raises(MqttError, match="its own --state"):
        SequenceCounter(state, "other")
    state.write_text("{not json")
    with pytest.raises(MqttError, match="damaged"):
        SequenceCounter(state, "cam")


@given(st.lists(st.integers(0, 300), max_size=200))
def test_seen_sequences_hold_exactly_what_was_added(numbers):
    seen = SeenSequences()
    for n in numbers:
        seen.add(n)
    assert {n for n in range(302) if n in seen} == set(numbers)
    assert len(seen) == len(set(numbers))
    again = SeenSequences(seen.ranges())
    assert again.ranges() == seen.ranges()


def test_seen_sequences_in_order_are_one_range_and_gaps_are_bounded():
    seen = SeenSequences(max_ranges=3)
    for n in range(1000):
        seen.add(n)
    assert seen.ranges() == [[0, 999]]
    for n in (1002, 1004, 1006):
        seen.add(n)
    assert len(seen.ranges()) == 3 and seen.forgotten == 2  # the oldest gap (1000, 1001) was given up
    assert 1001 in seen and 1003 not in seen
    assert seen.maybe_forgotten(1001) and not seen.maybe_forgotten(1004)  # a late 1001 is told by its file


def test_broker_addresses_default_to_the_mqtt_ports():
    assert (Broker.parse("h").host, Broker.parse("h").port) == ("h", 1883)
    assert Broker.parse("h", tls=True).port == 8883
    assert Broker.parse("[::1]:1884").host == "::1"
    assert Broker.parse("::1").port == 1883
    with pytest.raises(ValueError):
        Broker.parse("h:notaport")


def test_a_second_gateway_on_one_folder_is_refused_in_one_line_before_the_model_loads(tmp_path, capsys):
    pytest.importorskip("paho.mqtt")
    from compressor.cli import main
    from compressor.transport.folder_lock import FolderLock

    with FolderLock(tmp_path):  # the first gateway
        status = main(["subscribe", "--topic", "cams/+", "-o", str(tmp_path), "--bundle", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert status != 0 and "in use by another gateway" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_mqtt_modules_import_neither_tensorflow_nor_paho_until_a_command_runs():
    from tests.support import HEAVY, imported_after

    modules = ["payload", "uplinks", "sequences", "client", "publisher", "subscriber", "cli"]
    imported = imported_after("\n".join(f"import compressor.mqtt.{m}" for m in modules))
    assert not imported & {*HEAVY, "paho"}


@given(
    st.sampled_from(["chirpstack", "ttn", "raw"]),
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
            max_leaves=20,
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
)
def test_any_bytes_give_an_uplink_or_an_uplink_error_never_a_crash(fmt, data):
    try:
        uplinks.parse(fmt, "cams/cam1", data)
    except UplinkError:
        pass
