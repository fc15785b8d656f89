"""``python -m export train|export|demo``: training, conversion and the main job (needs the [train] extra)."""

import sys

from export.cli import main

sys.exit(main())
