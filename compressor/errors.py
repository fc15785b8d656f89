"""Every error the device side raises, in one place.

Callers catch :class:`CompressorError` for "anything this library refused", or one
subclass to react to one cause. Errors about caller-supplied arrays also derive from
``ValueError`` so generic code that expects ``ValueError`` keeps working.
Each message should tell the user what was expected and what to do next.
"""


class CompressorError(Exception):
    """Base of every error raised deliberately by ``compressor``."""


# --- model bundles ----------------------------------------------------------------
class BundleError(CompressorError):
    """A model bundle cannot be used."""


class BundleNotFoundError(BundleError):
    """The bundle directory, its manifest, or a file it lists is missing."""


class ManifestError(BundleError):
    """manifest.json is unreadable or does not follow docs/bundle.md."""


class UnsupportedBundleVersionError(BundleError):
    """The bundle was written by a newer (or unknown) format version."""


class IntegrityError(BundleError):
    """A file's SHA-256 or size differs from the manifest: tampered or damaged."""


class RuntimeUnavailableError(CompressorError):
    """No installed inference runtime can run the requested model file."""


class MissingExtraError(CompressorError):
    """An optional dependency is not installed (pyarrow for Parquet, Ray for --engine ray);
    the message names the extra that installs it."""


# --- codes (bytes) ------------------------------------------------------------------
class CodeError(CompressorError):
    """Bytes handed to the decoder are not a valid code for this model.

    When the error is about one image of a batch, ``image`` is its index in that batch and
    ``reason`` the message without its ``image I: `` prefix (see :func:`about_image`), so a
    caller that decoded in parts can name the image in the whole stream without parsing text.
    """

    image: int | None = None
    reason: str | None = None


class TruncatedCodeError(CodeError):
    """The bytes end before the structure they announce is complete."""


class CorruptCodeError(CodeError):
    """The bytes are damaged: bad magic, checksum mismatch, impossible values."""


class ModelMismatchError(CodeError):
    """The code was made with a different model than the one decoding it."""


class LosslessMismatchError(CodeError):
    """A lossless code decoded to an image that fails its check: the two devices' int8
    decoders disagree (another runtime build or kernel), or the data is damaged."""


class UnsupportedFormatVersionError(CodeError):
    """The code uses a wire-format version this library does not know."""


def about_image(err: CodeError, i: int) -> CodeError:
    """``err`` said of image ``i`` of a batch: the same class, its message prefixed with
    ``image I: ``, and ``image``/``reason`` set. Raise it ``from err``."""
    i = int(i)
    told = type(err)(f"image {i}: {err}")
    told.image, told.reason = i, str(err)
    return told


# --- caller input -------------------------------------------------------------------
class InvalidImageError(CompressorError, ValueError):
    """Images have the wrong shape, dtype, range, or contain NaN/inf, or are empty."""


class InvalidNameError(CompressorError, ValueError):
    """An image name cannot be stored or written out: too long, a path, or a duplicate."""


class LimitError(CompressorError, ValueError):
    """An input declares more than a budget allows (images, pixels, bytes); the message names
    the limit and the flag or keyword that raises it."""


class UsageError(CompressorError, ValueError):
    """Options or arguments that cannot work together; the message names the fix."""


class OutputError(CompressorError):
    """An output path cannot be used: a folder where a file is expected, or the other way round."""


class RateError(CompressorError, ValueError):
    """A rate request (step, quality, target size) cannot be met or is malformed."""


# --- transport (compressor send / receive) ------------------------------------------
class TransportError(CompressorError):
    """The link or the peer failed: closed connection, timeout, malformed frame."""


class RefusedError(TransportError):
    """The peer refused the session or an image (ERROR frame); retrying the same bytes cannot help."""


# --- dataset jobs (compressor encode-dataset / decode-dataset) -----------------------
class DatasetError(CompressorError):
    """A dataset job cannot run or its output cannot be trusted: a codes file that is not one,
    or rows lost or repeated on the way from the workers (the output is then not written)."""


# --- MQTT / LoRaWAN (compressor publish / subscribe) ----------------------------------
class MqttError(TransportError):
    """The broker cannot be used: client library missing, connection refused, not authorised."""


class UplinkError(TransportError):
    """An MQTT message is not an uplink this gateway understands: bad JSON, missing field, bad device."""


class AuthenticationError(TransportError):
    """A frame's HMAC tag is missing or wrong (``--key-file``): the peer does not hold the key,
    or the link was tampered with."""


class FolderInUseError(TransportError):
    """Another receiver holds the output folder's lock; give each receiver its own folder."""
