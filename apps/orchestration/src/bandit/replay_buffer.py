"""The runbooks' door to the shared replay buffer: the original constructor `ReplayBuffer(max_size=10)`
on the process's database. The buffer itself is `replay.ReplayBuffer`, which the services use."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from apps.orchestration.src.bandit import replay
from apps.orchestration.src.bandit.replay import Experience
from apps.runtime import get_runtime

__all__ = ["Experience", "ReplayBuffer"]


class ReplayBuffer(replay.ReplayBuffer):
    """A window on the newest `max_size` experiences of the shared table, whose capacity stays the
    configured `REPLAY_MAX_SIZE` whoever builds the buffer."""

    def __init__(self, max_size: int | None = None, engine: AsyncEngine | None = None) -> None:
        runtime = get_runtime()
        super().__init__(engine or runtime.engine, runtime.settings.replay_max_size, max_size=max_size)
