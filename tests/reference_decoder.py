"""A second decoder, written from docs/format.md alone (it imports nothing from ``compressor``).

It exists to show that the specification is sufficient: ``tests/test_format_vectors.py`` runs
it on every conformance vector and expects the same symbols, pixels and names, or the same
error class *and* the same rule id as the vector records. It favours plain transcription of
the spec over speed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import zlib
from dataclasses import dataclass

TOTAL = 1 << 16
MAGIC = b"\x89LZC"


class Refused(Exception):
    def __init__(self, rule: str, error: str):
        super().__init__(f"{rule}: {error}")
        self.rule, self.error = rule, error


def corrupt(rule):
    return Refused(rule, "CorruptCodeError")


@dataclass
class Table:
    lo: list[int]
    freqs: list[list[int]]

    def cumulative(self, d):
        c = [0]
        for f in self.freqs[d]:
            c.append(c[-1] + f)
        return c


@dataclass
class Bundle:
    model_id: bytes
    steps: list[float]
    tables: list[Table]
    p1_freq: list[int] | None
    pixels: int
    residual: dict | None = None
    width: int = 0
    binary2: list[int] | None = None  # binary_context2.p1_freq

    @property
    def has_residual_tables(self):
        return self.residual is not None or self.binary2 is not None

    @classmethod
    def from_json(cls, b):
        lossless = b.get("lossless")
        return cls(
            bytes.fromhex(b["model_id"]),
            list(b["steps"]),
            [Table(t["lo"], t["freqs"]) for t in b["tables"]],
            None if lossless is None else lossless["p1_freq"],
            b["image_shape"][0] * b["image_shape"][1],
            b.get("residual"),
            b["image_shape"][1],
            None if b.get("binary_context2") is None else unpack_freqs(b["binary_context2"]["p1_freq_base64"]),
        )


@functools.lru_cache(maxsize=4)
def unpack_freqs(packed: str) -> list[int]:
    """The vectors file stores the 32,768 layout-2 frequencies as base64 of big-endian uint16."""
    raw = base64.b64decode(packed)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


# --- range decoder (docs/format.md, Range decoder) -----------------------------------------
class RangeDecoder:
    def __init__(self, data: bytes):
        self.data = data
        self.code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")
        self.range = 0xFFFFFFFF
        self.consumed = 4

    def _renormalise(self):
        while self.range < (1 << 24):
            byte = self.data[self.consumed] if self.consumed < len(self.data) else 0
            self.code = (self.code << 8) | byte
            self.range <<= 8
            self.consumed += 1

    def symbol(self, c):
        r = self.range >> 16
        v = self.code // r
        if v >= TOTAL:
            raise corrupt("E1")
        k = max(i for i in range(len(c) - 1) if c[i] <= v)
        self.code -= r * c[k]
        self.range = r * (c[k + 1] - c[k])
        self._renormalise()
        return k

    def bits(self, t):
        r = self.range >> t
        v = self.code // r
        if v >= (1 << t):
            raise corrupt("E2")
        self.code -= r * v
        self.range = r
        self._renormalise()
        return v

    def check_canonical(self):
        n = len(self.data)
        if n == 0:
            return
        g = self.consumed - n
        last = self.data[-1]
        unit = 256**g if g >= 0 else 0
        smallest_and_shortest = self.code < unit and (256 - last) * unit >= self.range - self.code
        if not (g >= 0 and last != 0 and (g >= 4 or smallest_and_shortest)):
            raise corrupt("E5")


def read_row(dec: RangeDecoder, table: Table) -> list[int]:
    """D symbols of one image (docs/format.md, Entropy payload), no canonical check."""
    out = []
    for d, low in enumerate(table.lo):
        n = len(table.freqs[d]) - 1
        hi = low + n - 1
        k = dec.symbol(table.cumulative(d))
        if k < n:
            out.append(low + k)
            continue
        above = dec.bits(1)
        zeros = 0
        while dec.bits(1) == 0:
            zeros += 1
            if zeros == 17:
                raise corrupt("E3")
        dist = (1 << zeros) + (dec.bits(zeros) if zeros else 0)
        s = hi + dist if above else low - dist
        if not -(1 << 15) <= s <= 1 << 15:
            raise corrupt("E4")
        out.append(s)
    return out


def check_ending(dec, image: bytes, check: bytes, damage, mismatch):
    """The ending rules shared by every checked image (modes 2 and 3): an image that passes its
    16-bit check but whose code does not end canonically is damage (rule ``damage``; None: the
    canonical-end rule itself), a failing check is ``mismatch`` (LosslessMismatchError)."""
    matches = (zlib.crc32(image) & 0xFFFF).to_bytes(2, "big") == check
    try:
        dec.check_canonical()
    except Refused as refused:
        if matches:
            raise (refused if damage is None else corrupt(damage)) from None
        raise Refused(mismatch, "LosslessMismatchError") from None
    if not matches:
        raise Refused(mismatch, "LosslessMismatchError")


# --- payloads ------------------------------------------------------------------------------
def entropy_payload(payload, table):
    dec = RangeDecoder(payload)
    row = read_row(dec, table)
    dec.check_canonical()
    return row, None


def raw_payload(payload, table, in_stream):
    widths = [max(1, (len(f) - 2).bit_length()) for f in table.freqs]
    size = -(-sum(widths) // 8)
    if len(payload) < size:
        raise corrupt("S20") if in_stream else Refused("R1", "TruncatedCodeError")
    if len(payload) > size:
        raise corrupt("R2")
    value = int.from_bytes(payload, "big")
    pad = 8 * size - sum(widths)
    if value & ((1 << pad) - 1):
        raise corrupt("R3")
    value >>= pad
    shift = sum(widths)
    row = []
    for low, f, b in zip(table.lo, table.freqs, widths):
        shift -= b
        field = (value >> shift) & ((1 << b) - 1)
        if field >= len(f) - 1:
            raise corrupt("R4")
        row.append(low + field)
    return row, None


def lossless_latents(payload, table, in_stream):
    if len(payload) < 2:
        raise corrupt("S20") if in_stream else Refused("L1", "TruncatedCodeError")
    dec = RangeDecoder(payload[2:])
    return read_row(dec, table), (dec, payload[:2])


def lossless_pixels(state, levels, p1_freq):
    dec, check = state
    try:
        pixels = [1 if dec.symbol([0, p1_freq[v + 128], TOTAL]) == 0 else 0 for v in levels]
    except Refused:  # E1 inside the pixels: L3
        raise Refused("L3", "LosslessMismatchError") from None
    packed = bytearray((len(pixels) + 7) // 8)
    for i, p in enumerate(pixels):
        packed[i // 8] |= p << (7 - i % 8)
    check_ending(dec, bytes(packed), check, None, "L3")
    return pixels


# --- mode 3, grayscale kind (docs/format.md, Residual payload) -----------------------------
def residual_latents(bundle, payload, table, in_stream):
    if len(payload) == 0:
        raise corrupt("G1")
    if payload[0] & 0x80:  # the binary kind: this reference has no binary_context tables
        raise corrupt("M8")
    if len(payload) < 3:
        raise corrupt("S20") if in_stream else Refused("G2", "TruncatedCodeError")
    table_set, e = (payload[0] >> 6) & 1, payload[0] & 0x3F
    if table_set == 1 and "spatial" not in bundle.residual:
        raise corrupt("G3")
    tables = bundle.residual["spatial"]["tables"] if table_set else bundle.residual["tables"]
    if str(e) not in tables:
        raise corrupt("G4")
    dec = RangeDecoder(payload[3:])
    return read_row(dec, table), ("gray", dec, payload[1:3], table_set, e)


def bucket(edges, value):
    return sum(1 for x in edges if x <= value)


def median(a, b, c):
    return sorted((a, b, c))[1]


def residual_pixels(bundle, state, levels):
    _, dec, check, table_set, e = state
    res = bundle.residual
    table = (res["spatial"] if table_set else res)["tables"][str(e)]
    tail, freqs = table["tail"], table["freqs"]
    delta = 2 * e + 1
    m = (255 + 2 * e) // delta + 1
    h = m // 2
    b = max(1, (m - 1).bit_length())
    width, n = bundle.width, bundle.pixels
    rec, err = [], []

    def at(grid, i, dr, dc):  # a causal neighbour, 0 outside the image
        r, c = divmod(i, width)
        r, c = r + dr, c + dc
        return grid[r * width + c] if 0 <= r and 0 <= c < width else 0

    try:
        for i in range(n):
            if table_set == 0:
                pd = res["predict"][levels[i] + 128]
                ew, en, enw = at(err, i, 0, -1), at(err, i, -1, 0), at(err, i, -1, -1)
                pred = pd
                if abs(ew) + abs(en) >= res["spatial_threshold"]:
                    pred = min(255, max(0, pd + median(ew, en, ew + en - enw)))
                lb = bucket(res["level_edges"], levels[i] + 128)
                ctx = lb * (len(res["neighbour_edges"]) + 1) + bucket(res["neighbour_edges"], ew + en)
            else:
                w, nn, nw, ne = at(rec, i, 0, -1), at(rec, i, -1, 0), at(rec, i, -1, -1), at(rec, i, -1, 1)
                pred = median(w, nn, w + nn - nw)
                if e >= 3:
                    pred = (2 * pred + w + nn + 2) >> 2
                ctx = bucket(res["spatial"]["activity_edges"], abs(w - nw) + abs(nn - nw) + abs(ne - nn))
            c = [0]
            for f in freqs[ctx]:
                c.append(c[-1] + f)
            k = dec.symbol(c)
            if k == 2 * tail + 1:
                u = dec.symbol([min(x << (16 - b), TOTAL) for x in range(1 << b)] + [TOTAL])
                if u >= m:
                    raise corrupt("G5")
                sym = u - h
            else:
                sym = k - tail
            y = pred + sym * delta
            if y < -e:
                y += m * delta
            elif y > 255 + e:
                y -= m * delta
            x = min(255, max(0, y))
            rec.append(x)
            if table_set == 0:
                err.append(x - pd)
    except Refused as r:
        if r.rule == "E1":
            raise corrupt("G5") from None
        raise
    check_ending(dec, bytes(rec), check, "G6", "G7")
    return rec


# --- mode 3, binary kind layout 2 (docs/format.md, Binary kind, layout 2) -------------------
def cumulative(freqs):
    c = [0]
    for f in freqs:
        c.append(c[-1] + f)
    return c


def binary2_latents(bundle, payload, header, in_stream):
    """K1-K4 and the latent symbols: ``(row, ("binary2", decoder, check, band, own step))``."""
    if len(payload) == 0:
        raise corrupt("K1")
    if len(payload) < 2:
        raise corrupt("S20") if in_stream else Refused("K2", "TruncatedCodeError")
    dec = RangeDecoder(payload[2:])
    n_steps = len(bundle.steps)
    freqs = [max(2 ** max(14 - abs(s - header), 0), 16) for s in range(n_steps)]
    freqs[header] = TOTAL - (sum(freqs) - freqs[header])
    try:
        s = dec.symbol(cumulative(freqs))
    except Refused:
        raise corrupt("K3") from None
    try:
        band = dec.symbol(cumulative([256] * 127 + [TOTAL - 127 * 256]))
    except Refused:
        raise corrupt("K4") from None
    row = read_row(dec, bundle.tables[s])
    return row, ("binary2", dec, payload[:2], band, s)


def cuts():
    cut = [1 << 15]
    for _ in range(127):
        cut.append((cut[-1] * 60097) >> 16)
    cut[127] = 0
    return cut


def binary2_pixels(bundle, state, levels):
    _, dec, check, band, _ = state
    width, height = bundle.width, bundle.pixels // bundle.width
    cut = cuts()[band]
    rec = {}

    def x(r, c):  # a reconstructed neighbour, 0 outside the image
        return rec[r, c] if 0 <= r < height and 0 <= c < width else 0

    def d(r, c):  # whether neighbour (r, c) disagrees with its own level's verdict, 0 outside
        return x(r, c) ^ (levels[r * width + c] >= 0) if 0 <= r < height and 0 <= c < width else 0

    for r in range(height):
        for c in range(width):
            v = levels[r * width + c]
            nbrs = x(r, c - 1) + 2 * x(r - 1, c) + 4 * x(r - 1, c - 1) + 8 * x(r - 1, c + 1)
            nbrs += 16 * x(r, c - 2) + 32 * x(r - 2, c)
            errs = d(r, c - 1) + 2 * d(r - 1, c) + 4 * d(r - 1, c - 1) + 8 * d(r - 1, c + 1)
            f = bundle.binary2[((v + 128) >> 3) * 1024 + 16 * nbrs + errs]
            if min(f, TOTAL - f) >= cut:
                try:
                    rec[r, c] = 1 if dec.symbol([0, f, TOTAL]) == 0 else 0
                except Refused:
                    raise corrupt("K5") from None
            else:
                rec[r, c] = 1 if f >= 1 << 15 else 0
    pixels = [rec[i // width, i % width] for i in range(bundle.pixels)]
    packed = bytearray((len(pixels) + 7) // 8)
    for i, p in enumerate(pixels):
        packed[i // 8] |= p << (7 - i % 8)
    check_ending(dec, bytes(packed), check, "K6", "K7")
    return pixels


def payload(bundle, mode, step, data, in_stream):
    table = bundle.tables[step]
    if mode == 0:
        return entropy_payload(data, table)
    if mode == 1:
        return raw_payload(data, table, in_stream)
    if mode == 3 and bundle.binary2 is not None:
        return binary2_latents(bundle, data, step, in_stream)
    if mode == 3:
        return residual_latents(bundle, data, table, in_stream)
    return lossless_latents(data, table, in_stream)


# --- message -------------------------------------------------------------------------------
def message(bundle, data):
    if len(data) < 2:
        raise Refused("M1", "TruncatedCodeError")
    version, mode, step = data[0] >> 6, (data[0] >> 4) & 3, data[0] & 15
    if version > 1:
        raise Refused("M2", "UnsupportedFormatVersionError")
    if version == 0:
        raise corrupt("M3")
    check = hashlib.blake2s(data[:1] + data[2:], digest_size=1, key=bundle.model_id).digest()[0]
    if check != data[1]:
        raise Refused("M4", "ModelMismatchError")
    if step >= len(bundle.steps):
        raise corrupt("M6")
    if mode == 2 and bundle.p1_freq is None:
        raise corrupt("M7")
    if mode == 3 and not bundle.has_residual_tables:  # no layout-1 binary_context tables in this reference
        raise corrupt("M8")
    row, state = payload(bundle, mode, step, data[2:], in_stream=False)
    return row, step, state


# --- stream --------------------------------------------------------------------------------
class Short(Exception):
    """The header walk runs short."""


class Malformed(Exception):
    """The header walk meets a 5-byte or overlong LEB128."""


def leb128(data, pos, end):
    value = 0
    for i in range(4):
        if pos + i >= end:
            raise Short
        b = data[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i:
                raise Malformed
            return value, pos + i + 1
    raise Malformed


def walk(data, end):
    names_flag, joint = data[5] & 1, data[5] & 2
    count, pos = leb128(data, 16, end)
    lengths = []
    if not joint:
        if count > end - pos:
            raise Short
        for _ in range(count):
            n, pos = leb128(data, pos, end)
            lengths.append(n)
    elif names_flag and count > end - pos:
        raise Short
    names = None
    if names_flag:
        names = []
        for _ in range(count):
            k, pos = leb128(data, pos, end)
            if k > end - pos:
                raise Short
            names.append(data[pos : pos + k])
            pos += k
    return count, lengths, names, pos


def name_ok(raw):
    if not 1 <= len(raw) <= 255 or raw in (b".", b"..") or any(c in raw for c in b"/\\\0"):
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def stream(bundle, data):
    if data[:4] != MAGIC:
        raise corrupt("S1")
    if len(data) >= 5 and data[4] > 1:
        raise Refused("S2", "UnsupportedFormatVersionError")
    if len(data) >= 5 and data[4] == 0:
        raise corrupt("S3")
    if len(data) < 21:
        raise Refused("S4", "TruncatedCodeError")
    joint = data[5] & 2
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        try:
            _, lengths, _, pos = walk(data, len(data))
        except Short:
            raise Refused("S5", "TruncatedCodeError") from None
        except Malformed:
            raise corrupt("S6") from None
        if not joint and pos + sum(lengths) + 4 > len(data):
            raise Refused("S5", "TruncatedCodeError")
        raise corrupt("S6")
    end = len(data) - 4
    try:
        count, lengths, names, pos = walk(data, end)
    except Malformed:
        raise corrupt("S7") from None
    except Short:
        raise corrupt("S8") from None
    if not joint and pos + sum(lengths) != end:
        raise corrupt("S9")
    flags, mode, step = data[5], data[6], data[7]
    if flags & ~3:
        raise corrupt("S10")
    if mode > 3:
        raise corrupt("S11")
    if step > 15:
        raise corrupt("S12")
    if data[8:16] != bundle.model_id:
        raise Refused("S13", "ModelMismatchError")
    if names is not None and not all(name_ok(n) for n in names):
        raise corrupt("S14")
    if count == 0:
        raise corrupt("S15")
    if step >= len(bundle.steps):
        raise corrupt("S16")
    if joint and mode != 0:
        raise corrupt("S17")
    if joint:
        table = bundle.tables[step]
        block = data[pos:end]
        spread = sum(TOTAL - max(f) for f in table.freqs)
        if not (1 <= count <= 1 << 20 and (count - 1) * spread <= TOTAL * (8 * len(block) + 40)):
            raise corrupt("S18")
        dec = RangeDecoder(block)
        rows = [read_row(dec, table) for _ in range(count)]
        dec.check_canonical()
        items = [(r, None) for r in rows]
    else:
        if (mode == 2 and bundle.p1_freq is None) or (mode == 3 and not bundle.has_residual_tables):
            raise corrupt("S19")
        items = []
        for n in lengths:
            items.append(payload(bundle, mode, step, data[pos : pos + n], in_stream=True))
            pos += n
    return items, step, None if names is None else [n.decode("utf-8") for n in names]


# --- entry point ---------------------------------------------------------------------------
def own_step(header_step, state):
    """The step index an image's latent is coded at: a layout-2 payload names its own."""
    return state[4] if state is not None and state[0] == "binary2" else header_step


def pixels_of(bundle, state, levels):
    if state[0] == "gray":
        return residual_pixels(bundle, state, levels)
    if state[0] == "binary2":
        return binary2_pixels(bundle, state, levels)
    return lossless_pixels(state, levels, bundle.p1_freq)


def decode(bundle_json: dict, vector: dict) -> dict:
    """The verdict on one vector: ``{"error", "rule"}`` or symbols, steps, names (and pixels)."""
    bundle = Bundle.from_json(bundle_json)
    try:
        if vector["kind"] == "stream":
            items, step, names = stream(bundle, bytes.fromhex(vector["hex"]))
            steps = [own_step(step, state) for _, state in items]
        else:
            items, steps, names = [], [], None
            for m in vector["messages"]:
                row, step, state = message(bundle, bytes.fromhex(m))
                items.append((row, state))
                steps.append(own_step(step, state))
        result = {"symbols": [r for r, _ in items], "step_indices": steps, "names": names}
        if any(state is not None for _, state in items):
            result["pixels"] = [
                pixels_of(bundle, state, levels) for (_, state), levels in zip(items, vector["levels"], strict=True)
            ]
        return result
    except Refused as e:
        return {"error": e.error, "rule": e.rule}
