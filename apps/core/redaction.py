"""The one credential redactor: settings by name, passwords inside connection URLs, secrets in the
paths of webhook URLs, and the same for free text such as tracebacks."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_SECRET_WORDS = ("key", "secret", "password", "token")
# Webhook URLs (Slack, Teams, Discord, ...) carry their credential in the path.
_PATH_SECRET_WORDS = ("webhook",)
# The scheme is matched from the start of its run of scheme characters only (the lookbehind, then any
# digits or +.- before the first letter): starting at every letter of a long word was quadratic.
_URL_WITH_USERINFO = re.compile(r"(?<![a-zA-Z0-9+.\-])([0-9+.\-]*[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s:@]*:[^/\s@]*@")
_MASK = "***"


def redact_url(url: str) -> str:
    """A database or service URL with its password hidden (SQLAlchemy renders it as ***)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return redact_text(url)


def _origin_only(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/{_MASK}" if parts.scheme else _MASK


def redact_setting(name: str, value: Any) -> Any:
    lowered = name.lower()
    if value and any(w in lowered for w in _SECRET_WORDS):
        return _MASK
    if isinstance(value, str) and value and any(w in lowered for w in _PATH_SECRET_WORDS):
        return _origin_only(value)
    if isinstance(value, str) and "://" in value and "@" in value:
        return redact_url(value)
    return value


def redact_text(text: str) -> str:
    """Passwords of every `scheme://user:password@host` in free text (log messages, tracebacks)."""
    return _URL_WITH_USERINFO.sub(lambda m: f"{m.group(1)}{_MASK}:{_MASK}@", text)
