"""The Keras baseline: the trained model run by TensorFlow as a compiled ``tf.function``.

    python -m bench.keras_baseline RUN --threads 1 --batches 1,64 [--gpu] [--profile quick]

Run by ``python -m bench bench --with-keras RUN`` in a child process, once per thread count:
TensorFlow fixes its thread pools when it starts, and the bench process itself must stay
free of TensorFlow (it is the same runner a Raspberry Pi uses). Prints one JSON object,
``{"tensorflow": version, "rows": [...]}``, rows shaped like the other latency rows
(``runtime: "tensorflow"``, ``format: "keras"``). With ``--gpu`` it adds rows on TensorFlow's
first GPU, or says "not available" when TensorFlow sees none. Inputs are random binary
images and normal latents with a fixed seed: dense float kernels do not care which.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from bench import memory
from bench.latency import PROFILES, Profile, finish_row, timed_row

COMPONENTS = ("encoder", "decoder")


def _key(component: str, batch: int | None, threads: int | None, device: str) -> dict:
    return {
        "component": component,
        "runtime": "tensorflow",
        "format": "keras",
        "precision": "fp32",
        "batch": batch,
        "num_threads": threads,
        "device": device,
        "provider": "tf.function",
    }


def measure(run: str, threads: int, batches: list[int], profile: Profile, gpu: bool) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from export.model import mean_encoder, probability_decoder
    from export.train import load_run

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    devices = [("cpu", "/CPU:0", threads)]
    if gpu:
        if tf.config.list_physical_devices("GPU"):
            devices.append(("gpu", "/GPU:0", None))
        else:
            reason = "TensorFlow sees no GPU (tensorflow-cpu, no CUDA libraries, or no device)"
            rows += [{**_key(c, None, None, "gpu"), "status": "not available", "reason": reason} for c in COMPONENTS]
    for device, tf_device, n in devices:
        for component in COMPONENTS:
            for batch in batches:
                resettable = memory.reset_peak()
                rss_before = memory.rss_mb()
                t0 = time.perf_counter_ns()
                config, _, encoder, decoder = load_run(run)
                graph = mean_encoder(encoder) if component == "encoder" else probability_decoder(decoder)
                fn = tf.function(lambda x, g=graph: g(x, training=False))
                startup_us = (time.perf_counter_ns() - t0) / 1000.0
                h, w = config["image_shape"]
                if component == "encoder":
                    data = (rng.random((batch, h, w, 1)) > 0.5).astype(np.float32)
                else:
                    data = rng.standard_normal((batch, config["latent_dim"])).astype(np.float32)
                with tf.device(tf_device):
                    x = tf.constant(data)

                    def call(fn=fn, x=x):
                        fn(x).numpy()  # .numpy() waits for the device

                    row = timed_row(_key(component, batch, n, device), batch, call, startup_us, profile)
                row["file"] = f"{component}.weights.h5"
                row["file_bytes"] = os.path.getsize(os.path.join(run, f"{component}.weights.h5"))
                rows.append(finish_row(row, rss_before, resettable))
    return {"tensorflow": tf.__version__, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="training run directory (weights + config.json)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--gpu", action="store_true", help="also time on TensorFlow's first GPU")
    p.add_argument("--profile", default="quick", help="a profile name, or its fields as JSON")
    args = p.parse_args(argv)
    profile = PROFILES.get(args.profile) or Profile(**json.loads(args.profile))
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print(json.dumps({"unavailable": "TensorFlow is not installed (the Keras baseline needs the train extra)"}))
        return 0
    result = measure(args.run, args.threads, [int(b) for b in args.batches.split(",")], profile, args.gpu)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
