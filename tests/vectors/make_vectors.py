"""Write ``tests/vectors/format_vectors.json``: conformance vectors for docs/format.md.

Run from the repository root: ``python -m tests.vectors.make_vectors``. The output is committed
as data; the test suite reads it and never runs this script, so a change in the code that alters
what a vector decodes to (or how it is refused) fails the tests instead of silently moving the
vectors. Each vector states what it was built to show (``expect``); this script checks the
implementation agrees before writing anything, and refuses to write a file otherwise.

Valid vectors are made with the library's own encoders (what a real sender writes); invalid ones
are valid codes damaged in one controlled way, or bytes built with the range encoder to hit one
decoder check. Everything is deterministic (fixed seeds), so rerunning gives the same file.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

from compressor import wire
from compressor.coding import binary_context2 as B2
from compressor.coding import entropy, lossless
from compressor.coding import residual as gray_residual
from compressor.coding.binary_context import CUT, HALF, LOSSLESS_BAND
from compressor.coding.binary_context2 import BAND_CDF
from compressor.coding.entropy import CdfTable
from compressor.coding.rangecoder import TOTAL, RangeEncoder

from .conformance import VECTORS, coding_for, run, verdict_matches

MODEL_A = "0123456789abcdef"
MODEL_B = "fedcba9876543210"

# --- the embedded bundles -------------------------------------------------------------
# Step 0: an everyday table (3 dims; dim 1 has a single in-table symbol, so raw mode spends
# one bit on it). Step 1: dominant first symbols (cheap joint blocks; S = 8192 for the guard).
# Step 2: tables at the edges of the symbol range (escapes to +-2**15, a 16-zero gamma code).
# Step 3: the smallest possible S (= D = 2), where only the 2**20 cap limits a joint count.
TABLE_0 = {
    "precision": 16,
    "lo": [-2, 0, -1],
    "freqs": [[9000, 20000, 25000, 9000, 2279, 257], [65000, 536], [30000, 20000, 15000, 536]],
}
TABLE_1 = {"precision": 16, "lo": [0, -1], "freqs": [[61440, 2048, 2047, 1], [1000, 61440, 3095, 1]]}
TABLE_2 = {"precision": 16, "lo": [-32767, 32768], "freqs": [[30000, 30000, 5536], [60000, 5536]]}
TABLE_3 = {"precision": 16, "lo": [0, 0], "freqs": [[65535, 1], [65535, 1]]}
# A bundle has one latent size: bundle "A" holds 3-dim tables, bundle "J" 2-dim ones.
P1_FREQ = [max(1, min(TOTAL - 1, round((v + 0.5) / 256 * TOTAL))) for v in range(256)]
LOSSLESS = {"p1_freq": P1_FREQ, "runtime": "litert", "precision": "int8", "step_index": 0}
BUNDLES = {
    "A": {
        "model_id": MODEL_A,
        "steps": [0.25, 0.5, 1.0],
        "tables": [TABLE_0, TABLE_0, TABLE_0],
        "lossless": LOSSLESS,
        "image_shape": [2, 3],
    },
    "A-no-lossless": {
        "model_id": MODEL_A,
        "steps": [0.25, 0.5, 1.0],
        "tables": [TABLE_0, TABLE_0, TABLE_0],
        "lossless": None,
        "image_shape": [2, 3],
    },
    "J": {
        "model_id": MODEL_B,
        "steps": [0.5, 2.0, 4.0],
        "tables": [TABLE_1, TABLE_2, TABLE_3],
        "lossless": None,
        "image_shape": [2, 3],
    },
}


def _gray_residual_section() -> dict:
    """A tiny grayscale residual section (2 x 3 images): bounds 0, 2 and 4, 2 x 2 network contexts,
    2 activity contexts, tails of 4 so that ordinary residuals escape. Deterministic."""
    rs = np.random.RandomState(12)
    levels = rs.randint(-128, 128, size=(400, 2, 3)).astype(np.int8)
    pixels = np.clip(levels.astype(int) + 128 + rs.randint(-3, 4, size=levels.shape), 0, 255).astype(np.uint8)
    ramps = np.clip(100 + 7 * np.arange(3)[None, None, :] + rs.randint(-2, 3, size=(400, 2, 3)), 0, 255)
    table = gray_residual.build_table(
        levels,
        pixels,
        bounds=(0, 2, 4),
        level_edges=(128,),
        neighbour_edges=(1,),
        spatial_threshold=40,
        max_tail=4,
        natural=ramps.astype(np.uint8),
        activity_edges=(8,),
    )
    return table.to_json()


GRAY_RESIDUAL = _gray_residual_section()
BUNDLES["G"] = {
    "model_id": "a5a5a5a5a5a5a5a5",
    "steps": [0.25, 0.5, 1.0],
    "tables": [TABLE_0, TABLE_0, TABLE_0],
    "lossless": None,
    "residual": GRAY_RESIDUAL,
    "image_shape": [2, 3],
}
BUNDLES["G-no-spatial"] = BUNDLES["G"] | {
    "residual": {k: v for k, v in GRAY_RESIDUAL.items() if k != "spatial"},
}
MID = {k: bytes.fromhex(v["model_id"]) for k, v in BUNDLES.items()}
T = {k: [CdfTable.from_json(t) for t in v["tables"]] for k, v in BUNDLES.items()}
LT = lossless.LosslessTable(tuple(P1_FREQ), "litert", "int8")

vectors: list[dict] = []


def add(id_, bundle, codes, expect, note, *, levels=None, tags=()):
    v = {"id": id_, "bundle": bundle, "note": note}
    if isinstance(codes, (bytes, bytearray)):
        v["kind"], v["hex"] = "stream", bytes(codes).hex()
    else:
        v["kind"], v["messages"] = "messages", [bytes(m).hex() for m in codes]
    if levels is not None:
        v["levels"] = [list(map(int, lv)) for lv in levels]
    v["expect"] = expect
    if tags:
        v["tags"] = list(tags)
    vectors.append(v)


def ok(symbols, steps, names=None, pixels=None):
    e = {"symbols": [list(map(int, s)) for s in symbols], "step_indices": list(steps), "names": names}
    if pixels is not None:
        e["pixels"] = [list(map(int, p)) for p in pixels]
    return e


def err(cls, rule):
    return {"error": cls, "rule": rule}


def recrc(body: bytes) -> bytes:
    """``body`` (a stream without its CRC) with a correct CRC-32 appended."""
    return body + zlib.crc32(body).to_bytes(4, "little")


def msg(bundle, mode, step, payload, *, head=None):
    if head is None:
        return wire.pack_message(MID[bundle], mode, step, payload)
    return bytes((head, wire.message_check(MID[bundle], head, payload))) + payload


def leb(n):
    return wire._varint(n)


def stream_body(bundle, flags, mode, step, count_bytes, rest, model=None):
    return b"\x89LZC" + bytes((1, flags, mode, step)) + (model or MID[bundle]) + count_bytes + rest


# --- valid codes ----------------------------------------------------------------------
def carrying_row(table: CdfTable, seed: int):
    """A symbol row whose encoding propagates a carry through an 0xFF byte (searched for)."""
    rng = np.random.default_rng(seed)
    hit = {}
    original = RangeEncoder._add

    def spy(self, low):
        if low >> 32 and self._out and self._out[-1] == 0xFF:
            hit["ripple"] = True
        return original(self, low)

    RangeEncoder._add = spy
    try:
        for _ in range(200000):
            hit.clear()
            rows = [[int(lo + rng.integers(0, n)) for lo, n in zip(table.lo, table.sizes)] for _ in range(4)]
            entropy.encode_joint(rows, table)
            if hit:
                return rows
    finally:
        RangeEncoder._add = original
    raise RuntimeError("no carry found")


def valid_vectors():
    t0 = T["A"][0]
    # messages, entropy mode
    rows = [[0, 0, 0], [-2, 0, 1], [3, 0, -1], [-5, 0, 2], [40, -3, 1000]]
    add(
        "msg-entropy",
        "A",
        [msg("A", "entropy", 0, entropy.encode_symbols(r, t0)) for r in rows],
        ok(rows, [0] * 5),
        "entropy messages: in-table symbols, escapes below and above every edge",
        tags=("escape",),
    )
    lo_row = [-2, 0, -1]
    add(
        "msg-entropy-empty-payload",
        "A",
        [msg("A", "entropy", 1, entropy.encode_symbols(lo_row, t0))],
        ok([lo_row], [1]),
        "the lowest symbol of every dimension codes to an empty payload (a 2-byte message)",
    )
    mixed = [
        msg("A", "entropy", 2, entropy.encode_symbols([1, 0, 0], t0)),
        msg("A", "raw", 0, entropy.encode_raw([1, 0, 0], t0)),
    ]
    add(
        "msg-mixed-steps-and-modes",
        "A",
        mixed,
        ok([[1, 0, 0], [1, 0, 0]], [2, 0]),
        "messages in one call may differ in step and mode (entropy, raw)",
    )
    raw_rows = [[-2, 0, -1], [3, 0, 1], [0, 0, 0]]
    clamped = [[-2, 0, -1], [2, 0, 1], [0, 0, 0]]
    add(
        "msg-raw",
        "A",
        [msg("A", "raw", 1, entropy.encode_raw(r, t0)) for r in raw_rows],
        ok(clamped, [1] * 3),
        "raw messages: 3 + 1 + 2 bits, zero-padded to one byte; the sender clamped 3 to hi = 2",
    )
    t2 = T["J"][1]
    edge = [[-32768, 32767], [-32766, 32768], [-32767, -32768], [32767, 0]]
    add(
        "msg-entropy-edges",
        "J",
        [msg("J", "entropy", 1, entropy.encode_symbols(r, t2)) for r in edge],
        ok(edge, [1] * 4),
        "escapes to -2**15 and +2**15; -32768 in dim 1 is 65536 below lo = 32768: a gamma "
        "code with 16 zero bits, the longest allowed",
        tags=("escape", "gamma16"),
    )

    # streams
    names = ["a", "zéro", "x" * 200]
    srows = [[0, 0, 0], [5, 0, -1], [-3, 0, 20]]
    add(
        "stream-entropy-names",
        "A",
        wire.pack_stream(MID["A"], "entropy", 0, [entropy.encode_symbols(r, t0) for r in srows], names),
        ok(srows, [0] * 3, names),
        "plain entropy stream with names (UTF-8, a 200-byte name: 2-byte LEB128 length)",
        tags=("names", "escape"),
    )
    many = [[int(x) for x in np.random.default_rng(i).integers(-2, 4, 3)] for i in range(130)]
    for r in many:
        r[1] = 0
    add(
        "stream-entropy-130",
        "A",
        wire.pack_stream(MID["A"], "entropy", 2, [entropy.encode_symbols(r, t0) for r in many]),
        ok(many, [2] * 130),
        "130 images: a 2-byte LEB128 count",
    )
    add(
        "stream-raw",
        "A",
        wire.pack_stream(MID["A"], "raw", 1, [entropy.encode_raw(r, t0) for r in raw_rows]),
        ok(clamped, [1] * 3),
        "plain raw stream",
    )
    jrows = [[0, 0], [1, 0], [0, -1], [2, 1], [7, -4]]
    t1 = T["J"][0]
    add(
        "stream-joint",
        "J",
        wire.pack_stream(MID["J"], "entropy", 0, [entropy.encode_joint(jrows, t1)], joint_count=5),
        ok(jrows, [0] * 5),
        "joint stream: one range code for 5 images, escapes included",
        tags=("joint", "escape"),
    )
    add(
        "stream-joint-names",
        "J",
        wire.pack_stream(MID["J"], "entropy", 0, [entropy.encode_joint(jrows[:2], t1)], ["p", "q"], joint_count=2),
        ok(jrows[:2], [0, 0], ["p", "q"]),
        "joint stream with names",
        tags=("joint", "names"),
    )
    all_lo = [[0, -1]] * 321
    add(
        "stream-joint-empty-block-at-guard",
        "J",
        wire.pack_stream(MID["J"], "entropy", 0, [b""], joint_count=321),
        ok(all_lo, [0] * 321),
        "321 rows of each dimension's lowest symbol code to an empty block: the largest count the guard "
        "allows for 0 bytes with S = 8192 ((321 - 1) * 8192 = 65536 * 40)",
        tags=("joint", "guard"),
    )
    add(
        "stream-joint-empty-block-6",
        "J",
        wire.pack_stream(MID["J"], "entropy", 1, [b""], joint_count=6),
        ok([[-32767, 32768]] * 6, [1] * 6),
        "6 images in an empty block at the last step (issue 18's example)",
        tags=("joint", "guard"),
    )
    crows = carrying_row(t0, 1)
    add(
        "stream-joint-carry",
        "A",
        wire.pack_stream(MID["A"], "entropy", 0, [entropy.encode_joint(crows, t0)], joint_count=4),
        ok(crows, [0] * 4),
        "the encoder propagated a carry through an 0xFF byte while writing this block",
        tags=("joint", "carry"),
    )

    # lossless
    rng = np.random.default_rng(7)
    ll_rows = [[0, 0, 0], [2, 0, -1]]
    bits = [rng.integers(0, 2, 6) for _ in ll_rows]
    levels = [rng.integers(-128, 128, 6) for _ in ll_rows]
    payloads = [lossless.encode(s, b, lv, t0, LT) for s, b, lv in zip(ll_rows, bits, levels)]
    add(
        "msg-lossless",
        "A",
        [msg("A", "lossless", 0, p) for p in payloads],
        ok(ll_rows, [0, 0], pixels=bits),
        "lossless messages: image check, latent symbols, 6 pixels under the levels given",
        levels=levels,
        tags=("lossless",),
    )
    add(
        "stream-lossless",
        "A",
        wire.pack_stream(MID["A"], "lossless", 0, payloads, ["i0", "i1"]),
        ok(ll_rows, [0, 0], ["i0", "i1"], pixels=bits),
        "lossless stream with names",
        levels=levels,
        tags=("lossless", "names"),
    )
    sat = [np.full(6, 127), np.full(6, -128)]
    sat_bits = [np.array([1, 1, 1, 1, 1, 0]), np.array([0, 0, 0, 1, 0, 0])]
    add(
        "msg-lossless-saturated",
        "A",
        [msg("A", "lossless", 2, lossless.encode([1, 0, 1], b, lv, t0, LT)) for b, lv in zip(sat_bits, sat)],
        ok([[1, 0, 1], [1, 0, 1]], [2, 2], pixels=sat_bits),
        "pixels against saturated levels 127 and -128",
        levels=sat,
        tags=("lossless",),
    )
    return payloads, levels, bits


# --- invalid codes --------------------------------------------------------------------
def message_vectors():
    t0 = T["A"][0]
    good = entropy.encode_symbols([1, 0, 0], t0)
    add("M1-empty", "A", [b""], err("TruncatedCodeError", "M1"), "an empty message")
    add("M1-one-byte", "A", [b"\x40"], err("TruncatedCodeError", "M1"), "one byte")
    add(
        "M2-version-2",
        "A",
        [msg("A", "entropy", 0, good, head=0x80)],
        err("UnsupportedFormatVersionError", "M2"),
        "version 2, with a check byte that would be right",
    )
    add(
        "M2-before-M4",
        "A",
        [bytes((0xC0, 0)) + good],
        err("UnsupportedFormatVersionError", "M2"),
        "version 3 and a wrong check byte: the version is checked first",
    )
    add("M3-version-0", "A", [msg("A", "entropy", 0, good, head=0x00)], err("CorruptCodeError", "M3"), "version 0")
    m = bytearray(msg("A", "entropy", 0, good))
    m[1] ^= 0x01
    add("M4-check-byte", "A", [bytes(m)], err("ModelMismatchError", "M4"), "check byte off by one bit")
    add(
        "M4-other-model",
        "J",
        [msg("A", "entropy", 0, good)],
        err("ModelMismatchError", "M4"),
        "a message made for model A, decoded with model B",
    )
    add(
        "M4-before-M8",
        "A",
        [bytes((0x70, 0)) + good],
        err("ModelMismatchError", "M4"),
        "mode 3 and a wrong check byte: the check byte is checked first",
    )
    add(
        "M8-mode-3-no-residual-table",
        "A",
        [msg("A", "entropy", 0, good, head=0x70)],
        err("CorruptCodeError", "M8"),
        "mode 3, but the bundle has no residual tables",
    )
    add(
        "M6-step-index",
        "A",
        [msg("A", "entropy", 3, good)],
        err("CorruptCodeError", "M6"),
        "step index 3; the bundle has 3 steps (0..2)",
    )
    add(
        "M6-step-index-raw",
        "A",
        [msg("A", "raw", 15, b"")],
        err("CorruptCodeError", "M6"),
        "step index 15 is checked before the (short) raw payload",
    )
    add(
        "M7-no-lossless-table",
        "A-no-lossless",
        [msg("A", "lossless", 0, b"\x00\x00")],
        err("CorruptCodeError", "M7"),
        "a lossless message for a bundle without a lossless table",
    )
    add(
        "M-second-message",
        "A",
        [msg("A", "entropy", 0, good), msg("A", "entropy", 0, good + b"\x01")],
        err("CorruptCodeError", "E5"),
        "the first message is valid, the second has a byte appended",
    )


def entropy_vectors():
    t0 = T["A"][0]
    add(
        "E1-first-symbol",
        "A",
        [msg("A", "entropy", 0, b"\xff\xff\xff\xff")],
        err("CorruptCodeError", "E1"),
        "code 0xFFFFFFFF: v = 0xFFFFFFFF // 0xFFFF = 65537 >= 2**16",
    )
    # ESCAPE of dim 0 has frequency 257: after it range = 0xFFFF * 257 (odd) and code = range - 1,
    # so the direction bit decodes to v = (range - 1) // (range >> 1) = 2.
    found = bytes.fromhex("fffeffff")
    assert _fails_with(found, t0, "raw-bits")
    add(
        "E2-raw-bits",
        "A",
        [msg("A", "entropy", 0, found)],
        err("CorruptCodeError", "E2"),
        "code 0xFFFEFFFF: ESCAPE in dim 0, then its direction bit decodes to v = 2 >= 2**1",
    )
    t2 = T["J"][1]
    enc = RangeEncoder()
    cdf = t2.cdf(0)
    enc.encode(cdf[2], TOTAL - cdf[2])  # ESCAPE in dim 0
    enc.encode_bits(0, 1)  # below lo
    for _ in range(17):
        enc.encode_bits(0, 1)
    enc.encode_bits(1, 1)
    enc.encode_bits(0, 16)
    enc.encode_bits(0, 1)
    add(
        "E3-gamma-17-zeros",
        "J",
        [msg("J", "entropy", 1, enc.finish())],
        err("CorruptCodeError", "E3"),
        "an escape whose Elias-gamma prefix has 17 zero bits",
    )
    enc = RangeEncoder()
    enc.encode(cdf[2], TOTAL - cdf[2])
    enc.encode_bits(0, 1)  # below lo = -32767 by 2: -32769
    enc.encode_bits(0, 1)
    enc.encode_bits(1, 1)
    enc.encode_bits(0, 1)
    c1 = t2.cdf(1)
    enc.encode(0, c1[1])
    add(
        "E4-escape-below-range",
        "J",
        [msg("J", "entropy", 1, enc.finish())],
        err("CorruptCodeError", "E4"),
        "an escape to -32769 (lo = -32767, distance 2)",
    )
    enc = RangeEncoder()
    enc.encode(0, cdf[1])
    enc.encode(c1[1], TOTAL - c1[1])  # ESCAPE in dim 1 (lo = hi = 32768)
    enc.encode_bits(1, 1)  # above by 1: 32769
    enc.encode_bits(1, 1)
    add(
        "E4-escape-above-range",
        "J",
        [msg("J", "entropy", 1, enc.finish())],
        err("CorruptCodeError", "E4"),
        "an escape to 32769 (hi = 32768, distance 1)",
    )
    good = entropy.encode_symbols([1, 0, 0], t0)
    add(
        "E5-trailing-byte",
        "A",
        [msg("A", "entropy", 0, good + b"\x01")],
        err("CorruptCodeError", "E5"),
        "a byte appended to a valid payload",
    )
    add(
        "E5-trailing-zero",
        "A",
        [msg("A", "entropy", 0, good + b"\x00")],
        err("CorruptCodeError", "E5"),
        "a zero byte appended (the decoder reads it as padding, but it is not the shortest code)",
    )
    bigger = (int.from_bytes(good, "big") + 1).to_bytes(len(good), "big")
    add(
        "E5-not-smallest",
        "A",
        [msg("A", "entropy", 0, bigger)],
        err("CorruptCodeError", "E5"),
        "the last byte of a valid payload plus one: inside the same interval but not the smallest value",
    )
    add(
        "E5-one-byte",
        "A",
        [msg("A", "entropy", 0, b"\x80")],
        err("CorruptCodeError", "E5"),
        "one byte 0x80 decodes to in-table symbols but is not what the encoder writes for them",
    )


def _fails_with(payload, table, words):
    try:
        entropy.decode_symbols(payload, table)
    except Exception as e:  # noqa: BLE001 -- classify by message while generating only
        return words in str(e)
    return False


def raw_vectors():
    t0 = T["A"][0]
    add(
        "R1-short-message",
        "A",
        [msg("A", "raw", 0, b"")],
        err("TruncatedCodeError", "R1"),
        "a raw payload of 0 bytes; the table needs 1",
    )
    add(
        "R2-long",
        "A",
        [msg("A", "raw", 0, entropy.encode_raw([0, 0, 0], t0) + b"\x00")],
        err("CorruptCodeError", "R2"),
        "a raw payload of 2 bytes",
    )
    add(
        "R3-padding",
        "A",
        [msg("A", "raw", 0, bytes((entropy.encode_raw([0, 0, 0], t0)[0] | 1,)))],
        err("CorruptCodeError", "R3"),
        "a non-zero padding bit",
    )
    add(
        "R4-field",
        "A",
        [msg("A", "raw", 0, bytes((0b111_0_00_00,)))],
        err("CorruptCodeError", "R4"),
        "dimension 0 field 7 >= its 5 symbols",
    )
    add(
        "R4-single-symbol-dim",
        "A",
        [msg("A", "raw", 0, bytes((0b000_1_00_00,)))],
        err("CorruptCodeError", "R4"),
        "dimension 1 has one symbol: its 1-bit field must be 0",
    )


def lossless_vectors(payloads, levels, bits):
    add(
        "L1-short-message",
        "A",
        [msg("A", "lossless", 0, b"\x12")],
        err("TruncatedCodeError", "L1"),
        "a lossless payload of 1 byte (its image check needs 2)",
    )
    p = bytearray(payloads[0])
    p[0] ^= 0x40
    add(
        "L3-image-check",
        "A",
        [msg("A", "lossless", 0, bytes(p))],
        err("LosslessMismatchError", "L3"),
        "the image check altered: the pixels decode, their check differs",
        levels=levels[:1],
    )
    shifts = np.random.default_rng(11)
    for _ in range(5000):  # the receiver's levels differ from the sender's: the realistic cause
        other = [np.clip(levels[0] + shifts.integers(-60, 61, 6), -128, 127)]
        v = {"kind": "messages", "messages": [msg("A", "lossless", 0, payloads[0]).hex()]}
        v["levels"] = [list(map(int, other[0]))]
        if run(v, CODINGS["A"]) == {"error": "LosslessMismatchError"}:
            add(
                "L3-other-levels",
                "A",
                [msg("A", "lossless", 0, payloads[0])],
                err("LosslessMismatchError", "L3"),
                "a valid code decoded with other levels than the sender's: other pixels, their check differs",
                levels=other,
            )
            break
    else:
        raise RuntimeError("no level change gave L3")
    add(
        "L-E5-after-pixels",
        "A",
        [msg("A", "lossless", 0, payloads[0] + b"\x01")],
        err("CorruptCodeError", "E5"),
        "a byte appended: refused by the canonical check after the last pixel, before the image check",
        levels=levels[:1],
    )


def stream_vectors():
    t0 = T["A"][0]
    rows = [[0, 0, 0], [5, 0, -1], [-3, 0, 20]]
    pls = [entropy.encode_symbols(r, t0) for r in rows]
    good = wire.pack_stream(MID["A"], "entropy", 0, pls, ["a", "b", "c"])
    body = good[:-4]
    add("S1-magic", "A", b"\x88" + good[1:], err("CorruptCodeError", "S1"), "first magic byte altered")
    add("S1-short-prefix", "A", b"\x89LZ", err("CorruptCodeError", "S1"), "3 bytes of the magic only")
    add("S1-empty", "A", b"", err("CorruptCodeError", "S1"), "no bytes at all")
    add(
        "S2-version-2",
        "A",
        recrc(body[:4] + b"\x02" + body[5:]),
        err("UnsupportedFormatVersionError", "S2"),
        "stream version 2",
    )
    add(
        "S2-before-S4",
        "A",
        b"\x89LZC\x07",
        err("UnsupportedFormatVersionError", "S2"),
        "5 bytes, version 7: the version is checked before the length",
    )
    add("S3-version-0", "A", recrc(body[:4] + b"\x00" + body[5:]), err("CorruptCodeError", "S3"), "stream version 0")
    add("S4-magic-only", "A", b"\x89LZC", err("TruncatedCodeError", "S4"), "exactly the magic")
    add("S4-20-bytes", "A", good[:20], err("TruncatedCodeError", "S4"), "20 bytes")
    add(
        "S5-cut-in-payloads",
        "A",
        good[:-1],
        err("TruncatedCodeError", "S5"),
        "the last byte cut: lengths announce more than is left",
    )
    cut_names = good[: 16 + 1 + 3 + 3]
    add("S5-cut-in-names", "A", cut_names, err("TruncatedCodeError", "S5"), "cut inside the names")
    p = bytearray(good)
    p[-7] ^= 0x10
    add("S6-flipped-payload-bit", "A", bytes(p), err("CorruptCodeError", "S6"), "one payload bit flipped")
    add(
        "S6-extra-byte",
        "A",
        good + b"\x00",
        err("CorruptCodeError", "S6"),
        "a byte appended: the CRC is read from the wrong place",
    )
    jrows = [[0, 0], [1, 0], [0, -1], [2, 1], [7, -4]]
    joint = wire.pack_stream(MID["J"], "entropy", 0, [entropy.encode_joint(jrows, T["J"][0])], joint_count=5)
    add(
        "S6-joint-cut",
        "J",
        joint[:-1],
        err("CorruptCodeError", "S6"),
        "a joint stream cut by one byte: a joint header announces no length, so this is Corrupt",
    )
    add(
        "S6-overlong-count-bad-crc",
        "A",
        stream_body("A", 0, 0, 0, b"\x81\x00", b"\x00") + b"\x00\x00\x00\x00",
        err("CorruptCodeError", "S6"),
        "CRC wrong and an overlong count: Corrupt, not Truncated",
    )
    # checksum right, header wrong
    add(
        "S7-overlong-count",
        "A",
        recrc(stream_body("A", 0, 0, 0, b"\x81\x00", b"\x00")),
        err("CorruptCodeError", "S7"),
        "count 1 written as 81 00",
    )
    add(
        "S7-five-byte-count",
        "A",
        recrc(stream_body("A", 0, 0, 0, b"\x81\x80\x80\x80\x00", b"\x00")),
        err("CorruptCodeError", "S7"),
        "a 5-byte LEB128 count",
    )
    add(
        "S8-count-past-end",
        "A",
        recrc(stream_body("A", 0, 0, 0, leb(50), b"\x01\x02")),
        err("CorruptCodeError", "S8"),
        "count 50 with 2 bytes left for lengths",
    )
    add(
        "S8-name-past-end",
        "A",
        recrc(stream_body("A", 1, 0, 0, leb(1), b"\x00\x09ab")),
        err("CorruptCodeError", "S8"),
        "a 9-byte name with 2 bytes left",
    )
    add(
        "S8-leb-cut",
        "A",
        recrc(stream_body("A", 0, 0, 0, b"\x80", b"")),
        err("CorruptCodeError", "S8"),
        "the count's LEB128 runs into the CRC",
    )
    add(
        "S9-lengths-short",
        "A",
        recrc(stream_body("A", 0, 0, 0, leb(1), leb(1) + pls[0] + b"\x05")),
        err("CorruptCodeError", "S9"),
        "lengths announce fewer bytes than the stream holds",
    )
    add(
        "S9-lengths-long",
        "A",
        recrc(stream_body("A", 0, 0, 0, leb(1), leb(len(pls[0]) + 3) + pls[0])),
        err("CorruptCodeError", "S9"),
        "lengths announce more bytes than the stream holds",
    )
    add(
        "S10-flags",
        "A",
        recrc(stream_body("A", 0x04, 0, 0, leb(1), leb(len(pls[0])) + pls[0])),
        err("CorruptCodeError", "S10"),
        "flag bit 2 set",
    )
    add(
        "S10-before-S13",
        "A",
        recrc(stream_body("A", 0x80, 0, 0, leb(1), leb(len(pls[0])) + pls[0], MID["J"])),
        err("CorruptCodeError", "S10"),
        "unknown flag and another model: fields are checked before the model id",
    )
    add(
        "S19-mode-3-no-residual-table",
        "A",
        recrc(stream_body("A", 0, 3, 0, leb(1), leb(len(pls[0])) + pls[0])),
        err("CorruptCodeError", "S19"),
        "mode 3, but the bundle has no residual tables",
    )
    add(
        "S11-mode-4",
        "A",
        recrc(stream_body("A", 0, 4, 0, leb(1), leb(len(pls[0])) + pls[0])),
        err("CorruptCodeError", "S11"),
        "mode byte 4",
    )
    add(
        "S12-step-16",
        "A",
        recrc(stream_body("A", 0, 0, 16, leb(1), leb(len(pls[0])) + pls[0])),
        err("CorruptCodeError", "S12"),
        "step index 16",
    )
    add("S13-model", "J", good, err("ModelMismatchError", "S13"), "a stream of model A decoded with model B")
    bad_name_other = recrc(stream_body("A", 1, 0, 0, leb(1), leb(len(pls[0])) + leb(2) + b".." + pls[0], MID["J"]))
    add(
        "S13-before-S14",
        "A",
        bad_name_other,
        err("ModelMismatchError", "S13"),
        "name '..' and another model: the model id is checked before the names",
    )
    for i, (raw, why) in enumerate(
        [
            (b"", "an empty name"),
            (b"..", "'..'"),
            (b".", "'.'"),
            (b"a/b", "a '/'"),
            (b"a\\b", "a backslash"),
            (b"a\x00", "a NUL"),
            (b"\xc3", "invalid UTF-8"),
            (b"\xed\xa0\x80", "a UTF-8 surrogate"),
            (b"n" * 256, "256 bytes"),
        ]
    ):
        data = recrc(stream_body("A", 1, 0, 0, leb(1), leb(len(pls[0])) + leb(len(raw)) + raw + pls[0]))
        add(f"S14-name-{i}", "A", data, err("CorruptCodeError", "S14"), f"a name with {why}")
    add(
        "S15-count-0",
        "A",
        wire.pack_stream(MID["A"], "entropy", 0, []),
        err("CorruptCodeError", "S15"),
        "a plain stream of 0 images (21 bytes)",
    )
    add(
        "S15-count-0-joint",
        "A",
        recrc(stream_body("A", 2, 0, 0, leb(0), b"")),
        err("CorruptCodeError", "S15"),
        "a joint stream of 0 images",
    )
    add(
        "S16-step-index",
        "A",
        wire.pack_stream(MID["A"], "entropy", 5, pls),
        err("CorruptCodeError", "S16"),
        "step index 5; the bundle has 3 steps",
    )
    add(
        "S17-joint-raw",
        "A",
        recrc(stream_body("A", 2, 1, 0, leb(1), b"\x00")),
        err("CorruptCodeError", "S17"),
        "a joint stream in raw mode",
    )
    add(
        "S17-joint-lossless",
        "A",
        recrc(stream_body("A", 2, 2, 0, leb(1), b"\x00\x00")),
        err("CorruptCodeError", "S17"),
        "a joint stream in lossless mode",
    )
    add(
        "S18-guard-empty-block",
        "J",
        wire.pack_stream(MID["J"], "entropy", 0, [b""], joint_count=322),
        err("CorruptCodeError", "S18"),
        "322 images in 0 bytes: (322 - 1) * 8192 > 65536 * 40",
    )
    block = entropy.encode_joint(jrows, T["J"][0])
    limit = 1 + 8 * (8 * len(block) + 40)
    add(
        "S18-guard-forged-count",
        "J",
        wire.pack_stream(MID["J"], "entropy", 0, [block], joint_count=limit + 1),
        err("CorruptCodeError", "S18"),
        f"a {len(block)}-byte block announcing {limit + 1} images (at most {limit})",
    )
    add(
        "S18-guard-2-20",
        "J",
        wire.pack_stream(MID["J"], "entropy", 2, [b""], joint_count=(1 << 20) + 1),
        err("CorruptCodeError", "S18"),
        "2**20 + 1 images in 0 bytes with S = 2: the length rule allows 1,310,721, the absolute cap 2**20 refuses",
    )
    add(
        "S19-no-lossless-table",
        "A-no-lossless",
        wire.pack_stream(MID["A"], "lossless", 0, [b"\x00\x00"]),
        err("CorruptCodeError", "S19"),
        "a lossless stream for a bundle without a lossless table",
    )
    add(
        "S20-raw-short-in-stream",
        "A",
        wire.pack_stream(MID["A"], "raw", 0, [b""]),
        err("CorruptCodeError", "S20"),
        "a 0-byte raw payload in a stream: its length is checksummed, so this is damage, not a cut",
    )
    add(
        "S20-lossless-short-in-stream",
        "A",
        wire.pack_stream(MID["A"], "lossless", 0, [b"\x01"]),
        err("CorruptCodeError", "S20"),
        "a 1-byte lossless payload in a stream",
    )
    add(
        "S-payload-E5",
        "A",
        wire.pack_stream(MID["A"], "entropy", 0, [pls[0], pls[1] + b"\x01"]),
        err("CorruptCodeError", "E5"),
        "the second payload of a valid stream has a byte appended",
    )


# --- mode 3, grayscale kind (bundle "G") -----------------------------------------------------
def _gray_payload(symbols, pixels, levels, e, table_set):
    """``parameter byte || check || range code`` as the encoder writes it (residual_codec.encode)."""
    table = gray_residual.ResidualTable.from_json(GRAY_RESIDUAL)
    body = gray_residual.encode_batch(
        np.asarray([symbols]),
        np.asarray([pixels], np.uint8),
        np.asarray([levels], np.int8),
        T["G"][0],
        table,
        e,
        table_set,
    )[0]
    return bytes(((table_set << 6) | e,)) + body


def _gray_reconstruction(pixels, levels, e, table_set):
    table = gray_residual.ResidualTable.from_json(GRAY_RESIDUAL)
    _, _, rec = gray_residual.symbols_and_contexts(
        table, np.asarray([pixels], np.uint8), np.asarray([levels], np.int8), e, table_set
    )
    return rec[0].ravel()


def gray_residual_vectors():
    """Valid grayscale residual codes (both table sets, lossless and E = 2, an escape, a stream
    mixing them) and one invalid vector per G-rule."""
    rs = np.random.RandomState(21)
    levels = [rs.randint(-128, 128, size=(2, 3)) for _ in range(5)]
    pixels = [
        np.clip(levels[0] + 128 + np.array([[1, -2, 0], [3, 0, -1]]), 0, 255),
        np.array([[0, 255, 17], [200, 3, 90]]),  # far from any prediction: escapes and the MED branch
        np.array([[100, 107, 114], [101, 108, 115]]),  # a ramp: table set 1's content
        np.array([[60, 61, 90], [62, 64, 91]]),
        np.array([[30, 47, 58], [41, 52, 70]]),
    ]
    symbols = [[0, 0, 0], [1, 0, -1], [-2, 0, 2], [0, 0, 1], [0, 1, 0]]
    cases = [(0, 0), (0, 0), (0, 1), (2, 1), (4, 1)]  # (E, table set) per image; set 1 smooths from E = 3
    payloads = [_gray_payload(s, p, lv, e, ts) for s, p, lv, (e, ts) in zip(symbols, pixels, levels, cases)]
    flat = [lv.ravel() for lv in levels]
    want = [_gray_reconstruction(p, lv, e, ts) for p, lv, (e, ts) in zip(pixels, levels, cases)]
    add(
        "msg-residual-gray",
        "G",
        [msg("G", "residual", 0, p) for p in payloads],
        ok(symbols, [0] * 5, pixels=want),
        "grayscale residual messages: lossless (table set 0, one with escapes), lossless table set 1, E = 2 and "
        "E = 4 (the smoothed predictor) set 1",
        levels=flat,
        tags=("residual", "escape"),
    )
    near = _gray_payload(symbols[3], pixels[3], levels[3], 2, 0)
    add(
        "msg-residual-gray-near",
        "G",
        [msg("G", "residual", 1, near)],
        ok(symbols[3:4], [1], pixels=[_gray_reconstruction(pixels[3], levels[3], 2, 0)]),
        "a near-lossless (E = 2) grayscale residual message, table set 0: every pixel within 2",
        levels=flat[3:4],
        tags=("residual",),
    )
    add(
        "stream-residual-gray",
        "G",
        wire.pack_stream(MID["G"], "residual", 0, payloads, ["a", "b", "c", "d", "e"]),
        ok(symbols, [0] * 5, names=["a", "b", "c", "d", "e"], pixels=want),
        "a residual stream mixing bounds and table sets, with names",
        levels=flat,
        tags=("residual", "names"),
    )
    add(
        "G1-no-parameter-byte",
        "G",
        [msg("G", "residual", 0, b"")],
        err("CorruptCodeError", "G1"),
        "a residual payload of 0 bytes: no parameter byte",
    )
    add(
        "G2-short-check",
        "G",
        [msg("G", "residual", 0, b"\x00\x12")],
        err("TruncatedCodeError", "G2"),
        "a residual payload of 2 bytes: the image check needs 2 after the parameter byte",
    )
    add(
        "G3-no-spatial-set",
        "G-no-spatial",
        [msg("G-no-spatial", "residual", 0, payloads[2])],
        err("CorruptCodeError", "G3"),
        "table set 1 (bit 6) for a bundle whose residual section has no spatial set",
        levels=flat[2:3],
    )
    add(
        "G4-bound-without-table",
        "G",
        [msg("G", "residual", 0, bytes((1,)) + payloads[0][1:])],
        err("CorruptCodeError", "G4"),
        "E = 1: the bundle has tables for 0, 2 and 4 only",
        levels=flat[:1],
    )
    add(
        "G4-old-reader-view",
        "G-no-spatial",
        [msg("G-no-spatial", "residual", 0, bytes((0x42,)) + payloads[3][1:])],
        err("CorruptCodeError", "G3"),
        "0x42 = set 1, E = 2 (a reader before table sets saw E = 66 and refused it as a bound without a table)",
        levels=flat[3:4],
    )
    # an impossible escape value: after the latent symbols, ESCAPE then u >= M, built with the coder
    table = gray_residual.ResidualTable.from_json(GRAY_RESIDUAL)
    t = table.table(2)
    enc = RangeEncoder()
    entropy.encode_row(enc, entropy.as_symbols(symbols[0], len(T["G"][0].lo)), T["G"][0])
    _, m, _ = gray_residual.geometry(2)
    nb = max(1, (m - 1).bit_length())
    ctx = int(table.level_lut[int(levels[0][0, 0]) + 128] + table.neighbour_lut[gray_residual.MAX_NEIGHBOUR])
    esc = 2 * t.tail + 1
    enc.encode(t.cdf_lists[ctx][esc], t.cdf_lists[ctx][esc + 1] - t.cdf_lists[ctx][esc])
    enc.encode((m + 1) << (16 - nb), 1 << (16 - nb))
    add(
        "G5-escape-value",
        "G",
        [msg("G", "residual", 0, bytes((2,)) + b"\x00\x00" + enc.finish())],
        err("CorruptCodeError", "G5"),
        f"the first pixel escapes to u = {m + 1} >= M = {m}",
        levels=flat[:1],
    )
    add(
        "G6-trailing-byte",
        "G",
        [msg("G", "residual", 0, payloads[0] + b"\x01")],
        err("CorruptCodeError", "G6"),
        "a byte appended: the pixels and their check come out right, but the code is not the encoder's",
        levels=flat[:1],
    )
    bad = bytearray(payloads[2])
    bad[1] ^= 0x10
    add(
        "G7-image-check",
        "G",
        [msg("G", "residual", 0, bytes(bad))],
        err("LosslessMismatchError", "G7"),
        "the image check altered: the pixels decode, their check differs",
        levels=flat[2:3],
    )
    other = [np.clip(flat[0] + 50, -128, 127)]
    add(
        "G7-other-levels",
        "G",
        [msg("G", "residual", 0, payloads[0])],
        err("LosslessMismatchError", "G7"),
        "a valid table-set-0 code decoded under other int8 levels than the sender's",
        levels=other,
    )


# --- mode 3, binary kind layout 2 (bundle "K") -------------------------------------------------
def _k_p1_freq() -> list[int]:
    """The 32,768 context frequencies of bundle "K", from a formula: with Knuth's multiplicative
    hash ``h = ((ctx * 2654435761) mod 2**32) >> 16``, ``f = 32768`` where ``h mod 16 = 0`` (coin
    flips: coded even at band 0), ``1`` where it is 1 and ``65535`` where it is 2 (near-certain
    contexts: a surprise costs 16 bits), else ``clip(h, 1, 65535)``. Unrelated to the levels on
    purpose: neighbouring contexts get unrelated frequencies, so a decoder that builds any part of
    the context index wrongly decodes other pixels (or fails the check)."""
    out = []
    for ctx in range(B2.CONTEXTS):
        h = ((ctx * 2654435761) & 0xFFFFFFFF) >> 16
        out.append({0: 32768, 1: 1, 2: 65535}.get(h % 16, min(max(h, 1), TOTAL - 1)))
    return out


K_P1 = _k_p1_freq()
K_TABLE = B2.ContextTable2(tuple(K_P1), "litert", "int8", 2)
# one entropy table per step, each with other lo: a decoder reading the latent under the header's
# step instead of the payload's own gets other symbols
K_TABLES = [TABLE_0 | {"lo": [-2 + k, -(k % 2), -1 + k // 2]} for k in range(16)]  # 16 steps: the most there are
K_SHAPE = (4, 5)


def _packed_freqs(freqs) -> str:
    """base64 of the frequencies as big-endian uint16: 32,768 integers in 87,384 characters."""
    return base64.b64encode(b"".join(f.to_bytes(2, "big") for f in freqs)).decode("ascii")


BUNDLES["K"] = {
    "model_id": "c3c3c3c3c3c3c3c3",
    "steps": [0.25 * (k + 1) for k in range(16)],
    "tables": K_TABLES,
    "lossless": None,
    "binary_context2": {
        "p1_freq_base64": _packed_freqs(K_P1),
        "runtime": "litert",
        "precision": "int8",
        "step_index": 2,
    },
    "image_shape": list(K_SHAPE),
}
MID["K"] = bytes.fromhex(BUNDLES["K"]["model_id"])
T["K"] = [CdfTable.from_json(t) for t in K_TABLES]


def _k_payload(own, header, symbols, bits, levels, band=LOSSLESS_BAND, lie=0.0, lie_at=()):
    """``(payload, reconstruction)`` as the layout-2 encoder writes them (binary_residual.encode)."""
    payload, recon = B2.encode_one(
        own,
        header,
        len(K_TABLES),
        symbols,
        np.asarray(bits, bool).reshape(K_SHAPE),
        np.asarray(levels, np.int8).reshape(K_SHAPE),
        T["K"][own],
        K_TABLE,
        band,
        lie,
        lie_at,
    )
    return payload, recon.ravel()


def _k_coded(recon, levels, band) -> np.ndarray:
    """Which pixels the band codes (bool (H*W,)), given the reconstruction (the decoder's contexts)."""
    ctx = B2.contexts(np.asarray(recon).reshape(1, *K_SHAPE), np.asarray(levels, np.int8).reshape(1, *K_SHAPE))
    f = K_TABLE.freq_array[ctx.ravel()]
    return np.minimum(f, TOTAL - f) >= CUT[band]


def _k_levels(rng):
    """Random int8 levels, a quarter of them exactly 0 (whose verdict is ink: ``v >= 0``)."""
    levels = rng.integers(-128, 128, 20)
    levels[rng.random(20) < 0.25] = 0
    return levels


def _k_image(rng, band, *, coded=None, background=False):
    """Random bits and levels whose code at ``band`` codes between ``coded`` pixels (searched;
    by default all 20 where ``CUT[band] = 0``, else some but not all), and with ``background`` a
    coded background pixel among them."""
    coded = coded or ((20, 20) if CUT[band] == 0 else (1, 19))
    for _ in range(10000):
        bits, levels = rng.integers(0, 2, 20), _k_levels(rng)
        _, recon = _k_payload(0, 0, [0, 0, 0], bits, levels, band)
        mask = _k_coded(recon, levels, band)
        if coded[0] <= np.count_nonzero(mask) <= coded[1] and (not background or np.any(mask & (recon == 0))):
            return bits, levels
    raise RuntimeError("no image found")


def _k_band_edge(rng, below: bool):
    """``(bits, levels, band)`` of an image with a pixel on the edge of a mid band (CUT 256..2**15 - 1):
    ``min(f, 2**16 - f) = CUT[band]``, so it is coded, and against its verdict (``below``: one
    less, so it is not coded). A decoder with another CUT, or ``>`` for ``>=``, decodes
    another image. Searched: the candidate band comes from the lossless contexts, and is kept
    if the contexts at that band still put a pixel on the edge."""
    band_of = {c - below: b for b, c in enumerate(CUT) if 256 <= c < HALF}  # mid bands
    for _ in range(100000):
        bits, levels = rng.integers(0, 2, 20), _k_levels(rng)
        f = K_TABLE.freq_array[B2.contexts(bits.reshape(1, *K_SHAPE), levels.reshape(1, *K_SHAPE).astype(np.int8))]
        for m in np.minimum(f, TOTAL - f).ravel().tolist():
            band = band_of.get(m)
            if band is None:
                continue
            _, recon = _k_payload(0, 0, [0, 0, 0], bits, levels, band)
            ctx = B2.contexts(recon.reshape(1, *K_SHAPE), levels.reshape(1, *K_SHAPE).astype(np.int8)).ravel()
            fb = K_TABLE.freq_array[ctx]
            edge = np.minimum(fb, TOTAL - fb) == CUT[band] - below
            if below and np.any(edge) or np.any(edge & (recon != (fb >= HALF))):
                return bits, levels, band
    raise RuntimeError("no band edge found")


def _sliver(enc: RangeEncoder) -> bytes:
    """A range code whose next symbol, whatever its table, decodes to ``v = 2**16``: the value
    ``low + (range >> 16) * 2**16`` lies inside the interval coded so far but beyond every slot."""
    low = (int.from_bytes(enc._out, "big") << 32) | enc._low
    value = low + (enc._range >> 16) * TOTAL
    assert value < low + enc._range, "range is a multiple of 2**16: no sliver beyond the slots"
    return value.to_bytes(4 + len(enc._out), "big").rstrip(b"\x00")


def _k_carry_image(rng):
    """An image whose pixel code propagates a carry through an 0xFF byte (searched for, with the
    pixels coded through :meth:`RangeEncoder.encode`: the same bytes as the encoder's inlined loop)."""
    hit = {}
    original_add, original_pixels = RangeEncoder._add, B2._encode_pixels

    def spy(self, low):
        if low >> 32 and self._out and self._out[-1] == 0xFF and hit.get("pixels"):
            hit["ripple"] = True
        return original_add(self, low)

    def plain(enc, freqs, inks):
        hit["pixels"] = True
        for f, b in zip(freqs, inks):
            enc.encode(0, f) if b else enc.encode(f, TOTAL - f)

    RangeEncoder._add, B2._encode_pixels = spy, plain
    try:
        for _ in range(20000):
            hit.clear()
            bits, levels = rng.integers(0, 2, 20), _k_levels(rng)
            payload, _ = _k_payload(1, 2, [0, 0, 0], bits, levels)
            if hit.get("ripple"):
                return bits, levels, payload
    finally:
        RangeEncoder._add, B2._encode_pixels = original_add, original_pixels
    raise RuntimeError("no carry found")


def binary2_vectors():
    """Valid binary layout-2 codes (own steps other than the header's, bands 0, mid and 127,
    lossless and lying encoders, an escape, a carry, an empty range code) and one invalid vector
    per K-rule."""
    rng = np.random.default_rng(2)
    n_steps = len(K_TABLES)
    # (header step, own step, symbols, band, pixels to lie at) per message
    plan = [
        (2, 2, [0, 0, 0], LOSSLESS_BAND, 0),
        (2, 0, [40, -3, 1000], LOSSLESS_BAND, 0),  # latent escapes, under step 0's table
        (0, 4, [1, 0, 2], 8, 0),  # four steps from the header; a mid band
        (4, 4, [3, -1, 1], 0, 0),  # band 0: only the coin-flip contexts are coded
        (1, 3, [-1, 0, 0], LOSSLESS_BAND, 2),  # near-lossless: the encoder lies at its two costliest pixels
        (0, 15, [0, 1, 0], LOSSLESS_BAND, 0),  # 15 steps away: the floor frequency 16
        (15, 4, [2, 0, 2], LOSSLESS_BAND, 0),  # 11 steps away, below a header that takes the rest
    ]
    images = [_k_image(rng, band, coded=(1, 3) if band == 0 else None, background=band == 0) for *_, band, _ in plan]
    payloads, recons, levels = [], [], []
    for (head, own, syms, band, lies), (bits, lv) in zip(plan, images):
        lie_at = B2.costliest(K_TABLE, bits.reshape(K_SHAPE), np.asarray(lv, np.int8).reshape(K_SHAPE), lies)
        p, recon = _k_payload(own, head, syms, bits, lv, band, lie_at=lie_at)
        if lies:
            assert np.count_nonzero(recon != bits) == lies
        payloads.append(p)
        recons.append(recon)
        levels.append(lv)
    add(
        "msg-residual-binary2",
        "K",
        [msg("K", "residual", head, p) for (head, *_), p in zip(plan, payloads)],
        ok([syms for _, _, syms, _, _ in plan], [own for _, own, *_ in plan], pixels=recons),
        "binary layout-2 messages: own step = header step (lossless), own step 0 under header 2 with latent "
        "escapes, own step 4 under header 0 at band 8, band 0 (a coin-flip pixel coded as background), a lossless "
        "band whose encoder lied at two pixels (the expected pixels are the reconstruction, two off the sender's "
        "image), and steps 15 and 4 under headers 0 and 15 (the floor frequency 16); a quarter of the levels are 0",
        levels=levels,
        tags=("residual", "binary2", "escape"),
    )
    # a stream: one header step (2), every image names its own
    stream_plan = [(0, [0, 0, 0], LOSSLESS_BAND, 0.0), (1, [2, 0, -1], 64, 0.0), (2, [-1, 1, 0], LOSSLESS_BAND, 2.0)]
    stream_plan += [(3, [0, 0, 5], 126, 0.0), (4, [1, 0, 1], LOSSLESS_BAND, 0.0), (13, [0, 0, 0], LOSSLESS_BAND, 0.0)]
    s_payloads, s_recons, s_levels = [], [], []
    for own, syms, band, lie in stream_plan:
        bits, lv = _k_image(rng, band)
        p, recon = _k_payload(own, 2, syms, bits, lv, band, lie)
        s_payloads.append(p)
        s_recons.append(recon)
        s_levels.append(lv)
    names = ["k0", "k1", "k2", "k3", "k4", "k13"]
    add(
        "stream-residual-binary2",
        "K",
        wire.pack_stream(MID["K"], "residual", 2, s_payloads, names),
        ok([s for _, s, _, _ in stream_plan], [own for own, *_ in stream_plan], names, pixels=s_recons),
        "a binary layout-2 stream with header step 2 whose six images name their own steps 0..4 and 13 (bands "
        "127, 64, 127 with lying where the truth costs 2 bits more, 126 (whose CUT is already 0: every pixel "
        "coded), 127, 127)",
        levels=s_levels,
        tags=("residual", "binary2", "names"),
    )
    edges = [_k_band_edge(rng, below) for below in (False, True)]
    e_payloads = [_k_payload(3, 3, [0, 0, 0], bits, lv, band) for bits, lv, band in edges]
    add(
        "msg-residual-binary2-band-edges",
        "K",
        [msg("K", "residual", 3, p) for p, _ in e_payloads],
        ok([[0, 0, 0]] * 2, [3, 3], pixels=[r for _, r in e_payloads]),
        f"pixels on the edge of bands {edges[0][2]} and {edges[1][2]}: min(f, 2**16 - f) = CUT[band], coded "
        "(against the context's verdict), and CUT[band] - 1, not coded",
        levels=[lv for _, lv, _ in edges],
        tags=("residual", "binary2"),
    )
    bits, lv, carried = _k_carry_image(rng)
    p, recon = _k_payload(1, 2, [0, 0, 0], bits, lv)
    assert p == carried
    add(
        "msg-residual-binary2-carry",
        "K",
        [msg("K", "residual", 2, p)],
        ok([[0, 0, 0]], [1], pixels=[recon]),
        "a lossless layout-2 code whose pixels made the encoder propagate a carry through an 0xFF byte",
        levels=[lv],
        tags=("residual", "binary2", "carry"),
    )
    # every symbol at the start of its slot keeps low = 0: own step 0 = header 0, band 0, the lowest
    # latent symbols, and the coin-flip pixels ink; the range code is empty
    bits, lv = _k_image(rng, 0, coded=(1, 3))
    p, recon = _k_payload(0, 0, [-2, 0, -1], np.ones(20, int), lv, 0)
    assert len(p) == 2
    add(
        "msg-residual-binary2-empty-range-code",
        "K",
        [msg("K", "residual", 0, p)],
        ok([[-2, 0, -1]], [0], pixels=[recon]),
        "a 2-byte layout-2 payload (the image check alone): step 0 under header 0, band 0, the lowest latent "
        "symbols and ink at every coded pixel code to an empty range code",
        levels=[lv],
        tags=("residual", "binary2"),
    )

    # invalid codes
    good, good_lv = payloads[0], levels[0]
    add(
        "K1-empty-payload",
        "K",
        [msg("K", "residual", 2, b"")],
        err("CorruptCodeError", "K1"),
        "a layout-2 payload of 0 bytes",
        levels=[good_lv],
    )
    add(
        "K1-empty-payload-in-stream",
        "K",
        wire.pack_stream(MID["K"], "residual", 2, [good, b""]),
        err("CorruptCodeError", "K1"),
        "a stream whose second payload is empty",
        levels=[good_lv, good_lv],
    )
    add(
        "K2-one-byte",
        "K",
        [msg("K", "residual", 2, good[:1])],
        err("TruncatedCodeError", "K2"),
        "a layout-2 payload of 1 byte: the image check is cut",
        levels=[good_lv],
    )
    add(
        "S20-binary2-short-in-stream",
        "K",
        wire.pack_stream(MID["K"], "residual", 2, [good[:1]]),
        err("CorruptCodeError", "S20"),
        "a 1-byte layout-2 payload in a stream: its length is checksummed, so this is damage",
        levels=[good_lv],
    )
    check = b"\x12\x34"
    enc = RangeEncoder()
    add(
        "K3-step-symbol",
        "K",
        [msg("K", "residual", 2, check + _sliver(enc))],
        err("CorruptCodeError", "K3"),
        "the range code starts FF FF: the step symbol decodes to v = 2**16",
        levels=[good_lv],
    )
    cdf = B2.step_cdf(2, n_steps)
    enc.encode(cdf[2], cdf[3] - cdf[2])
    add(
        "K4-band-symbol",
        "K",
        [msg("K", "residual", 2, check + _sliver(enc))],
        err("CorruptCodeError", "K4"),
        "step 2, then a value beyond every band slot",
        levels=[good_lv],
    )
    enc.encode(BAND_CDF[LOSSLESS_BAND], TOTAL - BAND_CDF[LOSSLESS_BAND])
    add(
        "K-latent-E1",
        "K",
        [msg("K", "residual", 2, check + _sliver(enc))],
        err("CorruptCodeError", "E1"),
        "step 2, band 127, then the first latent symbol decodes beyond every slot",
        levels=[good_lv],
    )
    entropy.encode_row(enc, entropy.as_symbols([0, 0, 0], 3), T["K"][2])
    add(
        "K5-pixel-value",
        "K",
        [msg("K", "residual", 2, check + _sliver(enc))],
        err("CorruptCodeError", "K5"),
        "step 2, band 127, a valid latent, then the first pixel decodes to v = 2**16",
        levels=[good_lv],
    )
    add(
        "K6-trailing-byte",
        "K",
        [msg("K", "residual", 2, good + b"\x01")],
        err("CorruptCodeError", "K6"),
        "a byte appended: the pixels and their check come out right, but the code is not the encoder's",
        levels=[good_lv],
    )
    bad = bytearray(good)
    bad[0] ^= 0x01
    add(
        "K7-image-check",
        "K",
        [msg("K", "residual", 2, bytes(bad))],
        err("LosslessMismatchError", "K7"),
        "the image check altered: the pixels decode, their check differs",
        levels=[good_lv],
    )
    for shift in range(8, 256, 8):
        other = np.clip(np.asarray(good_lv) + shift, -128, 127)
        v = {"kind": "messages", "messages": [msg("K", "residual", 2, good).hex()], "levels": [other.tolist()]}
        if run(v, CODINGS["K"]) == {"error": "LosslessMismatchError"}:
            break
    add(
        "K7-other-levels",
        "K",
        [msg("K", "residual", 2, good)],
        err("LosslessMismatchError", "K7"),
        f"a valid lossless code decoded under other int8 levels than the sender's (each {shift} higher, clipped)",
        levels=[other],
    )
    add(
        "K-latents-before-pixels",
        "K",
        [msg("K", "residual", 2, good), msg("K", "residual", 2, check + b"\xff\xff")],
        err("CorruptCodeError", "K3"),
        "the first message fails K7 under these levels, the second K3: every message is read up to its pixels "
        "before any pixels are decoded, so K3 decides",
        levels=[other, good_lv],
    )


CODINGS: dict = {}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in BUNDLES.items():
            CODINGS[name] = coding_for(spec, Path(tmp) / name)
        payloads, levels, bits = valid_vectors()
        message_vectors()
        entropy_vectors()
        raw_vectors()
        lossless_vectors(payloads, levels, bits)
        stream_vectors()
        gray_residual_vectors()
        binary2_vectors()
        bad = []
        for v in vectors:
            got = run(v, CODINGS[v["bundle"]])
            if not verdict_matches(v, got):
                bad.append(f"{v['id']}: built to give {v['expect']}, the implementation gives {str(got)[:200]}")
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    ids = [v["id"] for v in vectors]
    assert len(ids) == len(set(ids)), "vector ids must be unique"
    doc = {
        "about": "Conformance vectors for docs/format.md (wire format version 1); see tests/vectors/README.md",
        "bundles": BUNDLES,
        "vectors": vectors,
    }
    VECTORS.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(vectors)} vectors -> {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
