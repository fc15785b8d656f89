"""Helpers that run the device side in an emulated aarch64 Python (Raspberry Pi OS 12's build)."""
