"""The device commands of the ``compressor`` CLI (encode, decode, info) and their shared options."""
