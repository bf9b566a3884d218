"""The one credential redactor: settings by name, and passwords inside connection URLs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_SECRET_WORDS = ("key", "secret", "password", "token")


def redact_url(url: str) -> str:
    """A database or service URL with its password hidden (SQLAlchemy renders it as ***)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://***" if "@" in url else url


def redact_setting(name: str, value: Any) -> Any:
    if value and any(w in name.lower() for w in _SECRET_WORDS):
        return "***"
    if isinstance(value, str) and "://" in value and "@" in value:
        return redact_url(value)
    return value
