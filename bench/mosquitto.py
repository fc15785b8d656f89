"""A throwaway Mosquitto broker on 127.0.0.1, for the MQTT tests and the MQTT benchmark.

The broker is Debian's ``mosquitto`` (``apt-get install -y mosquitto``), run with a generated
config: one listener on 127.0.0.1 only, anonymous clients, persistence in the given folder
(so a restart keeps sessions and queued messages, as a production broker does), no cap
on the messages queued for an offline client (Mosquitto's default, 1000, would *drop* the
1001st message for a gateway that is away; see the README), and a 256 KiB cap on a packet
(the default is 256 MB, which a gateway would have to hold in memory before refusing it).

``stop()`` sends SIGTERM, on which Mosquitto writes its persistence file; ``start()`` again
reuses the port and the file: a broker restart.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

INSTALL_HINT = "apt-get install -y mosquitto"


class MosquittoUnavailable(RuntimeError):
    """No mosquitto binary here, or it did not start."""


def find_mosquitto() -> str | None:
    """The mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """``with Mosquitto(folder) as broker:`` ... ``broker.address`` is ``127.0.0.1:PORT``."""

    def __init__(
        self,
        folder: str | Path,
        port: int | None = None,
        *,
        anonymous: bool = True,
        passwords: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ):
        """``passwords``: accounts (user -> password) in a password file; ``tls``: (CA, certificate, key) PEM files."""
        self.binary = find_mosquitto()
        if self.binary is None:
            raise MosquittoUnavailable(f"mosquitto is not installed: {INSTALL_HINT}")
        self.folder = Path(folder)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        self.config = self.folder / "mosquitto.conf"
        self.log = self.folder / "mosquitto.log"
        lines = [f"listener {self.port} {self.host}"]
        if tls is not None:
            lines += [f"cafile {tls[0]}", f"certfile {tls[1]}", f"keyfile {tls[2]}"]
        if passwords:
            lines.append(f"password_file {self._password_file(passwords)}")
        self.config.write_text(
            "\n".join(lines) + "\n"
            f"allow_anonymous {'true' if anonymous and not passwords else 'false'}\n"
            "persistence true\n"
            f"persistence_location {self.folder / 'data'}/\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 100\n"
            # the gateway reads a message whole before it can refuse one over 64 KiB: without a
            # cap one 100 MB publish cost it 330 MB (README, "Over MQTT"); 256 KiB fits any payload
            "max_packet_size 262144\n"
            f"user {getpass.getuser()}\n"  # when run as root, stay root (else it switches to 'mosquitto')
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    def _password_file(self, passwords: dict[str, str]) -> Path:
        path = self.folder / "passwords"
        path.write_text("")
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for user, password in passwords.items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True, timeout=30)
        return path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> Mosquitto:
        """Start and wait until the port accepts connections."""
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MosquittoUnavailable(f"mosquitto exited with {self.proc.returncode}: {self.tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise MosquittoUnavailable(f"mosquitto did not listen on {self.address} within {timeout:g} s: {self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file) and wait; SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self, pause: float = 0.5) -> None:
        self.stop()
        time.sleep(pause)
        self.start()

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
