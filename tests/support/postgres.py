"""A real PostgreSQL 16 + pgvector from the `pgserver` wheel, for tests and local benchmarks."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse


class PostgresHarness:
    def __init__(self, data_dir: str | Path | None = None) -> None:
        import pgserver

        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        # pgserver logs from an atexit hook, after pytest has closed its capture streams
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        self._dir = Path(data_dir or tempfile.mkdtemp(prefix="dtrag-pg-"))
        self.server = pgserver.get_server(self._dir, cleanup_mode="stop")
        uri = urlparse(self.server.get_uri())
        self._socket_dir = parse_qs(uri.query)["host"][0]
        self._user = uri.username or "postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self._user}@/{database}?host={self._socket_dir}"

    def psql(self, sql: str) -> str:
        return self.server.psql(sql)

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "") + ";")
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')

    def pause(self) -> None:
        """Stop the server process, keeping its data (a database outage for drills)."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def resume(self) -> None:
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        self.server.cleanup()
