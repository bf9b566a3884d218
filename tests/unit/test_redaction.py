"""The one credential redactor, and the log formatter that uses it for tracebacks."""

from __future__ import annotations

import json
import logging
import sys

from apps.core.logging import JsonFormatter
from apps.core.redaction import redact_setting, redact_text, redact_url


def test_settings_are_redacted_by_name_and_by_url() -> None:
    assert redact_setting("secret_key", "s3cr3t-value") == "***"
    assert redact_setting("gemini_api_key", "AIza-xyz") == "***"
    assert redact_setting("gemini_api_key", None) is None  # an unset secret says so
    assert redact_setting("database_url", "postgresql+asyncpg://dt:hunter2@db:5432/dt") == \
        "postgresql+asyncpg://dt:***@db:5432/dt"
    assert redact_setting("redis_url", "redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    # Webhook URLs carry their credential in the path, not in a password.
    assert redact_setting("canary_webhook_url", "https://hooks.slack.com/services/T0/B0/XXSECRETXX") == \
        "https://hooks.slack.com/***"
    assert redact_setting("database_url", "sqlite+aiosqlite:///./dt_rag.db") == "sqlite+aiosqlite:///./dt_rag.db"
    assert redact_setting("log_level", "INFO") == "INFO"
    assert redact_url("not a url") == "not a url"


def test_free_text_and_tracebacks_lose_their_passwords() -> None:
    assert redact_text("could not connect to postgresql://dt:hunter2@db/dt and redis://u:p@r:1") == \
        "could not connect to postgresql://***:***@db/dt and redis://***:***@r:1"
    # The scheme starts at the first letter of its run, whatever comes before it.
    assert redact_text("jdbc:postgresql://dt:pw@db x-1mongodb+srv://u:p@h (http://a:b@c)") == \
        "jdbc:postgresql://***:***@db x-1mongodb+srv://***:***@h (http://***:***@c)"
    assert redact_text("ssh://host:22/path user@mail no://colon@here") == "ssh://host:22/path user@mail no://colon@here"
    try:
        raise ConnectionError("connect to postgresql://dt:hunter2@db:5432/dt refused")
    except ConnectionError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "unhandled error %s", ("ConnectionError",),
                                   sys.exc_info())
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "hunter2" not in line
    assert "Traceback" in entry["traceback"] and "ConnectionError" in entry["traceback"]
    assert entry["msg"] == "unhandled error ConnectionError"
