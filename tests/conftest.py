"""Fixtures: every storage test runs on SQLite and on a real PostgreSQL + pgvector (pgserver)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
os.environ.setdefault("SECRET_KEY", "test-secret-key-for-dt-rag-tests")

from apps.core.config import Settings, load_settings  # noqa: E402
from apps.core.migrations import upgrade  # noqa: E402
from apps.runtime import Runtime, build_runtime  # noqa: E402
from tests.support.fake_gemini import FakeGemini  # noqa: E402
from tests.support.postgres import PostgresHarness  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresHarness]:
    harness = PostgresHarness()
    yield harness
    harness.stop()


@pytest.fixture(scope="session")
def pg_template(postgres: PostgresHarness) -> str:
    """A migrated database that each test's database is copied from (fast and isolated)."""
    name = postgres.create_database()
    upgrade(postgres.url(name))
    return name


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        upgrade(url)
        yield url
        return
    postgres: PostgresHarness = request.getfixturevalue("postgres")
    name = postgres.create_database(template=request.getfixturevalue("pg_template"))
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url, leg_timeout_ms=5000)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = build_runtime(settings)
    yield rt
    await rt.close()


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    """A local server speaking the Gemini REST API, with scripted behaviour."""
    server = FakeGemini()
    yield server
    server.stop()
