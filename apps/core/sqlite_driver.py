"""The one SQLite library this process uses: `sqlean.py` (a current SQLite that may load extensions)
with sqlite-vec loaded into every connection.

The stock Python `sqlite3` here cannot load extensions. Two SQLite libraries in one process must
never open the same file (each keeps its own POSIX lock table, so one drops the other's WAL locks:
a bus error under load), so every SQLite connection in the project (the engine's and the passage
cache's) comes from `connect()` here.
"""

from __future__ import annotations

import types
from typing import Any

import aiosqlite
import sqlean
import sqlite_vec
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

dbapi = sqlean.dbapi2

_EXPORTED = ("DatabaseError", "Error", "IntegrityError", "NotSupportedError", "OperationalError",
             "ProgrammingError", "sqlite_version", "sqlite_version_info")


def connect(database: str, **kwargs: Any) -> sqlean.dbapi2.Connection:
    conn = dbapi.connect(database, **kwargs)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    return conn


def _aio_connect(database: Any, *, iter_chunk_size: int = 64, **kwargs: Any) -> aiosqlite.Connection:
    return aiosqlite.Connection(lambda: connect(str(database), **kwargs), iter_chunk_size)


def async_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """SQLAlchemy's aiosqlite adapter over this library (its exceptions, its connections)."""
    aio = types.SimpleNamespace(
        connect=_aio_connect,
        Connection=aiosqlite.Connection,
        __version__=aiosqlite.__version__,
        **{name: getattr(dbapi, name) for name in _EXPORTED},
    )
    return AsyncAdapt_aiosqlite_dbapi(aio, dbapi)  # type: ignore[arg-type]
