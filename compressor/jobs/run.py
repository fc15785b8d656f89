"""``encode_dataset`` and ``decode_dataset``: plan, pick an engine, write, summarise.

The Python API behind ``compressor encode-dataset`` / ``decode-dataset``. Everything that can
be refused up front is refused before a worker starts: the bundle is verified, the sources
planned (headers and listings only), the output path checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compressor import limits
from compressor.jobs import sources, table
from compressor.jobs.work import DecodeUnits, EncodeUnits, Loading

ENGINES = ("local", "ray")


@dataclass
class Summary:
    """What a job did; ``failed`` rows carry an error in the output (and set exit status 3)."""

    images: int
    failed: int
    code_bytes: int
    seconds: float
    engine: str
    workers: int
    out: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: When the first rows reached the writer, and how many: the job's start-up (for Ray:
    #: starting the actors and loading the model in each) is over by then.
    first_rows_seconds: float = 0.0
    first_rows: int = 0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    @property
    def steady_images_per_second(self) -> float:
        """Images per second after the first rows arrived: the rate a longer job approaches."""
        rows, seconds = self.images - self.first_rows, self.seconds - self.first_rows_seconds
        return rows / seconds if rows > 0 and seconds > 0 else self.images_per_second

    @property
    def bytes_per_image(self) -> float:
        coded = self.images - self.failed
        return self.code_bytes / coded if coded else 0.0


def encode_dataset(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    bundle: str | Path,
    engine: str = "local",
    address: str | None = None,
    workers: int = 1,
    threads: int = 1,
    batch_size: int = 256,
    unit_images: int = sources.UNIT_IMAGES,
    runtime: str = "auto",
    precision: str = "int8",
    options: dict | None = None,
    image_column: str = "image",
    name_column: str = "name",
    on_progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Images under ``paths`` -> ``out`` (codes Parquet, docs/format.md); ``options`` are
    :meth:`compressor.Encoder.compress`'s (``mode``, ``step``, ``quality``, ``target_bytes``).

    ``on_progress(done, total)`` is called in the driver after each batch of rows is written.
    """
    from compressor.bundle import load_part

    pa, _ = sources.require_pyarrow()
    _check(engine, workers, threads, batch_size, out, suffix=".parquet")
    part = load_part(bundle, "encoder")
    plan = sources.plan(paths, unit_images=unit_images, image_column=image_column, name_column=name_column)
    kwargs = {
        "loading": Loading(str(Path(bundle).resolve()), runtime, precision, threads, batch_size),
        "options": dict(options or {}),
    }
    meta = table.metadata(
        "codes", model_id=part.model_id, image_shape=list(part.image_shape), options=kwargs["options"]
    )
    sink = table.ParquetSink(out, table.codes_schema(pa), meta, plan.total)
    return _run(EncodeUnits, kwargs, plan, sink, engine, address, workers, threads, on_progress, out)


def decode_dataset(
    codes: str | Path,
    out: str | Path,
    *,
    bundle: str | Path,
    engine: str = "local",
    address: str | None = None,
    workers: int = 1,
    threads: int = 1,
    batch_size: int = 256,
    unit_images: int = sources.UNIT_IMAGES,
    runtime: str = "auto",
    precision: str = "int8",
    binarize: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """A codes Parquet file -> ``out``: a folder of PNGs, or an images Parquet file if it ends in .parquet."""
    from compressor.bundle import load_part

    pa, _ = sources.require_pyarrow()
    _check(engine, workers, threads, batch_size, out, suffix=None)
    part = load_part(bundle, "decoder")
    plan = table.plan_codes(codes, model_id=bytes.fromhex(part.model_id), unit_rows=unit_images)
    kwargs = {
        "loading": Loading(str(Path(bundle).resolve()), runtime, precision, threads, batch_size),
        "binarize": binarize,
    }
    if str(out).endswith(".parquet"):
        meta = table.metadata("images", model_id=part.model_id, image_shape=list(part.image_shape))
        sink = table.ParquetSink(out, table.images_schema(pa), meta, plan.total)
    else:
        sink = table.FolderSink(out, plan.total)
    return _run(DecodeUnits, kwargs, plan, sink, engine, address, workers, threads, on_progress, out)


def _check(engine: str, workers: int, threads: int, batch_size: int, out, suffix: str | None) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if workers < 1 or threads < 1 or batch_size < 1:
        raise ValueError("workers, threads and batch size must be at least 1")
    if threads > limits.MAX_THREADS:  # before Ray starts and plans: a worker would refuse it at load
        raise ValueError(f"threads must be at most {limits.MAX_THREADS}, got {threads}")
    if engine == "ray":
        from compressor.jobs.ray_engine import require_ray

        require_ray()  # before anything is planned or written
    if engine == "local" and workers != 1:
        raise ValueError("the local engine runs one worker; for more use --engine ray")
    if suffix and not str(out).endswith(suffix):
        raise ValueError(f"the output must be a {suffix} file, got {out}")
    if suffix and not Path(out).resolve().parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: its folder does not exist (create it first)")


def _run(work_cls, kwargs, plan, sink, engine, address, workers, threads, on_progress, out) -> Summary:
    if engine == "ray":
        from compressor.jobs import ray_engine as chosen
    else:
        from compressor.jobs import local as chosen
    done, first = 0, (0.0, 0)

    def on_rows(rows: int) -> None:
        nonlocal done, first
        if not done:
            first = (time.perf_counter() - start, rows)
        done += rows
        if on_progress is not None:
            on_progress(done, plan.total)

    start = time.perf_counter()
    with sink:
        chosen.run(work_cls, kwargs, plan, sink, address=address, workers=workers, threads=threads, on_rows=on_rows)
    tally = sink.tally
    return Summary(
        images=tally.rows,
        failed=tally.failed,
        code_bytes=tally.code_bytes,
        seconds=time.perf_counter() - start,
        engine=engine,
        workers=workers,
        out=str(out),
        errors=list(tally.errors),
        first_rows_seconds=first[0],
        first_rows=first[1],
    )
