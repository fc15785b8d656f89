"""Whole datasets in, one Parquet file out: ``compressor encode-dataset`` / ``decode-dataset``.

A job is planned once in the driver and cut into *units* (a few hundred to a few thousand
images each: a run of image files, a slice of an ``.npy`` shard, an ``.npz`` member, a slice
of a Parquet row group). A worker turns one unit into output rows with the same
:class:`compressor.Encoder` / :class:`compressor.Decoder` calls as a single process, so the
engine that runs the units -- this process (``local``) or a Ray cluster (``ray``) -- cannot
change a byte. Rows reach the driver in input order and are written to one Parquet file
that appears atomically when the job ends (layout: docs/format.md).

Modules, one job each:

* :mod:`~compressor.jobs.sources`: find the inputs, plan units, read a unit into images;
* :mod:`~compressor.jobs.work`: the per-unit work (read + code), a class both engines call;
* :mod:`~compressor.jobs.table`: the Parquet schemas and the atomic, order-checking writers;
* :mod:`~compressor.jobs.local` and :mod:`~compressor.jobs.ray_engine`: the two engines;
* :mod:`~compressor.jobs.run`: ``encode_dataset`` / ``decode_dataset``, the Python API;
* :mod:`~compressor.jobs.cli`: the two subcommands.

Only numpy and a runtime are needed to import this package; pyarrow (Parquet) and Ray are
imported inside the functions that use them, so a device install never pays for them.
"""
