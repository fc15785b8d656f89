"""Compress small grayscale images to a few latent bytes and decode them on another device.

Device side only: needs numpy and one inference runtime (ai-edge-litert, tflite-runtime or
onnxruntime); never imports TensorFlow. See README.md for the workflow.
"""

from compressor.codec import Decoder, Encoder
from compressor.errors import (
    BundleError,
    CodeError,
    CompressorError,
    CorruptCodeError,
    DatasetError,
    IntegrityError,
    InvalidImageError,
    MissingExtraError,
    ModelMismatchError,
    RateError,
    RuntimeUnavailableError,
    TruncatedCodeError,
    UnsupportedFormatVersionError,
)

__version__ = "0.1.0"
__all__ = [
    "BundleError",
    "CodeError",
    "CompressorError",
    "CorruptCodeError",
    "DatasetError",
    "Decoder",
    "Encoder",
    "IntegrityError",
    "InvalidImageError",
    "MissingExtraError",
    "ModelMismatchError",
    "RateError",
    "RuntimeUnavailableError",
    "TruncatedCodeError",
    "UnsupportedFormatVersionError",
]
