"""A2A tasks in the database, not in one process: the SDK's `DatabaseTaskStore` on the runtime's engine,
in the table `a2a_tasks` (Alembic revision 0017_a2a_tasks, both backends). The server runs several
workers; a task one of them ran is read (`GetTask`, `ListTasks`) and cancelled through any of them. Each
task belongs to the key that sent it (the SDK's owner: the request's user, `a2a.KeyUser`).

The SDK's in-process parts stay in-process: a running task's live event stream (`SubscribeToTask` on a
task still running) is the worker's that runs it.
"""

from __future__ import annotations

from collections.abc import Callable

from a2a.server.context import ServerCallContext
from a2a.server.models import create_task_model
from a2a.server.tasks import DatabaseTaskStore, TaskStore
from a2a.types import ListTasksRequest, ListTasksResponse, Task
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

from apps.core.db import writing

TABLE = "a2a_tasks"


class _Base(DeclarativeBase):
    """The table's own metadata: Alembic makes the table, nothing creates it at run time."""


# Once per process: SQLAlchemy refuses a second class for one table, which the SDK's store would define for
# every instance given a table name of its own (and a test process serves several apps).
A2ATask = create_task_model(TABLE, _Base)


class A2ATaskStore(DatabaseTaskStore):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, create_table=False)  # the SDK's default model here, replaced just below
        self.task_model = A2ATask
        # A save is the SDK's `session.merge` (a read, then a write): on SQLite, beside the server's other
        # writers, that upgrade fails at once unless the transaction took the write lock at its BEGIN.
        self.async_session_maker = async_sessionmaker(writing(engine), expire_on_commit=False)


class ServingTaskStore(TaskStore):
    """The task store of the runtime the app serves now: the A2A request handler is made with the app, the
    runtime (and its engine) when the app starts serving."""

    def __init__(self, store_of: Callable[[], TaskStore | None]) -> None:
        self.store_of = store_of

    def _store(self) -> TaskStore:
        store = self.store_of()
        if store is None:  # the key check answers 503 before a request gets here while starting up
            raise RuntimeError("A2A tasks before the app serves")
        return store

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await self._store().save(task, context)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        return await self._store().get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        return await self._store().list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        await self._store().delete(task_id, context)
