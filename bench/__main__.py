"""Measure this machine (bench) or merge the results of several machines (report) -- python -m bench.

Runs from a checkout with ``compressor`` and one runtime installed (a Raspberry Pi needs
nothing else); bench is not installed into site-packages.
"""

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from bench.commands import BENCH_ERROR, add_commands
    from compressor.commands.help import epilog

    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog=epilog(
            "python -m bench bench --bundle out/bundle -o results/this-machine.json --quick",
            "python -m bench report results/*.json -o report",
            "python -m bench ladder out/bundle out/bundle-w0.5 --images out/test_images.npy",
            error=BENCH_ERROR,
        )
        + "\n\nRun 'python -m bench COMMAND --help' for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(sub)
    return p


def main(argv=None) -> int:
    from bench.commands import UsageError
    from compressor.errors import CompressorError

    p = build_parser()
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
