"""Checks Schemathesis adds to its own while it fuzzes the API (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import schemathesis

# What only the server could have written into a body: SQL, driver and exception names, connection URLs.
INTERNALS = ("Traceback", "sqlalchemy", "[SQL:", "SELECT ", "INSERT INTO", "json_extract", "asyncpg", "sqlite3",
             "OperationalError", "ProgrammingError", "postgresql+asyncpg", "sqlite+aiosqlite", "redis://")


@schemathesis.check
def no_internals_in_errors(ctx, response, case) -> None:
    """An error says what failed, never how: no SQL, exception text or URL the client did not send."""
    if response.status_code < 400:
        return
    sent = " ".join(str(part) for part in (case.path_parameters, case.query, case.headers, case.body))
    leaked = [marker for marker in INTERNALS if marker in response.text and marker not in sent]
    if leaked:
        raise AssertionError(f"{response.status_code} body quotes internals {leaked}: {response.text[:300]}")
