"""Budgets: every size that an input declares is checked against one of these before memory
is allocated or work is done, so a hostile or unlucky input costs a bounded amount.

The defaults fit a Raspberry Pi with 512 MB of RAM; every one can be raised per call (API
keyword) or per command (the flag named in the error message).
"""

from __future__ import annotations

#: Bytes read from one input file (image, array, stream, JSON). ``--max-input-bytes``.
MAX_INPUT_BYTES = 64 << 20
#: Pixels of one image, checked from the file header before pixels are decoded. ``--max-pixels``.
MAX_IMAGE_PIXELS = 1 << 22
#: Width and height of one image, whatever the pixel budget.
MAX_IMAGE_SIDE = 16384
#: Images in one array file, stream or call. ``--max-images``.
MAX_IMAGES = 1 << 20
#: Nesting depth of a JSON document (manifest, coding.json).
MAX_JSON_DEPTH = 32
