"""A real redis-server on a free loopback port (installed from Debian's packages when missing)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

from tests.support import apt


def ensure_installed() -> str:
    return apt.ensure("redis-server", lambda: shutil.which("redis-server"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self) -> None:
        self._binary = ensure_installed()
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="dtrag-redis-")
        self.start()

    def start(self) -> None:
        """(Re)start on the same port, so clients configured with `url` reconnect by themselves."""
        self._proc = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
