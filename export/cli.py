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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ chatter hides our output
    parser = _parser()
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

    try:
        return int(args.handler(args) or 0)
    except (CompressorError, DatasetError, OSError) as e:
        print(f"python -m export {args.command}: error: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog="python -m export",
        description=__doc__.splitlines()[0],
        epilog="examples:\n  python -m export demo\n  python -m export train -o runs/mine --grayscale\n"
        "  python -m export export runs/mine -o bundle",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser("train", help="train the CVAE and write a run directory", formatter_class=fmt)
    t.add_argument("-o", "--out", default="runs/default", help="run directory")
    _train_options(t)
    t.set_defaults(handler=_train)

    e = sub.add_parser("export", help="turn a training run into a validated model bundle", formatter_class=fmt)
    e.add_argument("run", help="training run directory (from 'python -m export train')")
    e.add_argument("-o", "--out", default="bundle", help="bundle directory to write")
    _graph_option(e)
    e.set_defaults(handler=_export)

    d = sub.add_parser(
        "demo", help="the main job on the embedded data: train, export, compress, decode, bench", formatter_class=fmt
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
    _train_options(d)
    _graph_option(d)
    d.set_defaults(handler=_demo)
    return p


def _graph_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--decoder-graph",
        choices=D.DECODER_GRAPH_OPTIONS,
        default=D.DECODER_GRAPH,
        help="decoder graph to ship: fixed = LiteRT conv_phases and ONNX conv_d2s (reproducible); one graph for "
        "both runtimes; or auto = the fastest int8 file on this machine (two exports may differ in model id)",
    )


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default=D.DATA,
        help="mnist5k (embedded, default), mnist (needs internet), a folder of images, or .npy/.npz",
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

    code = _bench_step(out, bundle, originals, run)
    if code or not args.ladder:
        return code
    return _ladder_step(out, config, bundle, originals, args.decoder_graph)


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


def _bench_step(out: Path, bundle: Path, images: Path, run: Path) -> int:
    """The main job's last step: a quick benchmark of this machine, then the report.

    The bench runs as ``python -m bench`` in a process that cannot import TensorFlow (only its
    Keras-baseline children may), as it would on a device; export does not import bench.
    """
    from export import isolation

    result = out / "results" / "this-machine.json"
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
    report = isolation.run_module("bench", "report", str(result), "-o", str(out / "report"))
    if report.returncode != 0:
        print(report.stdout[-4000:] + report.stderr[-4000:], file=sys.stderr)
        return 1
    print(f"  report: {out / 'report' / 'report.md'} and {out / 'report' / 'report.html'}")
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
