"""The one place that touches paho-mqtt: import it (lazily), build a client, connect, reconnect.

paho-mqtt is an optional extra (``pip install 'paho-mqtt==2.2.0'``, the ``[mqtt]`` extra); nothing imports this
module until a publish or subscribe actually runs, so ``import compressor`` stays numpy-only.

Both sides use MQTT 3.1.1 with ``clean_session=False`` and a fixed client id: the broker keeps
the session (the gateway's subscription and the QoS 1 messages queued for it) while a client
is away, and paho keeps the camera's unacknowledged messages and resends them on reconnect.
MQTT 3.1.1 rather than 5 because every broker and LoRaWAN network server speaks it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from compressor.errors import MqttError, UsageError

DEFAULT_PORT, DEFAULT_TLS_PORT = 1883, 8883
INSTALL_HINT = "paho-mqtt is not installed: pip install 'paho-mqtt==2.2.0' (the [mqtt] extra of this checkout)"


def paho():
    """The ``paho.mqtt.client`` module, or MqttError naming the extra to install."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MqttError(INSTALL_HINT) from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise MqttError(f"paho-mqtt {getattr(mqtt, '__version__', '?')} is too old (need 2.x): {INSTALL_HINT}")
    return mqtt


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in; passed through to paho unchanged."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False  # TLS without checking the broker's certificate (test brokers only)
    keepalive: int = 30

    @classmethod
    def parse(cls, text: str, **options) -> Broker:
        """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT``; the port defaults to 1883, or 8883 with TLS."""
        tls = bool(options.get("tls") or options.get("cafile") or options.get("certfile"))
        host, sep, port = text.rpartition(":")
        if not sep or (":" in host and not host.endswith("]")):  # no port, or a bare IPv6 address
            host, port = text, str(DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise UsageError(f"broker must be HOST or HOST:PORT, got {text!r}")
        return cls(host, int(port), **{**options, "tls": tls})


def make_client(broker: Broker, client_id: str, *, manual_ack: bool = False, log=None):
    """A paho client with a persistent session on ``broker``, not yet connected."""
    mqtt = paho()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        try:
            client.tls_set(ca_certs=broker.cafile, certfile=broker.certfile, keyfile=broker.keyfile)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise MqttError(f"TLS setup failed: {e}; check --cafile/--certfile/--keyfile") from None
        client.tls_insecure_set(broker.insecure)
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    return client


def start(client, broker: Broker) -> None:
    """Connect in the background and keep reconnecting, also when the broker is not up yet."""
    try:
        client.connect_async(broker.host, broker.port, keepalive=broker.keepalive)
    except (OSError, ValueError) as e:
        raise MqttError(f"cannot use broker {broker.host}:{broker.port}: {e}") from None
    client.loop_start()


def refusal(reason_code) -> str | None:
    """Why a CONNACK refused us, with the fix; None when the connection was accepted or may heal."""
    if not getattr(reason_code, "is_failure", False):
        return None
    text = str(reason_code)
    if "authori" in text.lower() or "password" in text.lower() or "identifier" in text.lower():
        return f"broker refused the connection ({text}): check --username/--password and --client-id"
    return None
