"""The Keras decoder against the int8 LiteRT decoder at batch 1, timed in turns in one process.

    python -m bench.keras_ratio RUN BUNDLE [--rounds 200]

Prints one JSON object: ``{"keras_us", "int8_us", "keras_over_int8", "tensorflow"}``.

Why one process for both: a ratio of two times taken in two processes, one after the other,
on a shared machine measures the load as much as the runtimes. Here both are timed in turns
(``rounds`` x a few calls each, each turn after a few untimed calls, best turn kept), so
the load hits both alike and each is measured warm. TensorFlow is
imported here only; ``bench.speed_targets`` runs this as a child and stays free of it.

Keras is measured as a user who cares about speed would run it: the trained probability
decoder (the very function the int8 file computes, sigmoid included) as a ``tf.function``,
traced and warmed up before timing, one intra-op and one inter-op thread (the int8 decoder
runs one thread too), batch 1, and ``.numpy()`` so the probabilities are on the host like
the int8 decoder's output. The int8 side is the bundle's batch-1 LiteRT file through
:class:`compressor.runtime.sessions.Session`, fed the same latent quantized to its input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def warm_best_us(fns: dict, rounds: int, calls: int, warmup: int = 3) -> dict[str, float]:
    """Best µs per call of each function, timed in turns, each turn after ``warmup`` untimed calls.

    In turns, so machine load hits both alike; warm, because otherwise the first calls of each
    turn pay for the other runtime's work (TensorFlow's ~1 MB of float weights and its thread
    pool push the int8 file's packed weights out of the caches), which measures the pairing,
    not either runtime as it runs on its own.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(warmup):
                fn()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls * 1e6)
    return {k: round(v, 1) for k, v in best.items()}


def measure(run: str, bundle: str, rounds: int = 200, calls: int = 5) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from compressor import Decoder
    from export.model import probability_decoder
    from export.train import load_run

    _, _, _, decoder = load_run(run)
    graph = probability_decoder(decoder)
    fn = tf.function(lambda z: graph(z, training=False))
    latent = np.random.default_rng(0).standard_normal((1, decoder.input_shape[-1])).astype(np.float32)
    z = tf.constant(latent)

    dec = Decoder.load(Path(bundle) / "decoder", runtime="litert", precision="int8", threads=1)
    entry = next(f for f in dec.network.files if f.batch == 1)
    sess = dec.network.session(entry)
    x = dec.network.quantize_input(latent)
    for _ in range(50):  # trace the tf.function and warm both up
        fn(z).numpy()
        sess.run(x)
    best = warm_best_us({"keras": lambda: fn(z).numpy(), "int8": lambda: sess.run(x)}, rounds=rounds, calls=calls)
    return {
        "tensorflow": tf.__version__,
        "keras_us": best["keras"],
        "int8_us": best["int8"],
        "int8_file": entry.path,
        "keras_over_int8": round(best["keras"] / best["int8"], 2),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="training run directory of the bundle (weights + config.json)")
    p.add_argument("bundle", help="the bundle exported from that run")
    p.add_argument("--rounds", type=int, default=200, help="timing rounds (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print(json.dumps({"unavailable": "TensorFlow is not installed (the Keras side needs the train extra)"}))
        return 0
    print(json.dumps(measure(args.run, args.bundle, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
