"""One sender's folder on a gateway: images written once, atomically, and a progress record beside them.

Both gateways keep the same promise, whatever carries the codes: the TCP receiver
(``compressor receive``, one folder per session, ``session.json``) and the MQTT subscriber
(``compressor subscribe``, one folder per device, ``mqtt-progress.json``):

* an image file is written atomically and made durable before the sender is acknowledged,
  and never overwritten;
* the progress record is written atomically, so a crash leaves the old record or the new one;
* a redelivery that beat its progress record (the gateway died between the file and the
  record) finds its file on disk with the same pixels: it is ``already-on-disk``, not written
  twice; a file with *other* pixels under that name is a ``clash`` for the caller to handle.

What "progress" holds, and so what counts as a redelivery by number, is each gateway's own
(a cumulative count for TCP, a set of numbers for MQTT); this module stores it and keeps the
files. The record is read within a byte budget, and a damaged one raises the caller's error
class with the fix ("move it away").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.io import jsonfile
from compressor.io.atomic import atomic_write_json
from compressor.io.files import read_image, write_png

WRITTEN, ALREADY_ON_DISK, CLASH = "written", "already-on-disk", "clash"
MAX_PROGRESS_BYTES = 1 << 20


class GatewayFolder:
    """``folder`` with its images and the progress file ``progress`` in it.

    ``error``: the exception class a damaged record raises (``RefusedError`` for TCP sessions,
    ``MqttError`` for MQTT devices); ``what`` names the record in that message.
    """

    def __init__(self, folder: str | Path, progress: str, *, error: type[Exception], what: str):
        self.folder, self.progress_path = Path(folder), Path(folder) / progress
        self.error, self.what = error, what

    def load(self, max_bytes: int = MAX_PROGRESS_BYTES) -> dict | None:
        """The progress record (a JSON object), or None when there is none yet."""
        if not self.progress_path.exists():
            return None
        try:
            doc = jsonfile.load(self.progress_path, error=self.error, what=self.what, max_bytes=max_bytes)
        except self.error as e:
            raise self.damaged(e) from None
        if not isinstance(doc, dict):
            raise self.damaged("not a JSON object")
        return doc

    def damaged(self, why: object) -> Exception:
        """The caller's error for a record that parses but does not make sense."""
        return self.error(f"{self.progress_path} ({self.what}) is damaged ({why}); move it away to start over")

    def save(self, doc: dict) -> None:
        """Replace the progress record atomically (creating the folder if needed)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.progress_path, doc)

    def image_path(self, name: str) -> Path:
        return self.folder / f"{name}.png"

    def has(self, name: str) -> bool:
        return self.image_path(name).exists()

    def place(self, name: str, pixels: np.ndarray) -> tuple[str, Path]:
        """Write ``NAME.png`` once: (``written`` | ``already-on-disk`` | ``clash``, path).

        ``clash``: the file exists with other pixels; it is left as it is. ``OSError`` (full
        disk, permissions, a name too long) is the caller's to report.
        """
        path = self.image_path(name)
        if path.exists():
            return (ALREADY_ON_DISK if np.array_equal(read_image(path), pixels) else CLASH), path
        self.folder.mkdir(parents=True, exist_ok=True)
        write_png(path, pixels, overwrite=False)
        return WRITTEN, path

    def holds(self, name: str, pixels: np.ndarray) -> bool:
        """Whether ``NAME.png`` exists with exactly these pixels."""
        path = self.image_path(name)
        return path.exists() and np.array_equal(read_image(path), pixels)
