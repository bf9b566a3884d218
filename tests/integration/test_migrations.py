"""One Alembic history, both backends: upgrade, current, downgrade, one head."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.migrations import alembic_config

ROOT = Path(__file__).resolve().parents[2]


def alembic(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url}
    out = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


async def tables(url: str) -> set[str]:
    engine = create_engine(load_settings(database_url=url))
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names


def test_single_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://")).get_heads()) == 1


async def test_upgrade_current_downgrade_on_both_backends(tmp_path, postgres) -> None:
    urls = [f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", postgres.url(postgres.create_database())]
    for url in urls:
        alembic(url, "upgrade", "head")
        assert "(head)" in alembic(url, "current")
        assert {"documents", "chunks", "embeddings"} <= await tables(url)
        alembic(url, "downgrade", "-1")
        assert "(head)" not in alembic(url, "current")
        alembic(url, "downgrade", "base")
        assert await tables(url) <= {"alembic_version"}
        alembic(url, "upgrade", "head")
        assert "(head)" in alembic(url, "current")
