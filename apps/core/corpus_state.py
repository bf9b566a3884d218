"""The corpus generation: bumped in the same transaction as every corpus write, read by caches."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


async def bump_generation(conn: AsyncConnection) -> None:
    await conn.execute(text("UPDATE corpus_state SET generation = generation + 1 WHERE id = 1"))


async def current_generation(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT generation FROM corpus_state WHERE id = 1"))).scalar_one())


async def lexical_analyzer(conn: AsyncConnection) -> str | None:
    return (await conn.execute(text("SELECT lexical_analyzer FROM corpus_state WHERE id = 1"))).scalar_one()


async def claim_lexical_analyzer(conn: AsyncConnection, name: str, force: bool = False) -> None:
    """Record the analyser of the chunks being written (the first writer decides; reindex forces)."""
    where = "" if force else " AND lexical_analyzer IS NULL"
    await conn.execute(text("UPDATE corpus_state SET lexical_analyzer = :name WHERE id = 1" + where), {"name": name})
