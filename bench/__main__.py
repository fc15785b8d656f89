"""Measure this machine (bench) or merge the results of several machines (report) -- python -m bench.

Runs from a checkout with ``compressor`` and one runtime installed (a Raspberry Pi needs
nothing else); bench is not installed into site-packages.
"""

import argparse
import sys


def main(argv=None) -> int:
    from bench.commands import UsageError, add_commands
    from compressor.errors import CompressorError

    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog="examples:\n  python -m bench bench --bundle out/bundle -o results/this-machine.json --quick\n"
        "  python -m bench report results/*.json -o report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(sub)
    args = p.parse_args(argv)
    if not hasattr(args, "handler"):
        p.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (CompressorError, OSError, UsageError) as e:
        print(f"python -m bench {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
