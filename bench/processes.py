"""Child processes that a bench or test stops with Ctrl-C (SIGINT), as a user would.

Why: a process started with SIGINT ignored -- a job a non-interactive shell put in the background
(``cmd &``, as CI runners and ``nohup ... &`` do) -- passes that on to its children, and Python
then installs no KeyboardInterrupt handler: ``send_signal(SIGINT)`` does nothing and the gateway
runs on until its idle timeout (a suite run in the background failed that way, 30 s waits timing
out). :func:`interruptible` as ``preexec_fn`` gives the child the default disposition back, so it
stops on SIGINT as it does from a terminal.
"""

from __future__ import annotations

import signal


def interruptible() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: SIGINT back to its default in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
