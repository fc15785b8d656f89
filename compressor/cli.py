"""The ``compressor`` command.

Subcommands that need TensorFlow (train, export, demo) import it inside their handler, so
``compressor encode/decode/info`` start fast on a device that has only numpy and a runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compressor.errors import CompressorError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (CompressorError, FileNotFoundError, ValueError) as e:
        print(f"compressor {args.command}: error: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compressor", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train the CVAE and write a run directory (needs the [train] extra)")
    t.add_argument("-o", "--out", default="runs/default", help="run directory (default: %(default)s)")
    _train_options(t)
    t.set_defaults(handler=_train)

    e = sub.add_parser("export", help="turn a training run into a validated model bundle (needs the [train] extra)")
    e.add_argument("run", help="training run directory (from 'compressor train')")
    e.add_argument("-o", "--out", default="bundle", help="bundle directory to write (default: %(default)s)")
    e.set_defaults(handler=_export)

    d = sub.add_parser("demo", help="the main job on the embedded data: train, then show results")
    d.add_argument("-o", "--out", default="out", help="working directory (default: %(default)s)")
    d.add_argument("--retrain", action="store_true", help="train again even if OUT/run is up to date")
    _train_options(d)
    d.set_defaults(handler=_demo)
    return p


def _train_options(p: argparse.ArgumentParser) -> None:
    from compressor import _defaults as D

    p.add_argument("--data", default=D.DATA, help="mnist5k (embedded, default), mnist (needs internet), a folder of images, or .npy/.npz")
    p.add_argument("--grayscale", action="store_true", help="keep grayscale values instead of binarizing at 0.5")
    p.add_argument("--latent-dim", type=int, default=D.LATENT_DIM)
    p.add_argument("--epochs", type=int, default=D.EPOCHS)
    p.add_argument("--batch-size", type=int, default=D.BATCH_SIZE)
    p.add_argument("--learning-rate", type=float, default=D.LEARNING_RATE)
    p.add_argument("--seed", type=int, default=D.SEED)


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
        manifest = export_run(args.run, args.out)
    except ValidationFailedError as e:
        print(f"compressor export: validation failed: {e}", file=sys.stderr)
        return 3
    _print_bundle(manifest, args.out)
    return 0


def _print_bundle(manifest: dict, out) -> None:
    print(f"bundle {out}: model id {manifest['model_id']}, exported and validated in {manifest['export_seconds']:.1f} s")


def _demo(args) -> int:
    import dataclasses

    from export.train import train

    out = Path(args.out)
    run = out / "run"
    config = _train_config(args)
    if not args.retrain and _run_matches(run, dataclasses.asdict(config)):
        print(f"[1/2] training: {run} is up to date with these settings (use --retrain to train again)")
        metrics = json.loads((run / "metrics.json").read_text())
    else:
        print(f"[1/2] training the CVAE on {config.data} -> {run}")
        metrics = train(config, run)
    _print_training(metrics, run)

    from export.pipeline import export_run

    bundle = out / "bundle"
    print(f"[2/2] exporting {run} -> {bundle} (TFLite and ONNX, float32 and int8, validated)")
    manifest = export_run(run, bundle, log=lambda msg: None)
    print((bundle / "validation.md").read_text(), end="")
    _print_bundle(manifest, bundle)
    return 0


def _run_matches(run: Path, config: dict) -> bool:
    try:
        saved = json.loads((run / "config.json").read_text())
        json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return all(saved.get(k) == v for k, v in config.items()) and (run / "decoder.weights.h5").exists()


def _print_training(metrics: dict, run) -> None:
    print(
        f"test ELBO {metrics['test_elbo']:.2f} nats (reconstruction {metrics['test_recon_nats']:.2f}, "
        f"KL {metrics['test_kl_nats']:.2f}) at epoch {metrics['best_epoch']}; "
        f"training took {metrics['wall_seconds']:.1f} s"
    )
    print(f"run directory: {run}  (reconstructions.png, samples.png, metrics.json)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
