"""Budgets: every size that an input declares is checked against one of these before memory
is allocated or work is done, so a hostile or unlucky input costs a bounded amount.

The defaults fit a Raspberry Pi with 512 MB of RAM; every one can be raised per call (API
keyword) or per command (the flag named in the error message).
"""

from __future__ import annotations

#: Bytes read from one input file, and the pixels (bytes) of all images read in one call,
#: including the data an ``.npy``/``.npz`` header declares. ``--max-input-bytes``.
MAX_INPUT_BYTES = 8 << 20
#: Pixels of one image, checked from the file header before pixels are decoded. No bundle's
#: model takes more (``MAX_MODEL_PIXELS``), so a larger image could only be refused later.
#: ``--max-pixels``.
MAX_IMAGE_PIXELS = 1 << 16
#: Width and height of one image, whatever the pixel budget.
MAX_IMAGE_SIDE = 16384
#: Images in one array file, stream or call. ``--max-images``.
MAX_IMAGES = 1 << 20
#: Nesting depth of a JSON document (manifest, coding.json).
MAX_JSON_DEPTH = 32
#: Bytes of one JSON document (manifest, coding.json, session.json).
MAX_JSON_BYTES = 8 << 20
#: Pixels of the images a bundle's model works on (H x W from its manifest).
MAX_MODEL_PIXELS = 1 << 16
#: Entries of all entropy tables of one coding.json together.
MAX_TABLE_ENTRIES = 1 << 22
#: Images one ``compressor decode`` (or ``info``) accepts from a stream. An empty entropy
#: payload is a valid code, so a stream may declare about one image per byte; this keeps any
#: stream within ~150 MB and ~10 s on a small device (bench/hostile.py). ``--max-images``.
MAX_DECODE_IMAGES = 2048
#: Bytes of one stream file that ``decode``/``info`` read. ``--max-input-bytes``.
MAX_STREAM_BYTES = 16 << 20
#: Inference threads of one network (``threads=``, ``--threads``): a runtime starts them all at
#: load, and 100000 crashed LiteRT (segfault) and stalled onnxruntime for minutes; a small
#: device has a few cores.
MAX_THREADS = 256
