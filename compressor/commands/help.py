"""How every command's --help reads: defaults shown, examples and exit codes in the epilog.

Light on purpose (argparse only): ``compressor/cli.py``, ``python -m export`` and ``python -m bench``
import it before anything heavy is loaded.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown for every option that has one; epilog examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) and "%(default)" not in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


#: What every device command's exit status means (compressor/cli.py returns these).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


DEVICE_ERROR = (
    "refused input (bad image, damaged or foreign code, bad bundle, limit exceeded, missing extra,\n"
    "       file or network error): one line on stderr says what and what to do"
)


def epilog(*examples: str, incomplete: str | None = None, error: str = DEVICE_ERROR) -> str:
    """A command's help epilog: its examples, then its exit codes (``incomplete``: what 3 means, if it can).

    ``python -m export`` and ``python -m bench`` use it too, with their own ``error`` text.
    """
    codes = [f"  {EXIT_OK}    success", f"  {EXIT_ERROR}    {error}", f"  {EXIT_USAGE}    wrong command-line usage"]
    if incomplete:
        codes.append(f"  {EXIT_INCOMPLETE}    {incomplete}")
    codes.append(f"  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)")
    return "\n".join(["examples:", *(f"  {e}" for e in examples), "", "exit codes:", *codes])
