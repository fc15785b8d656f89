"""Options that several device commands share, so each flag has one spelling, default and help."""

from __future__ import annotations

import argparse

from compressor import limits
from compressor.codec import MODES
from compressor.runtime.sessions import RUNTIMES


def device_options(p: argparse.ArgumentParser, role: str) -> None:
    """--bundle, --runtime, --precision, --threads."""
    p.add_argument("--bundle", default="out/bundle", help=f"bundle or its {role}/ part (default: %(default)s)")
    p.add_argument(
        "--runtime",
        default="auto",
        choices=("auto",) + RUNTIMES,
        help="inference runtime; auto tries " + ", then ".join(RUNTIMES) + " (default: %(default)s)",
    )
    p.add_argument(
        "--precision", default="int8", choices=("int8", "fp32"), help="model files to run (default: %(default)s)"
    )
    p.add_argument("--threads", type=thread_count, default=1, help="runtime threads (default: %(default)s)")


def rate_options(p: argparse.ArgumentParser) -> None:
    """--step | --quality | --target-bytes, and --mode/--lossless."""
    rate = p.add_mutually_exclusive_group()
    rate.add_argument(
        "--step", type=float, help="quantization step Δ, one of the bundle's steps (default: the bundle's)"
    )
    rate.add_argument("--quality", type=int, help="1..16, higher keeps more detail")
    rate.add_argument(
        "--target-bytes",
        type=float,
        help="budget per image: the finest step whose code is at most this many bytes per image "
        "(a stream: its whole size ÷ images; messages: each message)",
    )
    p.add_argument("--mode", choices=MODES, default="entropy", help="how the latent is coded (default: %(default)s)")
    p.add_argument("--lossless", action="store_const", const="lossless", dest="mode", help="same as --mode lossless")


def input_limit_options(p: argparse.ArgumentParser) -> None:
    """Budgets for reading input image files (compressor.limits)."""
    max_images_option(p, "input images")
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=limits.MAX_IMAGE_PIXELS,
        help="refuse an image file declaring more pixels, before decoding it (default: %(default)s)",
    )
    max_input_bytes_option(p, "input file")


def read_input_images(args: argparse.Namespace):
    """``(images, names)`` from ``args.images`` under the budgets :func:`input_limit_options` added."""
    from compressor.io.files import read_images

    return read_images(
        args.images, max_images=args.max_images, max_pixels=args.max_pixels, max_bytes=args.max_input_bytes
    )


def max_images_option(p: argparse.ArgumentParser, what: str, default: int = limits.MAX_IMAGES) -> None:
    p.add_argument(
        "--max-images", type=positive_int, default=default, help=f"refuse more {what} (default: %(default)s)"
    )


def max_input_bytes_option(p: argparse.ArgumentParser, what: str, default: int = limits.MAX_INPUT_BYTES) -> None:
    p.add_argument(
        "--max-input-bytes",
        type=positive_int,
        default=default,
        help=f"refuse a larger {what} (default: %(default)s)",
    )


def _whole_number(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "a positive whole number")


def thread_count(text: str) -> int:
    """--threads: 1..limits.MAX_THREADS, refused as usage before a runtime or a job starts."""
    value = positive_int(text)
    if value > limits.MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {limits.MAX_THREADS} threads, got {value}")
    return value


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "a whole number >= 0")


def seconds(text: str) -> float:
    """A duration: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number of seconds > 0, got 0")
    return value
