"""``compressor bench`` and ``compressor report`` (issue: bench). Registered by compressor.cli."""


def add_commands(sub) -> None:
    """Add the bench and report subparsers to ``sub``."""
