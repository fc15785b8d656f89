"""The short form's numbering: camera and gateway bookkeeping under loss, redelivery, reordering, crashes.

No broker and no model: the gateway here decodes a message into pixels with a stand-in that
is deterministic and one-to-one (identical messages, identical pixels), because what is
tested is which number each image gets and whether it is written exactly once. The real
decoder and Mosquitto carry the same payloads in tests/test_mqtt.py.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compressor.errors import ModelMismatchError
from compressor.mqtt.payload import pack_payload, unpack_payload
from compressor.mqtt.sequences import SequenceCounter
from compressor.mqtt.short_sequences import RESYNC, WINDOW, FormChooser
from compressor.mqtt.subscriber import Gateway

TOPIC = "cams/cam1"


FOREIGN = 0xEE  # bytes 1..8 all FOREIGN: the stand-in decoder's "message of another model"


def _pixels(message: bytes) -> np.ndarray:
    """Stand-in decoder: 16x16 0/255 pixels from the message's hash (equal messages, equal pixels)."""
    if message[1:] == bytes([FOREIGN]) * 8:
        raise ModelMismatchError("the message is for another model")
    bits = np.unpackbits(np.frombuffer(hashlib.sha256(message).digest(), np.uint8))
    return (bits.reshape(16, 16) * 255).astype(np.uint8)


def _messages(n: int, *, seed: int = 0, identical: bool = False) -> list[bytes]:
    """``n`` version-1 entropy messages of 8..12 bytes; ``identical``: a static scene, all the same."""
    rng = np.random.default_rng(seed)
    if identical:
        return [bytes([0x43]) + bytes(range(9))] * n
    return [bytes([0x40 | int(rng.integers(0, 16))]) + rng.bytes(int(rng.integers(7, 12))) for _ in range(n)]


def _camera(messages, start: int = 1_000, forms: FormChooser | None = None, refused=()) -> list[tuple[int, bytes]]:
    """(true sequence, payload) per image, the forms chosen as ``encode_payloads`` chooses them."""
    forms = forms if forms is not None else FormChooser()
    out = []
    for k, message in enumerate(messages):
        seq = start + k
        if seq in refused:
            forms.skipped()
            continue
        short = forms.short(seq, message)
        forms.sent(seq, message)
        out.append((seq, pack_payload(seq, message, short=short)))
    return out


def _gateway(tmp_path) -> Gateway:
    return Gateway(tmp_path / "out", _pixels)


def _deliver(gateway: Gateway, payloads) -> list[dict]:
    return [gateway.handle(TOPIC, p) for _, p in payloads]


def _files(tmp_path) -> dict[int, np.ndarray]:
    from compressor.io.files import read_image

    folder = tmp_path / "out" / "cam1"
    return {int(p.stem): read_image(p) for p in folder.glob("*.png")}


def _assert_each_image_once(tmp_path, sent, events, *, named_right=True):
    """Every image sent is on disk exactly once (by pixels); with ``named_right``, under its own number."""
    files = _files(tmp_path)
    wrote = [e["seq"] for e in events if e["event"] == "written"]
    found = {e["seq"] for e in events if e["event"] == "already-on-disk"}  # written before a crash
    assert len(wrote) == len(set(wrote)) and set(wrote) | found == set(files)
    expected = [_pixels(unpack_payload(p).message) for _, p in sent]
    on_disk = [files[s].tobytes() for s in sorted(files)]
    assert sorted(on_disk) == sorted(px.tobytes() for px in expected)  # none lost, none twice
    if named_right:
        assert {s: px.tobytes() for s, px in files.items()} == {s: px.tobytes() for (s, _), px in zip(sent, expected)}


# --- camera ----------------------------------------------------------------------------------
def test_a_long_running_camera_pays_one_byte_of_sequence_per_image():
    sent = _camera(_messages(5000), start=3_000_000)  # days of images: the full form is 4 bytes here
    overhead = [len(p) - len(m) for (_, p), m in zip(sent, _messages(5000))]
    assert overhead[0] == 4 and np.mean(overhead) < 1.1
    shorts = [unpack_payload(p).short for _, p in sent]
    assert not shorts[0] and all(not shorts[k] for k in range(len(sent)) if (3_000_000 + k) % RESYNC == 0)


def test_camera_sends_the_full_form_on_start_after_a_refused_image_and_for_a_repeated_image():
    messages = _messages(200)
    messages[150] = messages[150 - WINDOW]  # the same code as the image one window before
    sent = {seq - 1000: payload for seq, payload in _camera(messages, start=1000, refused={1040})}
    assert not unpack_payload(sent[0]).short and unpack_payload(sent[1]).short
    assert not unpack_payload(sent[41]).short and unpack_payload(sent[42]).short
    assert not unpack_payload(sent[150]).short and unpack_payload(sent[151]).short
    assert not any(unpack_payload(p).short for _, p in _camera(messages[:100], start=20))  # 0..127: 1 byte anyway


def test_camera_state_keeps_the_digests_so_a_restarted_camera_still_guards_a_static_scene(tmp_path):
    static = _messages(300, identical=True)
    counter = SequenceCounter(tmp_path / "cam.json", "cam1")
    forms = FormChooser(counter.history)
    first = _camera(static[:100], start=counter.reserve(100).start, forms=forms)
    counter.remember(forms.history)
    again = SequenceCounter(tmp_path / "cam.json", "cam1")
    assert len(again.history) == 100 and again.next == 100
    second = _camera(static[100:], start=again.reserve(200).start, forms=FormChooser(again.history))
    assert not any(unpack_payload(p).short for _, p in first[WINDOW:] + second)  # all repeats of the one image


# --- gateway ----------------------------------------------------------------------------------
def test_short_images_in_order_are_written_once_each_under_their_own_numbers(tmp_path):
    sent = _camera(_messages(150), start=70_000)
    events = _deliver(_gateway(tmp_path), sent)
    assert {e["event"] for e in events} == {"written"}
    _assert_each_image_once(tmp_path, sent, events)


def test_every_message_delivered_twice_is_written_once(tmp_path):
    sent = _camera(_messages(150))
    rng = np.random.default_rng(1)
    # each redelivery arrives up to 40 messages after the original, as QoS 1 resends do
    order = sorted([(k, k) for k in range(150)] + [(k + int(rng.integers(0, 40)) + 0.5, k) for k in range(150)])
    events = _deliver(_gateway(tmp_path), [sent[k] for _, k in order])
    assert sum(e["event"] == "duplicate" for e in events) == 150
    _assert_each_image_once(tmp_path, sent, events)


def test_images_overtaken_within_the_window_keep_their_numbers(tmp_path):
    sent = _camera(_messages(150))
    rng = np.random.default_rng(2)
    order = [0]  # the first image (full form) is the gateway's first news of this camera
    for block in range(1, 150, 12):  # then each block of 12 arrives shuffled
        order += list(rng.permutation(np.arange(block, min(block + 12, 150))))
    events = _deliver(_gateway(tmp_path), [sent[k] for k in order])
    _assert_each_image_once(tmp_path, sent, events)


def test_a_long_radio_gap_misnames_until_the_next_full_form_but_drops_and_duplicates_nothing(tmp_path):
    sent = _camera(_messages(260))
    received = sent[:100] + sent[100 + 70 :]  # 70 uplinks lost on the radio: more than 48 ahead
    gateway = _gateway(tmp_path)
    events = _deliver(gateway, received[:140])
    events += _deliver(gateway, received[100:140])  # and the network server forwards some twice
    events += _deliver(gateway, received[140:])
    _assert_each_image_once(tmp_path, received, events, named_right=False)
    numbers = {e["seq"] for e in events if e["event"] == "written"}
    resync = next(s for s, p in received[100:] if not unpack_payload(p).short)
    assert all(s in numbers for s, _ in received if s >= resync)  # right again from the full form on
    assert all(s in numbers for s, _ in received[:100])


@settings(max_examples=5, deadline=None)
@given(st.lists(st.integers(0, 120), max_size=120), st.integers(0, 2**31))
def test_lost_uplinks_and_immediate_retries_never_drop_or_duplicate_an_image(tmp_path_factory, lost, seed):
    tmp_path = tmp_path_factory.mktemp("lora")
    rng = np.random.default_rng(seed % 1000)
    sent = _camera(_messages(120, seed=seed % 1000))
    received = [sent[k] for k in range(120) if k not in set(lost)]
    with_retries = [x for x in received for _ in range(1 + int(rng.random() < 0.1))]
    events = _deliver(_gateway(tmp_path), with_retries)
    _assert_each_image_once(tmp_path, received, events, named_right=False)


def test_a_static_scene_writes_every_identical_image_and_still_recognises_redeliveries(tmp_path):
    sent = _camera(_messages(150, identical=True))
    gateway = _gateway(tmp_path)
    events = _deliver(gateway, sent) + _deliver(gateway, sent[120:140])
    assert sum(e["event"] == "written" for e in events) == 150
    assert sum(e["event"] == "duplicate" for e in events) == 20
    _assert_each_image_once(tmp_path, sent, events)


def test_a_gateway_restarted_after_a_crash_recognises_redeliveries_its_record_missed(tmp_path):
    sent = _camera(_messages(250), start=5_000)
    first = _gateway(tmp_path)
    events = _deliver(first, sent[:100])
    first.flush()
    progress = tmp_path / "out" / "cam1" / "mqtt-progress.json"
    record = progress.read_bytes()  # the record says 5,099 ...
    events += _deliver(first, sent[100:190])  # ... the files go on to 5,189, then the process dies
    progress.write_bytes(record)  # before its next record
    assert json.loads(progress.read_text())["seen"] == [[5_000, 5_099]]
    again = _gateway(tmp_path)  # the broker redelivers what was not acknowledged, then the rest
    events += _deliver(again, sent[150:250])
    assert sum(e["event"] in ("duplicate", "already-on-disk") for e in events[190:]) == 40
    _assert_each_image_once(tmp_path, sent, events)


def test_a_short_message_of_another_model_is_logged_and_takes_no_number(tmp_path):
    sent = _camera(_messages(60))
    foreign = pack_payload(40, bytes([0x40]) + bytes([FOREIGN]) * 8, short=True)
    gateway = _gateway(tmp_path)
    events = (
        _deliver(gateway, sent[:39]) + [gateway.handle(TOPIC, foreign) for _ in range(2)] + _deliver(gateway, sent[39:])
    )
    bad = [e for e in events if e["event"] == "bad"]
    assert len(bad) == 2 and all("another model" in e["reason"] and e["seq"] is None for e in bad)
    _assert_each_image_once(tmp_path, sent, events)


def test_a_damaged_progress_record_is_refused_with_the_fix(tmp_path):
    sent = _camera(_messages(3))
    gateway = _gateway(tmp_path)
    _deliver(gateway, sent)
    gateway.flush()
    progress = tmp_path / "out" / "cam1" / "mqtt-progress.json"
    doc = json.loads(progress.read_text())
    progress.write_text(json.dumps({**doc, "recent": [[1, "not-a-digest"]]}))
    event = None
    with pytest.raises(Exception, match="move it away"):
        event = _gateway(tmp_path).handle(TOPIC, sent[0][1])
    assert event is None


def test_a_short_payload_published_while_the_link_is_not_steady_goes_in_the_full_form():
    from compressor.mqtt.publisher import full_form

    message = _messages(1)[0]
    short = pack_payload(70_001, message, short=True)
    assert full_form(70_001, short) == pack_payload(70_001, message)
    assert unpack_payload(full_form(70_001, short)) == (70_001, None, message, False)
    named = pack_payload(70_001, message, "a")
    assert full_form(70_001, named) == named and full_form(5, b'{"data": "x"}') == b'{"data": "x"}'


def test_short_images_after_the_top_sequence_number_are_refused_and_the_gateway_still_restarts(tmp_path):
    from compressor.mqtt.payload import MAX_SEQUENCE

    top, short = _messages(2, seed=7)
    gateway = _gateway(tmp_path)
    assert gateway.handle(TOPIC, pack_payload(MAX_SEQUENCE, top))["event"] == "written"
    event = gateway.handle(TOPIC, pack_payload(200, short, short=True))
    assert event["event"] == "bad" and str(MAX_SEQUENCE) in event["reason"]
    gateway.flush()
    again = _gateway(tmp_path).handle(TOPIC, pack_payload(MAX_SEQUENCE, top))  # loads the progress file
    assert again["event"] == "duplicate"
    assert sorted(p.name for p in (tmp_path / "out" / "cam1").glob("*.png")) == [f"{MAX_SEQUENCE}.png"]


def test_messages_that_never_decode_leave_no_folder_for_the_devices_they_name(tmp_path):
    foreign = pack_payload(3, bytes([0x40]) + bytes([FOREIGN]) * 8)
    gateway = _gateway(tmp_path)
    events = [gateway.handle(f"cams/stranger{i}", foreign) for i in range(50)]
    gateway.flush()
    assert all(e["event"] == "bad" for e in events)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    sent = _camera(_messages(3))
    _assert_each_image_once(tmp_path, sent, _deliver(gateway, sent))


@pytest.mark.parametrize("twin", ["CAM1", "cam1."], ids=["case", "trailing-dot"])
def test_a_device_id_the_file_system_folds_onto_another_is_a_bad_message_not_a_stop(tmp_path, twin):
    sent = _camera(_messages(3))
    gateway = _gateway(tmp_path)
    _deliver(gateway, sent)
    gateway.flush()
    (tmp_path / "out" / twin).symlink_to("cam1")  # what a FAT/exFAT card (or macOS, Windows) does with it
    event = Gateway(tmp_path / "out", _pixels).handle(f"cams/{twin}", pack_payload(7, _messages(1, seed=3)[0]))
    assert event["event"] == "bad" and "would share the folder of device 'cam1'" in event["reason"]
    assert len(list((tmp_path / "out" / "cam1").glob("*.png"))) == 3


def test_a_camera_that_lost_its_counter_has_every_reused_number_logged_bad_never_dropped_as_a_duplicate(tmp_path):
    gateway = _gateway(tmp_path)
    _deliver(gateway, _camera(_messages(3, seed=1), start=0))
    again = _camera(_messages(3, seed=2), start=0)  # new images under numbers 0..2: its state file was lost
    events = _deliver(gateway, again) + _deliver(gateway, again[:1])
    assert [e["event"] for e in events] == ["bad"] * 4
    assert all("counter gone back" in e["reason"] for e in events)


def test_a_redelivered_name_clash_is_bad_again_without_blaming_the_cameras_counter(tmp_path):
    gateway = _gateway(tmp_path)
    first, other = _messages(2, seed=6)
    assert gateway.handle(TOPIC, pack_payload(300, first, "door"))["event"] == "written"
    clash = pack_payload(301, other, "door")  # another image under a name already taken
    events = [gateway.handle(TOPIC, clash) for _ in range(2)]  # and its QoS 1 redelivery
    assert [e["event"] for e in events] == ["bad", "bad"]
    assert all("not overwritten" in e["reason"] and "counter" not in e["reason"] for e in events)


def test_an_image_in_a_gap_forgotten_to_bound_memory_is_written_not_taken_for_a_duplicate_even_after_a_restart(
    tmp_path,
):
    from compressor.mqtt.sequences import MAX_RANGES

    foreign = bytes([0x40]) + bytes([FOREIGN]) * 8  # bad messages: their numbers are handled, no file written
    first, late = _messages(2, seed=3)
    gateway = _gateway(tmp_path)
    assert gateway.handle(TOPIC, pack_payload(10, first))["event"] == "written"
    events = [gateway.handle(TOPIC, pack_payload(12 + 2 * i, foreign)) for i in range(MAX_RANGES)]
    assert {e["event"] for e in events} == {"bad"}  # one range each: the gap 11 is forgotten
    gateway.flush()
    gateway = _gateway(tmp_path)  # the bound on forgotten gaps is in the progress file
    assert gateway.handle(TOPIC, pack_payload(11, late)) | {"file": None} == {
        "event": "written",
        "device": "cam1",
        "seq": 11,
        "file": None,
    }
    assert gateway.handle(TOPIC, pack_payload(11, late))["event"] == "duplicate"
    assert gateway.handle(TOPIC, pack_payload(10 + 2 * MAX_RANGES, foreign))["event"] == "duplicate"


def test_a_redelivery_whose_image_a_downstream_process_took_away_is_a_duplicate_not_written_twice(tmp_path):
    gateway = _gateway(tmp_path)
    sent = [(seq, pack_payload(seq, m)) for seq, m in enumerate(_messages(3, seed=4), start=500)]
    assert [e["event"] for e in _deliver(gateway, sent)] == ["written"] * 3
    (tmp_path / "archive").mkdir()
    for png in (tmp_path / "out" / "cam1").glob("*.png"):  # an ingest job moves the images away
        png.rename(tmp_path / "archive" / png.name)
    assert [e["event"] for e in _deliver(gateway, sent)] == ["duplicate"] * 3  # QoS 1 redelivery
    gateway.flush()
    assert [e["event"] for e in _deliver(_gateway(tmp_path), sent)] == ["duplicate"] * 3  # and after a restart
    assert not list((tmp_path / "out").glob("cam1/*.png"))


def test_a_device_folder_taken_away_before_the_progress_was_recorded_gets_it_back(tmp_path):
    gateway = _gateway(tmp_path)
    sent = [(seq, pack_payload(seq, m)) for seq, m in enumerate(_messages(3, seed=5), start=900)]
    _deliver(gateway, sent)
    (tmp_path / "out" / "cam1").rename(tmp_path / "archive")  # within FLUSH_S of the images
    gateway.flush()
    assert [e["event"] for e in _deliver(_gateway(tmp_path), sent)] == ["duplicate"] * 3
    assert not (tmp_path / "out" / "cam1").exists() or not list((tmp_path / "out" / "cam1").glob("*.png"))


def test_a_redelivered_message_that_did_not_decode_is_a_duplicate(tmp_path):
    gateway = _gateway(tmp_path)
    foreign = pack_payload(700, bytes([0x40]) + bytes([FOREIGN]) * 8)
    assert [gateway.handle(TOPIC, foreign)["event"] for _ in range(2)] == ["bad", "duplicate"]
