"""Compress small grayscale images to a few latent bytes and decode them on another device.

Device side only: needs numpy, Pillow (image files) and one inference runtime (ai-edge-litert,
tflite-runtime or onnxruntime); never imports TensorFlow. See README.md for the workflow.
"""

from compressor.codec import Decoded, Decoder, Encoder
from compressor.errors import (
    AuthenticationError,
    BundleError,
    BundleNotFoundError,
    CodeError,
    CompressorError,
    CorruptCodeError,
    DatasetError,
    FolderInUseError,
    IntegrityError,
    InvalidImageError,
    InvalidNameError,
    LimitError,
    LosslessMismatchError,
    ManifestError,
    MissingExtraError,
    ModelMismatchError,
    OutputError,
    RateError,
    RefusedError,
    RuntimeUnavailableError,
    TransportError,
    TruncatedCodeError,
    UnsupportedBundleVersionError,
    UnsupportedFormatVersionError,
)

__version__ = "0.2.0"
__all__ = [
    "AuthenticationError",
    "BundleError",
    "BundleNotFoundError",
    "CodeError",
    "CompressorError",
    "CorruptCodeError",
    "DatasetError",
    "Decoded",
    "Decoder",
    "Encoder",
    "FolderInUseError",
    "IntegrityError",
    "InvalidImageError",
    "InvalidNameError",
    "LimitError",
    "LosslessMismatchError",
    "ManifestError",
    "MissingExtraError",
    "ModelMismatchError",
    "OutputError",
    "RateError",
    "RefusedError",
    "RuntimeUnavailableError",
    "TransportError",
    "TruncatedCodeError",
    "UnsupportedBundleVersionError",
    "UnsupportedFormatVersionError",
]
