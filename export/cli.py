"""Train the CVAE, export a validated bundle, or run the main job (demo) -- python -m export.

These commands need TensorFlow (the ``[train]`` extra) and run from a checkout: ``export`` is
not installed into site-packages, devices never see it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from export import config as D

#: Images per set for the classical codecs in the demo's rate–distortion step (AVIF ~20 ms each).
RD_CLASSICAL_IMAGES = 200


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ chatter hides our output
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from compressor.runtime.quiet import quiet

    try:
        with quiet():  # TensorFlow's import prints absl/oneDNN notices that TF_CPP_MIN_LOG_LEVEL misses
            import keras  # noqa: F401
    except ImportError:
        print(
            f"python -m export {args.command}: error: TensorFlow/Keras are not installed; "
            "install the training extra from the checkout: pip install -e '.[train]'",
            file=sys.stderr,
        )
        return 1
    from compressor.errors import CompressorError
    from export.datasets import DatasetError
    from export.validate import ValidationFailedError

    try:
        return int(args.handler(args) or 0)
    except (CompressorError, DatasetError, OSError) as e:
        print(f"python -m export {args.command}: error: {e}", file=sys.stderr)
        return 1
    except ValidationFailedError as e:  # an under-trained model (the demo's ladder or grayscale export)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(
            f"python -m export {args.command}: validation failed: {first} "
            "(train longer with --epochs, or skip the step: --no-ladder / --no-gray-model)",
            file=sys.stderr,
        )
        return 3


#: What exit status 1 means for these commands.
EXPORT_ERROR = (
    "TensorFlow missing, unreadable data, a bundle or file error, or a failed demo step:\n"
    "       one line on stderr says what"
)


def build_parser() -> argparse.ArgumentParser:
    from compressor.commands.help import HelpFormatter, epilog

    fmt = HelpFormatter
    p = argparse.ArgumentParser(
        prog="python -m export",
        description=__doc__.splitlines()[0],
        epilog=epilog(
            "python -m export demo",
            "python -m export train -o runs/mine --grayscale",
            "python -m export export runs/mine -o bundle",
            error=EXPORT_ERROR,
            incomplete="export: validation failed (the files are kept as BUNDLE.rejected)",
        )
        + "\n\nRun 'python -m export COMMAND --help' for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser(
        "train",
        help="train the CVAE and write a run directory",
        description="Train the CVAE; the epoch is chosen on a validation split of the training data and the "
        "test split is measured once. Writes weights, config.json, metrics.json and PNG previews.",
        epilog=epilog(
            "python -m export train -o runs/mine",
            "python -m export train -o runs/gray --grayscale --epochs 50",
            "python -m export train -o runs/small --width 0.5 --data digits.npz",
            error=EXPORT_ERROR,
        ),
        formatter_class=fmt,
    )
    t.add_argument("-o", "--out", default="runs/default", help="run directory")
    _train_options(t)
    t.set_defaults(handler=_train)

    e = sub.add_parser(
        "export",
        help="turn a training run into a validated model bundle",
        description="Export a training run to TFLite and ONNX (float32 and int8), run every file in its runtime "
        "against Keras, and write the bundle (docs/bundle.md) only if every check passes.",
        epilog=epilog(
            "python -m export export runs/mine -o bundle",
            error=EXPORT_ERROR,
            incomplete="validation failed: the files are kept beside the bundle as BUNDLE.rejected",
        ),
        formatter_class=fmt,
    )
    e.add_argument("run", help="training run directory (from 'python -m export train')")
    e.add_argument("-o", "--out", default="bundle", help="bundle directory to write")
    _graph_option(e)
    e.set_defaults(handler=_export)

    d = sub.add_parser(
        "demo",
        help="the main job on the embedded data: train, export, compress, decode, bench",
        description="The main job (README): train, export and validate, compress the test split, decode it where "
        "TensorFlow cannot be imported, benchmark this machine, and compare model widths.",
        epilog=epilog(
            "python -m export demo",
            "python -m export demo -o out --no-ladder",
            "python -m export demo --retrain --epochs 50",
            error=EXPORT_ERROR,
            incomplete="a model failed its export validation (train longer, or --no-ladder / --no-gray-model)",
        ),
        formatter_class=fmt,
    )
    d.add_argument("-o", "--out", default="out", help="working directory")
    d.add_argument("--retrain", action="store_true", help="train again even if OUT/run is up to date")
    d.add_argument(
        "--no-ladder",
        dest="ladder",
        action="store_false",
        help="skip the model ladder: training and exporting a width-0.5 model for the Pareto table and plot "
        "in OUT/report/ladder.md (about 2-3 minutes on 2 cores)",
    )
    d.add_argument(
        "--no-gray-model",
        dest="gray_model",
        action="store_false",
        help="skip the grayscale model (OUT/run-gray, OUT/bundle-gray, about 2-3 minutes on 2 cores); the "
        "rate-distortion figures in OUT/report/rd.md then cover the binary model alone",
    )
    _train_options(d)
    _graph_option(d)
    d.set_defaults(handler=_demo)
    return p


def _graph_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--decoder-graph",
        choices=D.DECODER_GRAPH_OPTIONS,
        default=D.DECODER_GRAPH,
        help="decoder graph to ship: fixed = LiteRT conv_phases_dw and ONNX conv_d2s (reproducible); one graph for "
        "both runtimes; or auto = the fastest int8 file on this machine (two exports may differ in model id)",
    )


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default=D.DATA,
        help="mnist5k (embedded), mnist (needs internet), a folder of images, or .npy/.npz",
    )
    p.add_argument("--grayscale", action="store_true", help="keep grayscale values instead of binarizing at 0.5")
    p.add_argument("--latent-dim", type=int, default=D.LATENT_DIM, help="latent dimensions D")
    p.add_argument("--epochs", type=int, default=D.EPOCHS, help="training epochs")
    p.add_argument("--batch-size", type=int, default=D.BATCH_SIZE, help="training batch size")
    p.add_argument("--learning-rate", type=float, default=D.LEARNING_RATE, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=D.SEED, help="seed for the data shuffle and the weights")
    p.add_argument(
        "--width",
        type=float,
        choices=D.WIDTHS,
        default=D.WIDTH,
        help="model ladder: every layer's channels times this (1 = the tutorial's 32/64 channels)",
    )


def _train_config(args):
    from export.train import TrainConfig

    return TrainConfig(
        data=args.data,
        binarize=not args.grayscale,
        latent_dim=args.latent_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        width=args.width,
    )


def _train(args) -> int:
    from export.train import train

    metrics = train(_train_config(args), args.out)
    _print_training(metrics, args.out)
    return 0


def _export(args) -> int:
    from export.pipeline import export_run
    from export.validate import ValidationFailedError

    try:
        manifest = export_run(args.run, args.out, decoder_graph_option=args.decoder_graph)
    except ValidationFailedError as e:
        print(f"python -m export export: validation failed: {e}", file=sys.stderr)
        return 3
    _print_bundle(manifest, args.out)
    return 0


def _print_bundle(manifest: dict, out) -> None:
    print(
        f"bundle {out}: model id {manifest['model_id']}, exported and validated in {manifest['export_seconds']:.1f} s"
    )


def _demo(args) -> int:
    import dataclasses

    from export.train import train

    out = Path(args.out)
    run = out / "run"
    config = _train_config(args)
    if not args.retrain and _run_matches(run, dataclasses.asdict(config)):
        print(f"[1/5] training: {run} is up to date with these settings (use --retrain to train again)")
        metrics = json.loads((run / "metrics.json").read_text())
    else:
        print(f"[1/5] training the CVAE on {config.data} -> {run}")
        metrics = train(config, run)
    _print_training(metrics, run)

    from export import datasets
    from export.pipeline import export_run

    bundle = out / "bundle"
    print(f"[2/5] exporting {run} -> {bundle} (TFLite and ONNX, float32 and int8, validated)")
    manifest = export_run(run, bundle, decoder_graph_option=args.decoder_graph, log=lambda msg: None)
    print((bundle / "validation.md").read_text(), end="")
    _print_bundle(manifest, bundle)

    from compressor.codec import Encoder
    from compressor.io.atomic import atomic_write_bytes

    test = datasets.load(config.data, binarize=config.binarize).test[..., 0]
    originals = out / "test_images.npy"
    np.save(originals, (test * 255).astype(np.uint8))
    enc = Encoder.load(bundle / "encoder", runtime="litert", precision="int8")
    codes = out / "test_codes.bin"
    atomic_write_bytes(codes, enc.compress_stream(test, joint=True))
    print(
        f"[3/5] compressed {len(test)} test images with the int8 {enc.runtime} encoder -> {codes} "
        f"({codes.stat().st_size} bytes, one joint stream at step {enc.steps[enc.coding.default_index]})"
    )

    from export import isolation

    site = isolation.build_edge_site(out / "edge-site")
    print(f"[4/5] decoding in a separate process whose environment has no TensorFlow installed ({site})")
    for runtime in ("litert", "onnx"):
        proc = isolation.run_in_edge_site(
            site, "bench.decode_check", str(codes), str(bundle / "decoder"), str(originals), "--runtime", runtime
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        print("  " + proc.stdout.strip())

    result = out / "results" / "this-machine.json"
    code = _bench_step(result, bundle, originals, run)
    if not code and args.ladder:
        code = _ladder_step(out, config, bundle, originals, args.decoder_graph)
    rd = out / "results" / "rd.json"
    if not code:
        sets = {"binary": (bundle, originals)} if config.binarize else {"grayscale": (bundle, originals)}
        if args.gray_model and config.binarize:
            sets["grayscale"] = _gray_step(out, config, args.decoder_graph)
        code = _rd_step(out, sets, rd)
    if code:
        return code
    return _report_step(out, result, rd)


def _gray_step(out: Path, config, decoder_graph: str) -> tuple[Path, Path]:
    """The grayscale model beside the binary one: trained and exported with the same settings otherwise."""
    import dataclasses

    from compressor.io.arrays import to_uint8
    from export import datasets
    from export.pipeline import export_run
    from export.train import train

    gray = dataclasses.replace(config, binarize=False)
    run, gray_bundle = out / "run-gray", out / "bundle-gray"
    if _run_matches(run, dataclasses.asdict(gray)):
        print(f"[grayscale] {run} is up to date")
        metrics = json.loads((run / "metrics.json").read_text())
    else:
        print(f"[grayscale] training the CVAE on grayscale {config.data} -> {run}")
        metrics = train(gray, run)
    _print_training(metrics, run)
    print(f"[grayscale] exporting {run} -> {gray_bundle} (with residual tables for E = 0..32)")
    manifest = export_run(run, gray_bundle, decoder_graph_option=decoder_graph, log=lambda msg: None)
    _print_bundle(manifest, gray_bundle)
    images = out / "test_images_gray.npy"
    np.save(images, to_uint8(datasets.load(config.data, binarize=False).test[..., 0]))  # the same split, grey
    return gray_bundle, images


def _rd_step(out: Path, sets: dict, rd: Path) -> int:
    """Rate–distortion of every mode against the classical sweeps: ``python -m bench rd`` (bench/rd_sweeps.py)."""
    from export import isolation

    print(f"[rate-distortion] every mode against PNG/WebP/JPEG/JPEG XL/AVIF ({', '.join(sets)}) -> {rd}")
    words = ["rd", "-o", str(out / "report"), "--json", str(rd), "--classical-images", str(RD_CLASSICAL_IMAGES)]
    for key, (bundle, images) in sets.items():
        words += [f"--{key}", str(bundle), str(images)]
    proc = isolation.run_module("bench", *words, timeout=1800)  # ~1-2 min on an idle 2-core machine
    if proc.returncode != 0:
        print(proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
        return 1
    print("\n".join("  " + line for line in proc.stdout.strip().splitlines()))
    return 0


def _report_step(out: Path, result: Path, rd: Path) -> int:
    """The report of the bench result, with the rate–distortion section when it was measured."""
    from export import isolation

    extra = ["--rd", str(rd)] if rd.exists() else []
    report = isolation.run_module("bench", "report", str(result), "-o", str(out / "report"), *extra)
    if report.returncode != 0:
        print(report.stdout[-4000:] + report.stderr[-4000:], file=sys.stderr)
        return 1
    print(f"  report: {out / 'report' / 'report.md'} and {out / 'report' / 'report.html'}")
    return 0


def _ladder_step(out: Path, config, bundle: Path, images: Path, decoder_graph: str) -> int:
    """The model ladder: a width-0.5 model beside the default one, compared by ``python -m bench ladder``."""
    import dataclasses

    from export import isolation
    from export.pipeline import export_run
    from export.train import train

    small = dataclasses.replace(config, width=0.5)
    run, small_bundle = out / "run-w0.5", out / "bundle-w0.5"
    if _run_matches(run, dataclasses.asdict(small)):
        print(f"[ladder] {run} is up to date")
    else:
        print(f"[ladder] training the width-0.5 CVAE -> {run}")
        train(small, run)
    print(f"[ladder] exporting {run} -> {small_bundle}")
    export_run(run, small_bundle, decoder_graph_option=decoder_graph, log=lambda msg: None)
    proc = isolation.run_module(
        "bench", "ladder", str(bundle), str(small_bundle), "--images", str(images), "-o", str(out / "report")
    )
    if proc.returncode != 0:
        print(proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
        return 1
    print("\n".join("  " + line for line in proc.stdout.strip().splitlines()))
    return 0


def _bench_step(result: Path, bundle: Path, images: Path, run: Path) -> int:
    """The main job's last step: a quick benchmark of this machine (the report comes at the end of the demo).

    The bench runs as ``python -m bench`` in a process that cannot import TensorFlow (only its
    Keras-baseline children may), as it would on a device; export does not import bench.
    """
    from export import isolation

    print(f"[5/5] benchmarking this machine (quick profile, Keras baseline from {run}) -> {result}")
    proc = isolation.run_module(
        "bench",
        *("bench", "--bundle", str(bundle), "--images", str(images), "-o", str(result)),
        *("--quick", "--with-keras", str(run)),
    )
    if proc.returncode != 0:
        print(proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
        return 1
    for line in proc.stdout.splitlines():
        if line.strip() and not line.startswith("  "):  # the summary, not one line per row
            print("  " + line)
    return 0


def _run_matches(run: Path, config: dict) -> bool:
    try:
        saved = {"width": D.WIDTH} | json.loads((run / "config.json").read_text())
        json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return all(saved.get(k) == v for k, v in config.items()) and (run / "decoder.weights.h5").exists()


def _print_training(metrics: dict, run) -> None:
    print(
        f"test ELBO {metrics['test_elbo']:.2f} nats (reconstruction {metrics['test_recon_nats']:.2f}, "
        f"KL {metrics['test_kl_nats']:.2f}) at epoch {metrics['best_epoch']}, chosen by validation ELBO; "
        f"training took {metrics['wall_seconds']:.1f} s"
    )
    print(f"run directory: {run}  (reconstructions.png, samples.png, metrics.json)")
