"""Residual mode (wire mode 3) for :class:`~compressor.Encoder` / :class:`~compressor.Decoder`.

The codec classes only dispatch here; this module turns images into residual payloads and
back. A residual payload is ``parameter byte || image check (2) || range code``
(docs/format.md): the parameter byte's bit 7 is the kind (0 = grayscale residual) and bits
6..0 the error bound ``E``, so one stream may mix bounds (``target_psnr`` picks one per image).

Both sides predict pixels with the int8 decoder in the runtime and precision that the
bundle's ``residual`` section names (int8 LiteRT); the encoder loads that decoder from
``decoder/`` beside its own sub-bundle, and a decoder loaded otherwise is refused up front.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from compressor import binary_residual
from compressor.coding import binary_context, binary_context2, residual
from compressor.errors import (
    CodeError,
    CorruptCodeError,
    LosslessMismatchError,
    RateError,
    TruncatedCodeError,
    about_image,
)
from compressor.io.arrays import as_batch

KIND_GRAYSCALE = 0
KIND_BINARY = 1
_KIND_BIT = 0x80
_SET_BIT = 0x40
_BOUND_BITS = 0x3F


class ResidualUnavailableError(RateError):
    """A residual code (max_error / target_psnr) was asked of a bundle that cannot make one."""


def parameter_byte(value: int, kind: int = KIND_GRAYSCALE, table_set: int = residual.NETWORK) -> int:
    return (kind << 7) | (table_set << 6) | value


def table_for(encoder):
    """The bundle's residual table, or a clear error naming the fix."""
    table = encoder.coding.residual
    if table is None:
        kind = "binarized" if encoder.part.binarize else "grayscale"
        raise ResidualUnavailableError(
            f"this bundle has no residual tables (its model is {kind}); max_error= and target_psnr= need a "
            "model trained with --grayscale and exported by this version (binary models: mode='lossless', --lossless)"
        )
    return table


def check_bound(table: residual.ResidualTable, max_error) -> int:
    if isinstance(max_error, bool) or not isinstance(max_error, (int, np.integer)) or max_error < 0:
        raise RateError(f"max_error must be an integer >= 0 (0 = lossless), got {max_error!r}")
    if int(max_error) not in table.tables:
        raise RateError(f"max_error={max_error} has no table in this bundle; choose one of {table.bounds}")
    return int(max_error)


def encode(
    encoder,
    images,
    *,
    step=None,
    quality=None,
    max_error=None,
    target_psnr=None,
    band=None,
    target_error=None,
    stream=False,
    mean_error=None,
) -> list[tuple[int, bytes]]:
    """(step index, payload) per image, each within its bound ``E`` of the uint8 image (binary
    models: exact, or exact where the decoder is unsure, ``band``; ``target_error``: the cheapest
    code per image with at most that fraction of wrong pixels; ``mean_error``: at most that
    fraction of all the call's pixels wrong). ``stream``: the payloads share one header step
    (binary layout 2 names each image's own step inside)."""
    if encoder.part.binarize:
        if encoder.coding.binary_context2 is not None:
            return binary_residual.encode(
                encoder, images, step, quality, max_error, target_psnr, band, target_error, stream, mean_error
            )
        if target_error is not None or mean_error is not None:
            raise RateError("target_error=/mean_error= need a bundle exported by this version (binary_context2 table)")
        return _encode_binary(encoder, images, step, quality, max_error, target_psnr, band)
    if target_error is not None or mean_error is not None:
        raise RateError(
            "target_error=/mean_error= are the near-lossless knobs of binary models; grayscale models take max_error="
        )
    if band is not None:
        raise RateError("band= is the near-lossless knob of binary models; grayscale models take max_error=")
    table = table_for(encoder)
    if (max_error is None) == (target_psnr is None):
        raise RateError("give max_error= or target_psnr=, not both (or neither)")
    if target_psnr is not None and not (isinstance(target_psnr, (int, float)) and math.isfinite(target_psnr)):
        raise RateError(f"target_psnr must be a finite number of dB, got {target_psnr!r}")
    x = as_batch(images, shape=encoder.part.image_shape)
    pixels = np.rint(x * 255).astype(np.uint8)
    index = table.step_index if step is None and quality is None else encoder.coding.step_index(step, quality)
    symbols = encoder.quantize(encoder.latents(pixels), index)
    net = encoder.prediction_network(table.runtime, table.precision, "residual")
    levels = net.levels(symbols * encoder.coding.steps[index])[..., 0]
    ct = encoder.coding.tables[index]
    if max_error is not None:
        e = check_bound(table, max_error)
        sets, payloads = residual.encode_choosing_set(symbols, pixels, levels, ct, table, e)
        return [(index, bytes((parameter_byte(e, table_set=int(ts)),)) + p) for ts, p in zip(sets, payloads)]
    bounds, sets = _bounds_for_psnr(table, pixels, levels, float(target_psnr))
    payloads = [b""] * len(pixels)
    for key in np.unique(bounds * 2 + sets):
        e, table_set = divmod(int(key), 2)
        idx = np.flatnonzero(bounds * 2 + sets == key)
        head = bytes((parameter_byte(e, table_set=table_set),))
        coded = residual.encode_batch(symbols[idx], pixels[idx], levels[idx], ct, table, e, table_set)
        for i, p in zip(idx, coded):
            payloads[i] = head + p
    return [(index, p) for p in payloads]


def _shorter_set(table: residual.ResidualTable, pixels, levels, e: int) -> np.ndarray:
    """Per image, the table set whose pixel code is shorter at bound ``e`` (ideal bits; 0 on ties)."""
    if table.spatial is None or e not in table.spatial.tables:
        return np.zeros(len(pixels), np.int64)
    bits = [residual.ideal_bits(table, pixels, levels, e, s) for s in (residual.NETWORK, residual.SPATIAL)]
    return (bits[1] < bits[0]).astype(np.int64)


def _encode_binary(encoder, images, step, quality, max_error, target_psnr, band) -> list[tuple[int, bytes]]:
    table = encoder.coding.binary_context
    if table is None:
        raise ResidualUnavailableError(
            "this binary bundle has no binary_context table: re-export it with this version, or use mode='lossless'"
        )
    if target_psnr is not None:
        raise RateError("target_psnr= is for grayscale models; binary models take band= (0..127) or max_error=0")
    if max_error is not None and band is not None:
        raise RateError("give max_error=0 (lossless) or band=, not both")
    if max_error is not None and (isinstance(max_error, bool) or max_error != 0):
        raise RateError(
            f"binary models have no grey levels to bound: max_error must be 0 (lossless), got {max_error!r}; "
            "for fewer bytes with a few wrong pixels use band= (0..127)"
        )
    band = binary_context.LOSSLESS_BAND if band is None else band
    if isinstance(band, bool) or not isinstance(band, (int, np.integer)) or not 0 <= band <= 127:
        raise RateError(f"band must be an integer 0..127 (127 = lossless), got {band!r}")
    bits = as_batch(images, shape=encoder.part.image_shape) > 0.5
    index = table.step_index if step is None and quality is None else encoder.coding.step_index(step, quality)
    symbols = encoder.quantize(encoder.latents(bits.astype(np.float32)), index)
    net = encoder.prediction_network(table.runtime, table.precision, "residual")
    levels = net.levels(symbols * encoder.coding.steps[index])[..., 0]
    head = bytes((parameter_byte(int(band), KIND_BINARY),))
    payloads = binary_context.encode_batch(symbols, bits, levels, encoder.coding.tables[index], table, int(band))
    return [(index, head + p) for p in payloads]


def _bounds_for_psnr(table: residual.ResidualTable, pixels, levels, target: float):
    """Per image, ``(E, table set)``: of the tabled bounds and sets whose reconstruction meets
    ``target`` dB PSNR, the one with the shortest pixel code (lossless where none does)."""
    best = np.zeros(len(pixels), np.int64)
    best_set = _shorter_set(table, pixels, levels, 0)
    best_bits = np.full(len(pixels), np.inf)
    x = pixels.astype(np.float64)
    for table_set in table.sets:
        tables = table.tables if table_set == residual.NETWORK else table.spatial.tables
        for e in sorted(tables):
            if e == 0:
                continue
            coded = residual.symbols_and_contexts(table, pixels, levels, e, table_set)
            mse = np.mean((coded[2] - x) ** 2, axis=(1, 2))
            psnr = np.where(mse > 0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)), np.inf)
            bits = residual.ideal_bits_of(table, coded, e, table_set)
            better = (psnr >= target) & (bits < best_bits)
            best = np.where(better, e, best)
            best_set = np.where(better, table_set, best_set)
            best_bits = np.where(better, bits, best_bits)
    return best, best_set


def start(coding, payload: bytes, index: int) -> tuple[list[int], tuple]:
    """Phase 1 for one payload: ``(latent symbols, state)``; :func:`finish` decodes the pixels
    on from the state (a copy of it: the same state may be finished twice)."""
    return _state(coding, payload, index)


def own_step(state: tuple) -> int:
    """The step index a binary layout-2 payload codes its latent at, from its phase-1 state."""
    return state[4]


def _fresh(state: tuple) -> tuple:
    """``state`` with a copy of its range decoder, which finishing advances."""
    return (state[0], copy.copy(state[1]), *state[2:])


def _state(coding, payload: bytes, index: int):
    """(latent symbols, (kind, range decoder, image check, E or band)) of one payload."""
    if not payload:
        first = "its 2-byte image check" if coding.binary_context2 is not None else "its parameter byte"
        raise CorruptCodeError(f"a residual payload starts with {first}; got an empty payload: damaged data")
    if coding.binary_context2 is not None:
        index, band, syms, dec, check = binary_context2.start_decoding(payload, index, coding.tables)
        return syms, ("binary2", dec, check, band, index)
    param = payload[0]
    if param & _KIND_BIT:
        if coding.binary_context is None:
            raise CorruptCodeError("a binary residual code, but this bundle has no binary_context table: wrong bundle")
        dec, syms, check = residual.start_decoding(payload[1:], coding.tables[index])
        return syms, ("binary", dec, check, param & 0x7F)
    if coding.residual is None:
        raise CorruptCodeError("a residual code, but this bundle has no residual tables: damaged data or wrong bundle")
    if len(payload) < 1 + residual.CHECK_BYTES:
        raise TruncatedCodeError(
            f"a residual payload is at least {1 + residual.CHECK_BYTES} bytes (with its image check)"
        )
    e, table_set = param & _BOUND_BITS, (param & _SET_BIT) >> 6
    coding.residual.table(e, table_set)  # CorruptCodeError for a set or bound without a table
    dec, syms, check = residual.start_decoding(payload[1:], coding.tables[index])
    return syms, ("residual", dec, check, e * 2 + table_set)


def pixels(coding, payload: bytes, index: int, levels: np.ndarray) -> np.ndarray:
    """The uint8 pixels (H x W) of one grayscale residual payload, given the int8 decoder's output
    levels for its latent (conformance vectors and reference checks: no network involved)."""
    _, (kind, dec, check, key) = _state(coding, payload, index)
    if kind != "residual":
        raise CorruptCodeError("a binary residual code where a grayscale one was expected: wrong bundle")
    e, table_set = divmod(key, 2)
    return residual.finish_decoding([dec], [check], np.asarray(levels)[None], coding.residual, e, table_set)[0]


def binary2_pixels(coding, payloads, headers, levels: np.ndarray) -> np.ndarray:
    """The pixels (uint8 0/1, (N, H, W)) of binary layout-2 payloads (their header step indices
    ``headers``), given the int8 decoder's output levels for their latents (conformance vectors and
    reference checks: no network involved), each verified as :func:`finish` does."""
    states = [_state(coding, p, i)[1] for p, i in zip(payloads, headers, strict=True)]
    return binary_residual.pixels(coding.binary_context2, states, levels)


def finish(decoder, decoded) -> np.ndarray:
    """Phase 2 for a batch of residual codes: uint8 (N, H, W), each image verified."""
    if decoded.step_indices is None:
        raise ValueError("residual images need the step indices their codes named: pass what Decoder.read returned")
    headers = decoded.step_indices.tolist()
    read = decoded.phase1
    if read is not None and len(read) == len(headers) and all(p is q for (p, _), q in zip(read, decoded.payloads)):
        pending = [_fresh(state) for _, state in read]
    else:
        pending = [_state(decoder.coding, p, i)[1] for p, i in zip(decoded.payloads, headers, strict=True)]
    if decoder.coding.binary_context2 is not None:
        return binary_residual.finish(decoder, decoded, pending)
    binary = {p[0] == "binary" for p in pending}
    if len(binary) > 1:
        raise CorruptCodeError("a stream mixes binary and grayscale residual codes: damaged data")
    t = decoder.coding.binary_context if binary.pop() else decoder.coding.residual
    net = decoder.network
    if (net.runtime, net.precision) != (t.runtime, t.precision):
        raise LosslessMismatchError(
            f"residual codes are predicted with the {t.precision} {t.runtime} decoder; this decoder runs "
            f"{net.precision} {net.runtime}: load it with runtime={t.runtime!r}, precision={t.precision!r}"
        )
    if isinstance(t, binary_context.ContextTable):
        levels = net.levels(decoded.latents)[..., 0]
        out = np.empty(levels.shape, np.uint8)
        for i, (_, dec, check, band) in enumerate(pending):
            try:
                out[i] = binary_context.finish_decoding(dec, check, levels[i], t, band) * np.uint8(255)
            except CodeError as err:
                raise about_image(err, i) from err
        return out
    keys = np.array([p[3] for p in pending])  # E * 2 + table set
    levels = _network_levels(net, decoded.latents, keys % 2 == residual.NETWORK, decoder.part.image_shape)
    out = np.empty(levels.shape, np.uint8)
    bounds, sets = keys // 2, keys % 2
    for e in np.unique(bounds).tolist():  # one pass per bound, both table sets together
        idx = np.flatnonzero(bounds == e)
        decs = [pending[i][1] for i in idx]
        checks = [pending[i][2] for i in idx]
        out[idx] = residual.finish_decoding(decs, checks, levels[idx], t, e, sets[idx], images=idx)
    return out


def _network_levels(net, latents: np.ndarray, wanted: np.ndarray, shape) -> np.ndarray:
    """int8 levels (N, H, W) for the images where ``wanted``, zeros elsewhere.

    Table set 1 predicts from the reconstructed neighbours alone (docs/format.md), so its
    images need no network run: on photo crops, and on the digits the network predicts
    poorly, that is most of a batch, and one batch-1 invoke per image (``levels`` is
    canonical per image, so running a subset gives the same levels) is the decoder's
    largest cost after the pixel coder."""
    if wanted.all():
        return net.levels(latents)[..., 0]
    idx = np.flatnonzero(wanted)
    if not len(idx):
        return np.zeros((len(latents), *shape), np.int8)
    some = net.levels(latents[idx])[..., 0]
    levels = np.zeros((len(latents), *some.shape[1:]), some.dtype)
    levels[idx] = some
    return levels


def describe_layout2(coding, payloads, index: int) -> dict:
    """:func:`describe` for binary layout 2, whose step and band sit inside the range code
    (so only a reader with the bundle can show them)."""
    states = [_state(coding, p, index)[1] for p in payloads]
    bands = sorted({s[3] for s in states})
    steps = sorted({coding.steps[s[4]] for s in states})
    return {
        "residual_kind": "binary",
        "layout": 2,
        "band": bands,
        "steps": steps,
        "lossless": bands == [binary_context.LOSSLESS_BAND],
    }


def describe(payloads) -> dict:
    """What ``compressor info`` shows for residual payloads: their kind and bounds (or bands).
    Binary layout 2 payloads have no parameter byte: ``info --bundle`` shows them
    (:func:`describe_layout2`)."""
    kinds = {p[0] >> 7 for p in payloads if p}
    values = sorted({p[0] & 0x7F for p in payloads if p})
    if kinds == {KIND_BINARY}:
        return {"residual_kind": "binary", "band": values, "lossless": values == [binary_context.LOSSLESS_BAND]}
    if kinds == {KIND_GRAYSCALE}:
        bounds = sorted({p[0] & _BOUND_BITS for p in payloads if p})
        sets = sorted({(p[0] & _SET_BIT) >> 6 for p in payloads if p})
        return {"residual_kind": "grayscale", "max_error": bounds, "table_sets": sets, "lossless": bounds == [0]}
    return {"residual_kind": "damaged"}
