"""The ``compressor`` command.

Subcommands that need TensorFlow (train, export, demo) import it inside their handler, so
``compressor encode/decode/info`` start fast on a device that has only numpy and a runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from compressor.errors import CompressorError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output
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

    c = sub.add_parser("encode", help="images (PNG/JPEG files, folders, .npy/.npz) -> one stream of latent codes")
    c.add_argument("images", nargs="+", help="image files, folders of images, or .npy/.npz arrays")
    c.add_argument("-o", "--out", required=True, help="stream file to write (atomically)")
    _device_options(c, "encoder")
    rate = c.add_mutually_exclusive_group()
    rate.add_argument("--step", type=float, help="quantization step (one of the bundle's steps)")
    rate.add_argument("--quality", type=int, help="1..16, higher keeps more detail")
    rate.add_argument(
        "--target-bytes", type=float, help="finest step whose stream is at most this many bytes per image"
    )
    c.add_argument("--mode", choices=("entropy", "raw", "lossless"), default="entropy")
    c.add_argument("--lossless", action="store_const", const="lossless", dest="mode", help="same as --mode lossless")
    residual = c.add_mutually_exclusive_group()
    residual.add_argument(
        "--max-error", type=int, help="grayscale models: every pixel within this many grey levels (0 = lossless)"
    )
    residual.add_argument(
        "--target-psnr", type=float, help="grayscale models: per image, the largest bound meeting this PSNR (dB)"
    )
    residual.add_argument(
        "--band", type=int, help="binary models: code only pixels the decoder is unsure of, 0..127 (127 = lossless)"
    )
    c.add_argument(
        "--joint", action="store_true", help="one code for the whole batch: ~1.3 B/image smaller, no random access"
    )
    c.set_defaults(handler=_encode)

    x = sub.add_parser("decode", help="a stream of latent codes -> PNG files")
    x.add_argument("codes", help="stream file from 'compressor encode'")
    x.add_argument("-o", "--out", required=True, help="directory for the PNG files (created if missing)")
    _device_options(x, "decoder")
    x.add_argument(
        "--probabilities", action="store_true", help="write grey-level probabilities instead of 0/255 pixels"
    )
    x.set_defaults(handler=_decode)

    i = sub.add_parser("info", help="describe a stream: model id, mode, step, count, bytes per image")
    i.add_argument("codes", help="stream file")
    i.add_argument("--bundle", help="bundle (or sub-bundle) to check the model id and show the step size")
    i.set_defaults(handler=_info)

    _add_module_commands(sub)

    d = sub.add_parser("demo", help="the main job on the embedded data: train, then show results")
    d.add_argument("-o", "--out", default="out", help="working directory (default: %(default)s)")
    d.add_argument("--retrain", action="store_true", help="train again even if OUT/run is up to date")
    _train_options(d)
    d.set_defaults(handler=_demo)
    return p


def _train_options(p: argparse.ArgumentParser) -> None:
    from compressor import _defaults as D

    p.add_argument(
        "--data",
        default=D.DATA,
        help="mnist5k (embedded, default), mnist (needs internet), a folder of images, or .npy/.npz",
    )
    p.add_argument("--grayscale", action="store_true", help="keep grayscale values instead of binarizing at 0.5")
    p.add_argument("--latent-dim", type=int, default=D.LATENT_DIM)
    p.add_argument("--epochs", type=int, default=D.EPOCHS)
    p.add_argument("--batch-size", type=int, default=D.BATCH_SIZE)
    p.add_argument("--learning-rate", type=float, default=D.LEARNING_RATE)
    p.add_argument("--seed", type=int, default=D.SEED)


def _add_module_commands(sub) -> None:
    """Subcommands defined beside the code they drive (imports stay light: no TensorFlow)."""
    from bench.commands import add_commands as bench_commands
    from compressor.transport import add_commands as transport_commands

    bench_commands(sub)  # bench, report
    transport_commands(sub)  # send, receive


def _device_options(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument("--bundle", default="out/bundle", help=f"bundle or {role} sub-bundle (default: %(default)s)")
    p.add_argument("--runtime", default="auto", choices=("auto", "litert", "tflite", "onnx"))
    p.add_argument("--precision", default="int8", choices=("int8", "fp32"))
    p.add_argument("--threads", type=int, default=1)


def _encode(args) -> int:
    from compressor.atomic import atomic_write_bytes
    from compressor.codec import Encoder
    from compressor.images import read_images

    images, names = read_images(args.images)
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
    )
    atomic_write_bytes(args.out, data)
    print(
        f"{len(images)} images -> {args.out}: {len(data)} bytes "
        f"({len(data) / len(images):.2f} per image, names included) with {enc.runtime}"
    )
    return 0


def _decode(args) -> int:
    from compressor.codec import Decoder
    from compressor.images import to_uint8, write_png

    data = Path(args.codes).read_bytes()
    dec = Decoder.load(args.bundle, runtime=args.runtime, precision=args.precision, threads=args.threads)
    decoded = dec.read(data)  # every byte is checked before anything is written
    if decoded.pending is not None:  # lossless: exact pixels, each image verified
        images = dec.finish_lossless(decoded)
    else:
        images = to_uint8(dec.decode_symbols(decoded.symbols, decoded.steps), binarize=not args.probabilities)
    names = decoded.names or [f"{i:06d}" for i in range(len(images))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, img in zip(names, images):
        write_png(out / f"{name}.png", img)
    print(f"{len(images)} images -> {out}/ with {dec.runtime}")
    return 0


def _info(args) -> int:
    from compressor import wire

    data = Path(args.codes).read_bytes()
    stream = wire.unpack_stream(data)
    info = {
        "model_id": stream.model_id.hex(),
        "mode": stream.mode,
        "step_index": stream.step_index,
        "count": stream.count,
        "joint": stream.joint_count is not None,
        "bytes": len(data),
        "bytes_per_image": round(len(data) / stream.count, 3),
        "payload_bytes_per_image": round(sum(map(len, stream.payloads)) / stream.count, 3),
        "names": stream.names is not None,
    }
    if stream.mode == "residual":
        from compressor.residual_codec import describe

        info |= describe(stream.payloads)
    if args.bundle:
        from compressor.codec import Coding
        from compressor.errors import ModelMismatchError

        part = _any_part(args.bundle)
        coding = Coding(part)
        if coding.model_id != stream.model_id:
            raise ModelMismatchError(f"stream is for model {stream.model_id.hex()}, the bundle is {part.model_id}")
        info["step"] = coding.steps[stream.step_index]
    print(json.dumps(info, indent=2))
    return 0


def _any_part(path):
    from compressor.bundle import load_manifest, load_part

    return load_part(path, "decoder" if "parts" in load_manifest(path) else None)


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
    manifest = export_run(run, bundle, log=lambda msg: None)
    print((bundle / "validation.md").read_text(), end="")
    _print_bundle(manifest, bundle)

    from compressor.atomic import atomic_write_bytes
    from compressor.codec import Encoder

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

    from bench import edge_env

    site = edge_env.build(out / "edge-site")
    print(f"[4/5] decoding in a separate process whose environment has no TensorFlow installed ({site})")
    for runtime in ("litert", "onnx"):
        proc = edge_env.run_module(
            site, "bench.decode_check", str(codes), str(bundle / "decoder"), str(originals), "--runtime", runtime
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        print("  " + proc.stdout.strip())

    from bench.commands import demo_step

    return demo_step(out, bundle, originals, run)


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
