"""The codec on IoT plumbing: per-image payloads over an MQTT broker, and LoRaWAN uplinks.

``payload`` (the bytes), ``uplinks`` (ChirpStack / The Things Stack JSON), ``sequences``
(numbers that survive restarts), ``short_sequences`` (the 1-byte short form: when a camera
sends it, how a gateway extends it), ``client`` (the only paho-mqtt user), ``publisher``
(camera), ``subscriber`` (gateway), ``cli`` (``compressor publish`` / ``subscribe``).
Importing this package does not import paho-mqtt; see docs/format.md and the README.
"""
