"""The Ray engine: the units as a Ray Dataset, coded by a pool of actors, streamed back in order.

``ray.data.from_items`` holds one small description per unit; ``map_batches`` runs
:mod:`compressor.jobs.work`'s class on a fixed pool of ``workers`` actors (``num_cpus`` = the
runtime session's threads), so each actor loads the model once and then reads and codes
unit after unit; the images never travel through the object store, only the rows out do.
``preserve_order`` makes rows arrive in input order, and the writer checks it.

Failures: an actor that dies (killed, OOM, node lost) is restarted (``max_restarts=-1``) and
its unit run again (up to ``TASK_RETRIES`` times per unit); Ray Data keeps only the outputs of
the attempt that finished, and the writer's order check would stop the job rather than write a
lost or repeated row.

Without an address a local cluster is started for the job and stopped after it; with one
(``auto``, ``ray://host:10001``, ``host:6379``) the job runs there: every node must have this
package with the same runtime installed, and see the bundle and the sources at the same paths.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

from compressor.errors import MissingExtraError
from compressor.jobs.sources import Plan

#: Attempts at one unit after the first (an actor death costs one).
TASK_RETRIES = 3
#: Blocks of unit descriptions; more units share blocks (each is still its own batch).
MAX_BLOCKS = 4096


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra has no ray.data)
    except ImportError:
        raise MissingExtraError(
            "--engine ray needs Ray Data: pip install 'ray[data]==2.60.0' 'pyarrow==26.0.1' "
            "(the [scale] extra of this checkout), or use --engine local"
        ) from None
    return ray


def connect(address: str | None, *, workers: int, threads: int) -> bool:
    """Join ``address``, or start a local cluster; True if this call started Ray (and should stop it)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(include_dashboard=False, **quiet)
        cpus = ray.cluster_resources().get("CPU", 0)
        if workers * threads > cpus:
            ray.shutdown()
            raise ValueError(
                f"{workers} workers x {threads} threads need {workers * threads} CPUs; this machine's local "
                f"cluster has {cpus:g}: lower --workers/--threads or pass --address of a larger cluster"
            )
    return True


def run(
    work_cls,
    kwargs: dict,
    plan: Plan,
    sink,
    *,
    address: str | None = None,
    workers: int = 1,
    threads: int = 1,
    on_rows: Callable[[int], None] | None = None,
) -> None:
    """Run every unit of ``plan`` on ``workers`` actors of ``work_cls(**kwargs)``, rows into ``sink``."""
    ray = require_ray()
    started = connect(address, workers=workers, threads=threads)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        items = [{"unit": unit.to_json()} for unit in plan.units]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates passing max_restarts/max_task_retries this way but offers no
            # other: without them a unit that crashes its actor every time would be retried forever.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.map_batches(
                work_cls,
                batch_size=1,
                batch_format="numpy",
                fn_constructor_kwargs=kwargs,
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=threads,
                max_restarts=-1,
                max_task_retries=TASK_RETRIES,
            )
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            sink.write(table)
            if on_rows is not None:
                on_rows(table.num_rows)
    finally:
        if started:
            ray.shutdown()
