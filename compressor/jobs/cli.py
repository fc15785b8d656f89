"""``compressor encode-dataset`` and ``compressor decode-dataset``.

Exit status: 0 every input became a row with a code (an image); 3 the output was written but
some rows carry an error instead (the first few are printed, all are in the 'error'
column); 1 nothing was written (bad arguments, bundle, source path, missing extra, or a
check that the rows arrived exactly once failed); 2 usage.
"""

from __future__ import annotations

import sys

from compressor.errors import UsageError

EXIT_ROW_ERRORS = 3


def add_commands(sub) -> None:
    """Add the encode-dataset and decode-dataset subparsers to ``sub``."""
    from compressor.commands.help import HelpFormatter, epilog
    from compressor.commands.options import device_options, rate_options

    rows = "written, but some rows carry an error (the first 20 are printed; all are in the 'error' column)"

    e = sub.add_parser(
        "encode-dataset",
        help="a folder tree / .npy/.npz shards / Parquet of images -> one Parquet file of codes",
        description="Compress a whole dataset, locally or on a Ray cluster, into one Parquet file "
        "(one row per image; layout in docs/format.md).",
        epilog=epilog(
            "compressor encode-dataset archive/ shards/*.npy -o codes.parquet --bundle out/bundle",
            "compressor encode-dataset archive/ -o codes.parquet --bundle out/bundle --engine ray --workers 2",
            "compressor encode-dataset /shared/archive -o /shared/codes.parquet --bundle /shared/bundle "
            "--engine ray --address auto --workers 32",
            incomplete=rows,
        ),
        formatter_class=HelpFormatter,
    )
    e.add_argument("sources", nargs="+", help="folders (searched recursively), .npy/.npz shards, .parquet files")
    e.add_argument("-o", "--out", required=True, help="Parquet file to write (atomically)")
    device_options(e, "encoder")
    rate_options(e)
    e.add_argument("--image-column", default="image", help="image column of Parquet sources (default: %(default)s)")
    e.add_argument("--name-column", default="name", help="name column of Parquet sources, if present")
    _engine_options(e)
    e.set_defaults(handler=_encode_dataset)

    d = sub.add_parser(
        "decode-dataset",
        help="a Parquet file of codes -> a folder of PNGs, or a Parquet file of PNGs (OUT ending in .parquet)",
        description="Decode an encode-dataset file into NAME.png files, or into a Parquet file of PNGs.",
        epilog=epilog(
            "compressor decode-dataset codes.parquet -o decoded/ --bundle out/bundle/decoder",
            "compressor decode-dataset codes.parquet -o images.parquet --bundle out/bundle --engine ray --workers 2",
            incomplete=rows,
        ),
        formatter_class=HelpFormatter,
    )
    d.add_argument("codes", help="Parquet file from encode-dataset")
    d.add_argument("-o", "--out", required=True, help="folder for NAME.png files, or a .parquet file")
    device_options(d, "decoder")
    d.add_argument("--probabilities", action="store_true", help="grey-level probabilities instead of 0/255 pixels")
    _engine_options(d)
    d.set_defaults(handler=_decode_dataset)


def _engine_options(p) -> None:
    from compressor.commands.options import positive_int
    from compressor.jobs.sources import UNIT_IMAGES

    p.add_argument("--engine", choices=("local", "ray"), default="local", help="run in this process, or on Ray Data")
    p.add_argument("--address", help="Ray cluster to join (auto, ray://HOST:10001); default: start a local one")
    p.add_argument("--workers", type=positive_int, default=1, help="Ray actors, each with --threads CPUs")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per runtime call")
    p.add_argument(
        "--unit-images",
        type=positive_int,
        default=UNIT_IMAGES,
        help="images per unit of work and retry",
    )


def _engine_args(args) -> dict:
    if args.address and args.engine != "ray":
        raise UsageError("--address is for --engine ray")
    return {
        "engine": args.engine,
        "address": args.address,
        "workers": args.workers,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "unit_images": args.unit_images,
        "runtime": args.runtime,
        "precision": args.precision,
    }


def _encode_dataset(args) -> int:
    from compressor.jobs.run import encode_dataset

    options = {"mode": args.mode}
    for key in ("step", "quality", "target_bytes"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    summary = encode_dataset(
        args.sources,
        args.out,
        bundle=args.bundle,
        options=options,
        image_column=args.image_column,
        name_column=args.name_column,
        on_progress=_progress(args, "encode-dataset"),
        **_engine_args(args),
    )
    return _report("encode-dataset", summary, codes=True)


def _decode_dataset(args) -> int:
    from compressor.jobs.run import decode_dataset

    summary = decode_dataset(
        args.codes,
        args.out,
        bundle=args.bundle,
        binarize=not args.probabilities,
        on_progress=_progress(args, "decode-dataset"),
        **_engine_args(args),
    )
    return _report("decode-dataset", summary, codes=False)


def _progress(args, label: str):
    """Our progress line for the local engine; Ray Data draws its own bars (rows/s per operator)."""
    if args.engine != "local":
        return None
    from compressor.jobs.local import ProgressLine

    return ProgressLine(label)


def _report(command: str, s, *, codes: bool) -> int:
    for name, error in s.errors:
        print(f"compressor {command}: {name}: {error}", file=sys.stderr)
    if s.failed > len(s.errors):
        print(f"compressor {command}: ... and {s.failed - len(s.errors)} more (column 'error' of the output)")
    size = f", {s.bytes_per_image:.2f} bytes/image" if codes else ""
    workers = f", {s.workers} workers" if s.engine == "ray" else ""
    print(
        f"{s.images} images ({s.failed} errors) -> {s.out}{size}, {s.seconds:.1f} s wall, "
        f"{s.images_per_second:,.0f} images/s (engine {s.engine}{workers})"
    )
    return EXIT_ROW_ERRORS if s.failed else 0
