"""The one error a door operation raises for the caller's mistakes and refusals: an HTTP status and a
sentence. Each door turns it into its protocol's error (a problem+json answer, an MCP tool error, a
failed A2A task)."""

from __future__ import annotations

from fastapi import HTTPException


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
