"""Run one conformance vector of ``tests/vectors/format_vectors.json`` through the implementation.

A vector is bytes (one stream, or a list of messages), the name of a bundle defined in the same
file (model id, steps, entropy tables, optional lossless, residual or binary layout-2 table, image
shape: small enough to embed, so no trained model is needed), and either the expected result
(symbols per image, step index per image, names, and for lossless and residual codes the pixels
given the int8 levels in the vector) or the expected error class and the rule of docs/format.md
that refuses it.

The implementation is driven through :meth:`compressor.codec.Coding.read` -- the bytes-to-symbols
half of ``Decoder.read``, the same code path -- with a real ``coding.json`` written to a folder,
and the pixel decoders the codec's second phase uses (the int8 levels, which a real decoder
computes with its network, come from the vector).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from compressor import bundle as B
from compressor import errors
from compressor.codec import Coding

VECTORS = Path(__file__).with_name("format_vectors.json")


def load(path: Path = VECTORS) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def coding_for(spec: dict, folder: Path) -> Coding:
    """A :class:`Coding` for the bundle ``spec``, read from a real coding.json in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    coding = {"steps": spec["steps"], "tables": spec["tables"], "default_step_index": 0}
    if spec.get("lossless") is not None:
        coding["lossless"] = spec["lossless"]
    if spec.get("residual") is not None:
        coding["residual"] = spec["residual"]
    if spec.get("binary_context2") is not None:
        coding["binary_context2"] = binary_context2_section(spec["binary_context2"])
    raw = json.dumps(coding).encode()
    (folder / "coding.json").write_bytes(raw)
    part = B.Part(
        root=folder,
        role="decoder",
        model_id=spec["model_id"],
        image_shape=tuple(spec["image_shape"]),
        latent_dim=len(spec["tables"][0]["lo"]),
        binarize=spec.get("residual") is None,
        files=(),
        coding_sha256=B.sha256_hex(raw),
        coding_size=len(raw),
        manifest={},
    )
    coding = Coding(part)
    coding.image_shape = tuple(spec["image_shape"])  # for the pixel paths: the levels come flat
    return coding


def binary_context2_section(packed: dict) -> dict:
    """The coding.json ``binary_context2`` section of a vectors-file bundle, whose 32,768
    frequencies are stored as base64 of big-endian uint16 (``p1_freq_base64``)."""
    raw = base64.b64decode(packed["p1_freq_base64"])
    freqs = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return {k: v for k, v in packed.items() if k != "p1_freq_base64"} | {"p1_freq": freqs}


def codes_of(vector: dict):
    """The bytes the vector hands to the decoder: stream bytes, or a list of message bytes."""
    if vector["kind"] == "stream":
        return bytes.fromhex(vector["hex"])
    return [bytes.fromhex(m) for m in vector["messages"]]


def run(vector: dict, coding: Coding) -> dict:
    """The implementation's verdict: ``{"error": class name}`` or the decoded result."""
    try:
        decoded = coding.read(codes_of(vector), max_images=1 << 62)  # the format alone, no budget
        result = {
            "symbols": decoded.symbols.tolist(),
            "step_indices": [coding.steps.index(s) for s in decoded.steps.tolist()],
            "names": None if decoded.names is None else list(decoded.names),
        }
        if decoded.mode == "lossless":
            pixels = []
            for payload, index, levels in zip(decoded.payloads, result["step_indices"], vector["levels"], strict=True):
                bits = coding.lossless_pixels(payload, index, np.asarray(levels, np.int64))
                pixels.append(bits.astype(int).tolist())
            result["pixels"] = pixels
        if (
            decoded.mode == "residual"
            and coding.residual is not None
            and not any(p[0] & 0x80 for p in decoded.payloads)
        ):
            result["pixels"] = residual_pixels(vector, decoded, result["step_indices"], coding)
        if decoded.mode == "residual" and coding.binary_context2 is not None:
            result["pixels"] = binary2_pixels(vector, decoded, coding)
        return result
    except errors.CodeError as e:
        return {"error": type(e).__name__}


def residual_pixels(vector: dict, decoded, indices, coding: Coding) -> list:
    """Grayscale residual codes (mode 3, kind 0): each image's uint8 pixels under the vector's levels."""
    from compressor import residual_codec

    shape = (2, -1)  # the vector bundles' images are 2 x 3
    return [
        residual_codec.pixels(coding, payload, index, np.asarray(levels, np.int8).reshape(shape))
        .astype(int)
        .ravel()
        .tolist()
        for payload, index, levels in zip(decoded.payloads, indices, vector["levels"], strict=True)
    ]


def binary2_pixels(vector: dict, decoded, coding: Coding) -> list:
    """Binary layout-2 residual codes: each image's 0/1 pixels under the vector's levels."""
    from compressor import residual_codec

    levels = np.asarray(vector["levels"], np.int8).reshape(-1, *coding.image_shape)
    bits = residual_codec.binary2_pixels(coding, decoded.payloads, decoded.step_indices.tolist(), levels)
    return [b.astype(int).ravel().tolist() for b in bits]


def verdict_matches(vector: dict, got: dict) -> bool:
    want = vector["expect"]
    if "error" in want:
        return got == {"error": want["error"]}
    return got == {k: v for k, v in want.items() if k != "rule"}
