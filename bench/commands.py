"""``python -m bench bench`` and ``python -m bench report``.

Only argparse here: the handlers import the runner and the report when called, so
``compressor --help`` and the device commands start without numpy-heavy or plotting
imports, and never with TensorFlow.
"""

from __future__ import annotations

import shlex
from pathlib import Path


class UsageError(ValueError):
    """A malformed option value; printed as one line by ``python -m bench``."""


#: What exit status 1 means for these commands.
BENCH_ERROR = "a bad bundle, image file, result file or option value: one line on stderr says what"


def add_commands(sub) -> None:
    """Add the bench, report and ladder subparsers to ``sub``."""
    from compressor.commands.help import HelpFormatter, epilog

    b = sub.add_parser(
        "bench",
        help="measure latency, size, memory and reconstruction error on this machine -> one JSON result",
        description="Measure this machine with whatever runtimes are installed (docs/bench.md).",
        epilog=epilog(
            "python -m bench bench --bundle out/bundle -o results/this-machine.json --quick",
            "python -m bench bench --bundle ~/bundle --images ~/test_images.npy -o pi.json --device 'Raspberry Pi 5'",
            "python -m bench bench -o results/keras.json --with-keras out/run --runtimes litert --threads 1",
            error=BENCH_ERROR,
        ),
        formatter_class=HelpFormatter,
    )
    b.add_argument("--bundle", default="out/bundle", help="full model bundle (default: %(default)s)")
    b.add_argument("-o", "--out", required=True, help="result file to write, e.g. results/pi5.json")
    b.add_argument(
        "--images",
        help="test images (.npy/.npz, folder, image files); default: test_images.npy beside the bundle",
    )
    b.add_argument("--device", help="name of this machine in the report (default: Pi model or host name)")
    b.add_argument("--quick", action="store_true", help="fewer repetitions and 100 images for classical codecs")
    b.add_argument("--num-runs", type=int, help="minimum timed runs per row")
    b.add_argument("--min-secs", type=float, help="minimum seconds of timed runs per row")
    b.add_argument("--warmup-runs", type=int, help="minimum warm-up runs per row")
    b.add_argument("--runtimes", default="litert,tflite,onnx", help="runtimes to try (default: %(default)s)")
    b.add_argument("--components", default="encoder,decoder,codec", help="parts to time (default: %(default)s)")
    b.add_argument("--precisions", default="fp32,int8", help="model files to time (default: %(default)s)")
    b.add_argument("--batches", help="batch sizes, e.g. 1,64 (default: 1 and the bundle's largest fixed batch)")
    b.add_argument("--threads", help="thread counts, e.g. 1,4 or 1,all (default: 1,all)")
    b.add_argument(
        "--providers",
        default="CUDAExecutionProvider,TensorrtExecutionProvider",
        help="onnxruntime execution providers to try besides the CPU; missing ones are recorded as "
        "'not available' ('' for none; default: %(default)s)",
    )
    b.add_argument("--with-keras", metavar="RUN", help="also time the Keras model of training run RUN (TensorFlow)")
    b.add_argument("--no-classical", action="store_true", help="skip the classical codecs")
    b.set_defaults(handler=_bench)

    r = sub.add_parser(
        "report",
        help="merge bench results of several machines into report.md and report.html",
        description="Merge result files (one per machine) into one report with tables and plots.",
        epilog=epilog(
            "python -m bench report results/*.json -o report/",
            "python -m bench report pi.json out/results/this-machine.json -o report/",
            error=BENCH_ERROR + " (or matplotlib missing)",
        ),
        formatter_class=HelpFormatter,
    )
    r.add_argument("results", nargs="+", help="result files from 'python -m bench bench'")
    r.add_argument("-o", "--out", default="report", help="report folder (created; default: %(default)s)")
    r.add_argument(
        "--rd",
        metavar="FILE",
        help="add the rate-distortion section of every mode, from 'python -m bench rd --json FILE'",
    )
    r.set_defaults(handler=_report)

    rd = sub.add_parser(
        "rd",
        help="rate-distortion of every mode against PNG/WebP/JPEG/JPEG XL/AVIF sweeps -> figures + ratio tables",
        description="Every mode of ours against the classical codecs' sweeps, one figure per model kind "
        "(bench/rd_sweeps.py); writes rd.md, rd-*.png and the JSON data.",
        epilog=epilog(
            "python -m bench rd --binary out/bundle out/test_images.npy -o out/report",
            "python -m bench rd --grayscale out/bundle-gray out/test_images_gray.npy --classical-images 50",
            error=BENCH_ERROR,
        ),
        formatter_class=HelpFormatter,
    )
    rd.add_argument("--binary", nargs=2, metavar=("BUNDLE", "IMAGES"), help="a binarized model's bundle and images")
    rd.add_argument(
        "--grayscale", nargs=2, metavar=("BUNDLE", "IMAGES"), help="a grayscale model's bundle and uint8 images"
    )
    rd.add_argument(
        "--no-natural",
        dest="natural",
        action="store_false",
        help="skip the grayscale model on 28x28 crops of a natural photo (matplotlib's grace_hopper.jpg; "
        "default: measured)",
    )
    rd.add_argument(
        "--classical-images",
        type=int,
        default=200,
        help="images per set for the classical codecs (AVIF takes ~20 ms each; default: %(default)s)",
    )
    rd.add_argument("-o", "--out", default="report", help="folder for rd.md and rd-*.png (default: %(default)s)")
    rd.add_argument("--json", help="where to write the measurements (default: OUT/rd.json)")
    rd.set_defaults(handler=_rd)

    ladder = sub.add_parser(
        "ladder",
        help="compare bundles of several model widths: bytes, distortion, decoder µs, MACs -> Pareto table + plot",
        description="The model ladder (bench/ladder.py): bundles from 'python -m export train --width W'.",
        epilog=epilog(
            "python -m bench ladder out/bundle out/bundle-w0.5 --images out/test_images.npy -o out/report",
            error=BENCH_ERROR,
        ),
        formatter_class=HelpFormatter,
    )
    ladder.add_argument("bundles", nargs="+", help="full bundles, e.g. out/bundle out/bundle-w0.5")
    ladder.add_argument("--images", required=True, help="test images (.npy/.npz, folder or files)")
    ladder.add_argument("-o", "--out", default="report", help="folder for ladder.md/json/png (default: %(default)s)")
    ladder.add_argument("--rounds", type=int, default=100, help="timing rounds per file (default: %(default)s)")
    ladder.set_defaults(handler=_ladder)


def _list(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def _ints(text: str | None, what: str, all_cores: int | None = None) -> tuple[int, ...] | None:
    if not text:
        return None
    out = []
    for item in _list(text):
        if item == "all" and all_cores is not None:
            out.append(all_cores)
            continue
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--{what} takes positive integers separated by commas, got {item!r}") from None
        if value < 1:
            raise UsageError(f"--{what} takes positive integers, got {value}")
        out.append(value)
    return tuple(sorted(set(out)))


def _choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = _list(text)
    bad = [i for i in items if i not in allowed]
    if bad or not items:
        raise UsageError(f"--{what} takes some of {', '.join(allowed)}, got {text!r}")
    return items


def _bench(args) -> int:
    from dataclasses import replace

    from bench import environment, runner
    from bench.latency import COMPONENTS, PRECISIONS, PROFILES
    from compressor.io.files import read_images
    from compressor.runtime import sessions as runtimes

    bundle = Path(args.bundle)
    images_path = Path(args.images) if args.images else bundle.parent / "test_images.npy"
    if not images_path.exists():
        raise FileNotFoundError(
            f"test images not found: {images_path}; pass --images (a .npy of uint8 (N, H, W), e.g. "
            "out/test_images.npy from 'python -m export demo')"
        )
    images, _ = read_images([images_path])
    profile = PROFILES["quick" if args.quick else "full"]
    overrides = {"num_runs": args.num_runs, "min_secs": args.min_secs, "warmup_runs": args.warmup_runs}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        profile = replace(profile, name="custom", **overrides)
    result = runner.run(
        bundle,
        images,
        device_name=args.device,
        profile=profile,
        runtime_names=_choices(args.runtimes, runtimes.RUNTIMES, "runtimes"),
        components=_choices(args.components, COMPONENTS, "components"),
        precisions=_choices(args.precisions, PRECISIONS, "precisions"),
        batches=_ints(args.batches, "batches"),
        threads=_ints(args.threads, "threads", environment.usable_cores()),
        providers=_list(args.providers),
        keras_run=args.with_keras,
        with_classical=not args.no_classical,
        images_source=str(images_path),
        command=_command_line(args),
    )
    out = runner.write(result, args.out)
    errors = [r for r in result["latency"] if r["status"] == "error"]
    print(f"wrote {out} ({len(result['latency'])} latency rows)")
    return 1 if errors else 0


def _command_line(args) -> str:
    """The command as it would be typed, rebuilt from the parsed options (recorded in the result)."""
    words = ["python", "-m", "bench", "bench", "--bundle", args.bundle, "-o", args.out]
    for name in ("images", "device", "num_runs", "min_secs", "warmup_runs", "batches", "threads", "with_keras"):
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    for name, default in (
        ("runtimes", "litert,tflite,onnx"),
        ("components", "encoder,decoder,codec"),
        ("precisions", "fp32,int8"),
        ("providers", "CUDAExecutionProvider,TensorrtExecutionProvider"),
    ):
        if getattr(args, name) != default:
            words += [f"--{name}", getattr(args, name)]
    words += ["--quick"] if args.quick else []
    words += ["--no-classical"] if args.no_classical else []
    return shlex.join(words)


def _report(args) -> int:
    from bench.report import write_report

    sections = []
    if args.rd:
        from bench import rd_document, rd_sweeps

        curves = rd_sweeps.load(args.rd)
        sections.append(lambda out: rd_document.blocks(curves, out))
    out = write_report(args.results, args.out, sections=sections)
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return 0


def _rd(args) -> int:
    from bench import rd_sweeps

    if not args.binary and not args.grayscale:
        raise UsageError("rd needs --binary BUNDLE IMAGES and/or --grayscale BUNDLE IMAGES")
    if args.classical_images < 1:
        raise UsageError(f"--classical-images takes a positive integer, got {args.classical_images}")
    words = ["python", "-m", "bench", "rd"]
    for name in ("binary", "grayscale"):
        words += [f"--{name}", *getattr(args, name)] if getattr(args, name) else []
    words += [] if args.natural else ["--no-natural"]
    words += ["--classical-images", str(args.classical_images), "-o", args.out]
    words += ["--json", args.json] if args.json else []
    args.command_line = shlex.join(words)
    return rd_sweeps.run(args)


def _ladder(args) -> int:
    from bench import ladder

    return ladder.run(args)
