"""The one error a door operation raises for the caller's mistakes and refusals: an HTTP status and a
sentence. Each door turns it into its protocol's error (a problem+json answer, an MCP tool error, a
failed A2A task)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException

from apps.search.types import FilterLimitError


class DoorError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    @classmethod
    def from_http(cls, exc: HTTPException) -> DoorError:
        return cls(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    def to_http(self) -> HTTPException:
        return HTTPException(self.status, self.detail, headers=self.headers or None)


@contextmanager
def refusals() -> Iterator[None]:
    """The services' own refusals of a caller's input as DoorErrors, for the doors outside the HTTP app
    (MCP tools, A2A tasks). Filters beyond the caps (`FilterLimitError`) are left to the service to find:
    on the HTTP app its exception handler answers them for every route (apps/api/problems.py), so the
    operations let them through and REST, the chat API and these doors all say 422 and the same sentence."""
    try:
        yield
    except FilterLimitError as exc:
        raise DoorError(422, str(exc)) from None
