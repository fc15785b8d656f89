"""Measurement that needs only ``compressor`` and a runtime, and the report that merges devices.

``python -m bench bench`` (:mod:`bench.runner`) writes one result per machine (docs/bench.md);
``python -m bench report`` (:mod:`bench.report`) puts several side by side. Nothing here imports
TensorFlow at module level: the Keras baseline runs it in child processes.
"""
