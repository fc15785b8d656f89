"""compressor: encode, decode and inspect latent codes of small images, and move them between devices.

Only device commands live here; each is defined beside the code it drives and registered by
module name below. Training and export are ``python -m export``, benchmarks ``python -m bench``
(run from a checkout; neither is installed on devices).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from compressor.commands.help import (
    DEVICE_ERROR,
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from compressor.errors import CompressorError

#: Modules that define device commands with ``add_commands(subparsers)``, in help order.
COMMAND_MODULES = (
    "compressor.commands.codec",
    "compressor.transport.cli",
    "compressor.mqtt.cli",
    "compressor.jobs.cli",
)

EXIT_CODES = f"""exit codes:
  {EXIT_OK}    success
  {EXIT_ERROR}    {DEVICE_ERROR}
  {EXIT_USAGE}    wrong command-line usage
  {EXIT_INCOMPLETE}    incomplete (send/publish: some images not acknowledged; receive --once/subscribe --count:
       not finished; encode-dataset/decode-dataset: written, but some rows carry an error)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # runtimes' C++ start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CompressorError as e:
        return _fail(args.command, e)
    except OSError as e:  # missing files, permissions, full disk, port in use
        return _fail(args.command, f"{e.strerror or e}{': ' + str(e.filename) if e.filename else ''}")


def _fail(command: str, message) -> int:
    # One line whatever the message: a library's text (numpy, a runtime) may span several.
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"compressor {command}: error: {text}", file=sys.stderr)
    return EXIT_ERROR


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line, like every other refusal of the tool: the
    problem, then where the right usage is. (argparse prints the whole usage block first, up
    to a dozen lines for ``encode``, and the line that says what is wrong comes last.)"""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from compressor import __version__

    p = _Parser(
        prog="compressor",
        description=__doc__.splitlines()[0],
        epilog="examples:\n"
        "  compressor encode digits.npy -o codes.lzc --bundle out/bundle --joint\n"
        "  compressor decode codes.lzc -o decoded/ --bundle out/bundle\n"
        "  compressor info codes.lzc --bundle out/bundle\n\n"
        "Run 'compressor COMMAND --help' for each command's options.\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")  # its parsers are _Parser too
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return p


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
