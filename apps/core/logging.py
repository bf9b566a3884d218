"""Structured logs: one JSON object a line, with whatever `extra=` fields the caller passed, the
traceback of a logged exception, and credentials inside URLs masked everywhere."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from apps.core.redaction import redact_text

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        # Exception messages and tracebacks can quote connection strings: mask their passwords.
        return redact_text(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
