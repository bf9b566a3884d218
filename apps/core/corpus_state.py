"""The corpus's one-row state (`CorpusState`): the generation, bumped in the same transaction as every
corpus write and read by caches, and the Korean analyser the lexical index was built with."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.models import CorpusState

_ROW = CorpusState.id == 1


async def bump_generation(conn: AsyncConnection) -> None:
    await conn.execute(update(CorpusState).where(_ROW).values(generation=CorpusState.generation + 1))


async def current_generation(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(CorpusState.generation).where(_ROW))).scalar_one())


async def lexical_analyzer(conn: AsyncConnection) -> str | None:
    return (await conn.execute(select(CorpusState.lexical_analyzer).where(_ROW))).scalar_one()


async def claim_lexical_analyzer(conn: AsyncConnection, name: str, force: bool = False) -> None:
    """Record the analyser of the chunks being written (the first writer decides; reindex forces)."""
    condition = _ROW if force else _ROW & CorpusState.lexical_analyzer.is_(None)
    await conn.execute(update(CorpusState).where(condition).values(lexical_analyzer=name))
