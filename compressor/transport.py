"""``compressor send`` and ``compressor receive`` (issue: two hosts). Registered by compressor.cli."""


def add_commands(sub) -> None:
    """Add the send and receive subparsers to ``sub``."""
