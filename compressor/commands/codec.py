"""``compressor encode``, ``decode`` and ``info``: files <-> streams on one device."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from compressor import limits
from compressor import names as name_rules
from compressor.commands.help import HelpFormatter, epilog
from compressor.commands.options import (
    device_options,
    input_limit_options,
    max_images_option,
    max_input_bytes_option,
    rate_options,
    read_input_images,
)
from compressor.errors import CodeError, InvalidNameError, OutputError

#: Images decoded and written per batch: decode's memory does not grow with the stream.
DECODE_BATCH = 256
#: Pixels decoded per batch at most (large model images get smaller batches).
DECODE_BATCH_PIXELS = 1 << 22


def add_commands(sub) -> None:
    c = sub.add_parser(
        "encode",
        help="images (PNG/JPEG/... files, folders, .npy/.npz) -> one stream of latent codes",
        description="Compress images into one stream file (docs/format.md).",
        epilog=epilog(
            "compressor encode digits.npy -o codes.lzc --bundle out/bundle --joint",
            "compressor encode captures/ -o codes.lzc --bundle out/bundle --quality 12",
            "compressor encode digits.npy -o exact.lzc --bundle out/bundle --lossless",
        ),
        formatter_class=HelpFormatter,
    )
    c.add_argument("images", nargs="+", help="image files, folders of images, or .npy/.npz arrays")
    c.add_argument("-o", "--out", required=True, help="stream file to write (atomically)")
    device_options(c, "encoder")
    rate_options(c)
    residual = c.add_mutually_exclusive_group()
    residual.add_argument(
        "--max-error",
        type=int,
        help="residual codes: every pixel within this many grey levels (grayscale models; 0 = lossless, "
        "also for binary models)",
    )
    residual.add_argument(
        "--target-psnr", type=float, help="grayscale models: per image, the largest bound meeting this PSNR (dB)"
    )
    residual.add_argument(
        "--band", type=int, help="binary models: code only pixels the decoder is unsure of, 0..127 (127 = lossless)"
    )
    residual.add_argument(
        "--target-error",
        type=float,
        help="binary models: per image, the shortest code with at most this fraction of wrong pixels (e.g. 0.01); "
        "with --mean-error, each image's cap",
    )
    c.add_argument(
        "--mean-error",
        type=float,
        help="binary models: the shortest codes with at most this fraction of all the batch's pixels wrong "
        "(the images share it; e.g. 0.01)",
    )
    c.add_argument(
        "--joint", action="store_true", help="one code for the whole batch: ~1.3 B/image smaller, no random access"
    )
    c.add_argument(
        "--no-names",
        action="store_true",
        help="store no file names (the decoder numbers the images); arrays never carry names",
    )
    input_limit_options(c)
    c.set_defaults(handler=_encode)

    x = sub.add_parser(
        "decode",
        help="a stream of latent codes -> PNG files",
        description="Decode a stream into one PNG per image. Every byte is checked, and every output name, "
        "before the first file is written; existing files are kept unless --overwrite.",
        epilog=epilog(
            "compressor decode codes.lzc -o decoded/ --bundle out/bundle",
            "compressor decode codes.lzc -o decoded/ --bundle out/bundle/decoder --runtime onnx --overwrite",
        ),
        formatter_class=HelpFormatter,
    )
    x.add_argument("codes", help="stream file from 'compressor encode'")
    x.add_argument("-o", "--out", required=True, help="folder for the PNG files (created if missing)")
    device_options(x, "decoder")
    x.add_argument(
        "--probabilities", action="store_true", help="write grey-level probabilities instead of 0/255 pixels"
    )
    x.add_argument("--overwrite", action="store_true", help="replace existing files of the same names")
    max_images_option(x, "images in the stream", limits.MAX_DECODE_IMAGES)
    max_input_bytes_option(x, "stream file", limits.MAX_STREAM_BYTES)
    x.set_defaults(handler=_decode)

    i = sub.add_parser(
        "info",
        help="describe a stream: model id, mode, step, count, bytes per image",
        description="Print a stream's header as JSON, without decoding images.",
        epilog=epilog("compressor info codes.lzc", "compressor info codes.lzc --bundle out/bundle"),
        formatter_class=HelpFormatter,
    )
    i.add_argument("codes", help="stream file")
    i.add_argument("--bundle", help="bundle (or a part of it) to check the model id and show the step size")
    max_images_option(i, "images in the stream")
    max_input_bytes_option(i, "stream file", limits.MAX_STREAM_BYTES)
    i.set_defaults(handler=_info)


def _encode(args) -> int:
    from compressor.codec import Encoder
    from compressor.io.atomic import atomic_write_bytes

    images, names = read_input_images(args)
    if args.no_names:
        names = None
    if Path(args.out).is_dir():
        raise OutputError(f"-o {args.out} is a folder; name the stream file to write")
    enc = Encoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    data = enc.compress_stream(
        images,
        step=args.step,
        quality=args.quality,
        target_bytes=args.target_bytes,
        mode=args.mode,
        names=names,
        joint=args.joint,
        max_error=args.max_error,
        target_psnr=args.target_psnr,
        band=args.band,
        target_error=args.target_error,
        mean_error=args.mean_error,
        max_images=args.max_images,
    )
    atomic_write_bytes(args.out, data)
    n = len(images)
    payload = data.payload_bytes  # compress_stream knows its sizes: no second parse of the output
    print(
        f"{n} images -> {args.out}: {len(data)} bytes, {len(data) / n:.2f} B/image "
        f"(payload {payload / n:.2f} B/image; {'names stored' if names else 'no names'}) with {enc.runtime}"
    )
    return 0


def _decode(args) -> int:
    from compressor.codec import Decoder
    from compressor.io.arrays import as_uint8_image, to_uint8
    from compressor.io.atomic import staged_files
    from compressor.io.files import encode_png, read_bytes_limited

    data = read_bytes_limited(args.codes, max_bytes=args.max_input_bytes, what="stream file")
    dec = Decoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    decoded = dec.read(data, max_images=args.max_images)  # every byte is checked before anything is written
    names = list(decoded.names) if decoded.names else name_rules.numbered(Path(args.codes).stem, len(decoded))
    unique = name_rules.unique_names(names)  # a stream may hold names that are one file here
    renamed = sum(a != b for a, b in zip(names, unique))
    for name in unique:  # after numbering: a name made longer must still be a file name
        try:
            name_rules.encode(name)
        except InvalidNameError as e:
            raise CodeError(f"{e} (stored in {args.codes}); nothing was written") from None
    names = unique
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; name a folder with -o")
    targets = [out / f"{name}{name_rules.OUTPUT_SUFFIX}" for name in names]
    if not args.overwrite:
        existing = [t for t in targets if os.path.lexists(t)]  # a dangling link too: os.link fails on it
        if existing:
            raise InvalidNameError(
                f"{len(existing)} output files exist already (first: {existing[0]}); nothing was written. "
                "Pass --overwrite to replace them, or choose another -o folder"
            )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    h, w = dec.part.image_shape
    size = max(1, min(DECODE_BATCH, DECODE_BATCH_PIXELS // (h * w)))
    try:
        # Lossless and residual pixels are verified as they are decoded, batch by batch: the
        # PNGs wait in temporary files, and appear only once the last image has passed.
        with staged_files(out, overwrite=args.overwrite) as add:
            for start in range(0, len(decoded), size):
                try:
                    images = dec.images(decoded[start : start + size], binarize=not args.probabilities)
                except CodeError as e:
                    raise type(e)(_in_the_stream(e, start, names) + "; nothing was written") from e
                if images.dtype != "uint8":
                    images = to_uint8(images)
                for target, img in zip(targets[start : start + size], images):
                    add(target.name, encode_png(as_uint8_image(img)))
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty
        raise
    print(f"{len(decoded)} images -> {out}/ with {dec.runtime}")
    if renamed:
        print(f"{renamed} names repeat another as a file name (case or Unicode composition): numbered -1, -2, ...")
    return 0


def _in_the_stream(err: CodeError, start: int, names: list[str]) -> str:
    """The message of ``err`` about image ``err.image`` of a batch from image ``start``, naming
    the image's place in the whole stream and its name instead."""
    if err.image is None or start + err.image >= len(names):
        return str(err)
    i = start + err.image
    return f"image {i} ({names[i]}): {err.reason}"


def _info(args) -> int:
    from compressor import wire
    from compressor.io.files import read_bytes_limited

    data = read_bytes_limited(args.codes, max_bytes=args.max_input_bytes, what="stream file")
    stream = wire.unpack_stream(data, max_images=args.max_images)
    n = stream.count
    info = {
        "model_id": stream.model_id.hex(),
        "mode": stream.mode,
        "step_index": stream.step_index,
        "count": n,
        "joint": stream.joint_count is not None,
        "bytes": len(data),
        "bytes_per_image": round(len(data) / n, 3) if n else None,
        "payload_bytes_per_image": round(sum(map(len, stream.payloads)) / n, 3) if n else None,
        "names": stream.names is not None,
    }
    if stream.mode == "residual" and not args.bundle:
        # Binary codes of layout 2 have no parameter byte: only the bundle says how to read one.
        info["residual"] = "kind and error bound (or band) are shown with --bundle"
    if args.bundle:
        from compressor.bundle import load_any_part
        from compressor.codec import Coding
        from compressor.errors import ModelMismatchError

        part = load_any_part(args.bundle)
        coding = Coding(part)
        if coding.model_id != stream.model_id:
            raise ModelMismatchError(
                f"the stream is for model {stream.model_id.hex()}, the bundle is model {part.model_id}"
            )
        if stream.step_index >= len(coding.steps):
            raise CodeError(f"step index {stream.step_index} does not exist in this bundle: damaged data")
        info["step"] = coding.steps[stream.step_index]
        if stream.mode == "residual":
            from compressor.residual_codec import describe, describe_layout2

            if coding.binary_context2 is not None:
                info |= describe_layout2(coding, stream.payloads, stream.step_index)
            else:
                info |= describe(stream.payloads)
    print(json.dumps(info, indent=2))
    return 0
