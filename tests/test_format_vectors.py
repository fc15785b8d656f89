"""docs/format.md and the code cannot drift apart: every conformance vector decodes (or is
refused) exactly as recorded, every refusal rule of the spec has a vector, and every error
class the spec names exists."""

from __future__ import annotations

import builtins
import json
import re
from pathlib import Path

import pytest

from compressor import errors, wire
from compressor.coding import entropy
from compressor.coding.entropy import CdfTable
from compressor.coding.rangecoder import TOTAL
from compressor.errors import CodeError, RateError

from . import reference_decoder
from .vectors import conformance

ROOT = Path(__file__).resolve().parents[1]
SPEC = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
DOC = conformance.load()
VECTORS = DOC["vectors"]
NOT_IN_VECTORS = {"L2": "needs a decoder network of another runtime; tests/test_lossless.py covers it"}


@pytest.fixture(scope="module")
def codings(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {name: conformance.coding_for(spec, root / name) for name, spec in DOC["bundles"].items()}


def spec_rules() -> set[str]:
    """Rule ids of the refusal tables: rows that start ``| X12 |``."""
    return set(re.findall(r"^\| ([A-Z]\d+) \|", SPEC, flags=re.M))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_each_vector_decodes_or_is_refused_as_recorded(vector, codings):
    got = conformance.run(vector, codings[vector["bundle"]])
    assert conformance.verdict_matches(vector, got), f"{vector['note']}: expected {vector['expect']}, got {got}"


def test_every_refusal_rule_of_the_spec_has_an_invalid_vector():
    rules = spec_rules()
    assert len(rules) >= 30, "the rule tables of docs/format.md were not found"
    covered = {v["expect"]["rule"] for v in VECTORS if "error" in v["expect"]}
    assert covered <= rules, f"vectors cite rules the spec lacks: {sorted(covered - rules)}"
    assert rules - covered == set(NOT_IN_VECTORS), f"rules without a vector: {sorted(rules - covered)}"


def test_each_vector_error_is_the_class_its_rule_names_in_the_spec():
    for v in VECTORS:
        if "error" in v["expect"]:
            row = re.search(rf"^\| {v['expect']['rule']} \|.*$", SPEC, flags=re.M).group(0)
            assert f"`{v['expect']['error']}`" in row.rsplit("|", 2)[-2], (v["id"], row)


def test_every_error_class_named_in_the_spec_exists_in_compressor_errors():
    named = set(re.findall(r"`(\w+Error)`", SPEC))
    assert {"CorruptCodeError", "TruncatedCodeError", "ModelMismatchError"} <= named
    for name in named:
        if hasattr(builtins, name):
            continue
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, errors.CompressorError), name
    for name in named - {"ManifestError", "RateError", "LimitError"} - set(dir(builtins)):  # budgets, not bytes
        assert issubclass(getattr(errors, name), CodeError), f"{name} refuses bytes, so it is a CodeError"


def _mode_of(vector) -> str:
    modes = ("entropy", "raw", "lossless", "residual")
    if vector["kind"] == "stream":
        data = bytes.fromhex(vector["hex"])
        return "joint" if data[5] & 2 else modes[data[6]]
    return modes[(bytes.fromhex(vector["messages"][0])[0] >> 4) & 3]


def test_valid_vectors_cover_every_mode_container_and_feature():
    valid = [v for v in VECTORS if "error" not in v["expect"]]
    kinds = {(v["kind"], _mode_of(v)) for v in valid}
    for kind in ("messages", "stream"):
        for mode in ("entropy", "raw", "lossless"):
            assert (kind, mode) in kinds
    assert ("stream", "joint") in kinds
    tags = {t for v in valid for t in v.get("tags", ())}
    assert {"escape", "carry", "names", "joint", "gamma16", "guard", "lossless"} <= tags
    assert any(len(bytes.fromhex(m)) == 2 for v in valid if v["kind"] == "messages" for m in v["messages"])


def test_binary_layout_2_vectors_name_steps_other_than_the_header_and_span_the_bands(codings):
    from compressor import residual_codec

    valid = [v for v in VECTORS if v["bundle"] == "K" and "error" not in v["expect"]]
    assert {v["kind"] for v in valid} == {"messages", "stream"}
    assert {"carry", "escape", "names"} <= {t for v in valid for t in v.get("tags", ())}
    bands, moved = set(), 0
    for v in valid:
        if v["kind"] == "stream":
            data = bytes.fromhex(v["hex"])
            items = [(p, data[7]) for p in wire.unpack_stream(data).payloads]
        else:
            items = [(bytes.fromhex(m)[2:], bytes.fromhex(m)[0] & 15) for m in v["messages"]]
        for (payload, header), own in zip(items, v["expect"]["step_indices"], strict=True):
            moved += own != header
            bands.update(residual_codec.describe_layout2(codings["K"], [payload], header)["band"])
    assert moved >= 4 and {0, 127} <= bands and bands & set(range(1, 127))
    assert any(len(bytes.fromhex(m)) == 4 for v in valid if v["kind"] == "messages" for m in v["messages"])


def test_the_vectors_file_is_what_the_generator_writes(tmp_path, monkeypatch):
    from .vectors import make_vectors

    out = tmp_path / "vectors.json"
    monkeypatch.setattr(make_vectors, "VECTORS", out)
    monkeypatch.setattr(make_vectors, "vectors", [])
    assert make_vectors.main() == 0
    assert json.loads(out.read_text(encoding="utf-8")) == DOC


def test_the_joint_count_guard_is_the_integer_rule_of_the_spec():
    table = CdfTable.from_json(DOC["bundles"]["J"]["tables"][0])  # S = 8192
    assert entropy.joint_count_fits(table, 0, 321) and not entropy.joint_count_fits(table, 0, 322)
    assert entropy.joint_count_fits(table, 1, 321 + 64) and not entropy.joint_count_fits(table, 1, 322 + 64)
    assert not entropy.joint_count_fits(table, 10**6, (1 << 20) + 1) and not entropy.joint_count_fits(table, 5, 0)


def test_the_encoder_refuses_a_joint_batch_that_no_decoder_would_accept():
    table = CdfTable.from_json(DOC["bundles"]["J"]["tables"][0])
    assert entropy.encode_joint([[0, -1]] * 321, table) == b""
    with pytest.raises(RateError, match="plain stream"):
        entropy.encode_joint([[0, -1]] * 322, table)


def test_a_count_zero_stream_is_still_a_well_formed_container():
    data = wire.pack_stream(bytes.fromhex(DOC["bundles"]["A"]["model_id"]), "entropy", 0, [])
    assert len(data) == 21 and wire.unpack_stream(data).count == 0


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_a_decoder_written_from_the_spec_alone_agrees_with_each_vector(vector):
    got = reference_decoder.decode(DOC["bundles"][vector["bundle"]], vector)
    assert got == vector["expect"], f"{vector['note']}: expected {vector['expect']}, got {got}"


def _damaged(vector, rng) -> dict:
    """``vector`` with one random cut, appended byte or bit flip; its check byte or CRC redone half the time."""
    import hashlib
    import zlib

    v = dict(vector)
    key = bytes.fromhex(DOC["bundles"][vector["bundle"]]["model_id"])
    data = bytearray.fromhex(vector["hex"] if vector["kind"] == "stream" else rng.choice(vector["messages"]))
    what = rng.randrange(3)
    if what == 0 and data:
        del data[rng.randrange(len(data)) :]
    elif what == 1:
        data.append(rng.randrange(256))
    elif data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.5:
        if vector["kind"] == "stream" and len(data) >= 4:
            data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
        elif vector["kind"] == "messages" and len(data) >= 2:
            data[1] = hashlib.blake2s(bytes(data[:1] + data[2:]), digest_size=1, key=key).digest()[0]
    images = 1
    if vector["kind"] == "stream":
        v["hex"] = data.hex()
        try:  # a flipped mode byte may make it lossless: give every image some levels
            images = reference_decoder.walk(bytes(data), len(data) - 4)[0]
        except (reference_decoder.Short, reference_decoder.Malformed, IndexError):
            images = 0
    else:
        v["messages"] = [data.hex()]
    height, width = DOC["bundles"][vector["bundle"]]["image_shape"]
    v["levels"] = [[0] * (height * width)] * min(images, 1000)  # a plain stream holds fewer images than bytes
    return v


def test_the_spec_decoder_and_the_implementation_agree_on_damaged_vectors(codings):
    import random

    rng = random.Random(18)
    lossy = [v for v in VECTORS if "levels" not in v or v["bundle"] == "K"]  # binary layout 2 too
    for _ in range(2000):
        v = _damaged(rng.choice(lossy), rng)
        want = reference_decoder.decode(DOC["bundles"][v["bundle"]], v)
        want.pop("rule", None)
        assert conformance.run(v, codings[v["bundle"]]) == want, v


def _shortest_then_smallest(low: int, rng_: int, shifts: int) -> bytes:
    """The literal definition of the termination: try every length, shortest first."""
    for m in range(4 + shifts + 1):
        unit = 256 ** (4 + shifts - m)
        value = -(-low // unit)  # the smallest m-byte value at or above low
        if value * unit < low + rng_:
            return value.to_bytes(m, "big") if m else b""
    raise AssertionError("the interval holds no value")


def _closed_form(low: int, rng_: int, shifts: int) -> bytes:
    """docs/format.md's closed form, transcribed."""
    if low == 0:
        return b""
    z = (((low - 1) ^ (low + rng_ - 1)).bit_length() - 1) // 8
    return (((low - 1) >> (8 * z)) + 1).to_bytes(4 + shifts - z, "big")


def test_the_closed_form_termination_of_the_spec_is_the_shortest_then_smallest_code():
    import random

    from compressor.coding.rangecoder import RangeEncoder

    rng = random.Random(6)
    for _ in range(3000):
        enc = RangeEncoder()
        for _ in range(rng.randrange(0, 12)):
            if rng.random() < 0.2:
                t = rng.randrange(1, 17)
                enc.encode_bits(rng.randrange(1 << t), t)
            else:
                start = rng.choice([0, rng.randrange(TOTAL - 1)])
                enc.encode(start, rng.choice([1, rng.randrange(1, TOTAL - start + 1)]))
        shifts = len(enc._out)
        low = (int.from_bytes(enc._out, "big") << 32) | enc._low
        want = _shortest_then_smallest(low, enc._range, shifts)
        assert _closed_form(low, enc._range, shifts) == want == enc.finish()


def test_compressor_info_describes_a_count_zero_stream(tmp_path, capsys):
    from compressor.cli import main

    path = tmp_path / "empty.lzc"
    path.write_bytes(wire.pack_stream(bytes.fromhex(DOC["bundles"]["A"]["model_id"]), "entropy", 0, []))
    assert main(["info", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 0
