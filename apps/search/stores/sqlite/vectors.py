"""Exact vector search in SQLite by sqlite-vec's `vec_distance_cosine`, computed by the database in C.

The stock Python `sqlite3` here cannot load extensions, so these read connections come from
`pysqlite3` (its own SQLite, built with extension loading) on the same database file. Writes stay on
the main engine; WAL lets these readers see every committed write.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class VectorReader:
    def __init__(self, path: str, threads: int = 2) -> None:
        self._path = path
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqlite-vec")

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite_vec
            from pysqlite3 import dbapi2

            conn = dbapi2.connect(self._path, check_same_thread=False, timeout=30)
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
            self._local.conn = conn
        return conn

    def _run(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, params).fetchall()

    async def fetch(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, sql, params)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
