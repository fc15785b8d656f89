"""Keep the runtimes' and converters' internal chatter off the user's terminal.

The TFLite converter prints ``fully_quantize: 0, inference_type: 6 ...`` from C++ straight to
file descriptor 2, warns "Statistics for quantized inputs were expected..." through Python's
``warnings``, and the LiteRT interpreter announces "INFO: Created TensorFlow Lite XNNPACK
delegate for CPU." from C++. None of it helps a user, and log-level settings do not reach
all of it, so :func:`quiet` points fds 1 and 2 at a temporary file for the duration of a
block (and silences Python warnings there). If the block raises, what was captured is
written back to stderr first, so a failure still shows the runtime's own words. Blocks are
short (creating an interpreter, converting a model); our own progress output is printed
outside them. Used by :mod:`compressor.runtime.sessions` and by ``export/convert.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def quiet():
    """Silence fds 1 and 2 (C/C++ output included) and Python warnings inside the block."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no fds 1/2 (a daemon): nothing reaches a terminal anyway
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        return
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    if stream is not None:
                        stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
        except BaseException:
            sink.seek(0)
            captured = sink.read().decode("utf-8", "replace")
            if captured and sys.stderr is not None:
                sys.stderr.write(captured)
            raise
        finally:
            for fd in saved:
                os.close(fd)
