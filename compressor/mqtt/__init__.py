"""The codec on IoT plumbing: per-image payloads over an MQTT broker, and LoRaWAN uplinks.

``payload`` (the bytes), ``uplinks`` (ChirpStack / The Things Stack JSON), ``sequences``
(numbers that survive restarts), ``client`` (the only paho-mqtt user), ``publisher``
(camera), ``subscriber`` (gateway), ``cli`` (``compressor publish`` / ``subscribe``).
Importing this package does not import paho-mqtt; see docs/format.md and the README.
"""
