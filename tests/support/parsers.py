"""A parse function for `DocumentParser` tests that misbehaves on request, by the file's stem. It runs
in the parser's worker process, so it lives in a module the worker can import."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from apps.ingestion.documents import SourceDocument
from apps.ingestion.parsing import parse_file


def misbehaving(name: str, data: bytes, max_bytes: int, fields: dict[str, Any]) -> list[SourceDocument]:
    stem = Path(name).stem
    if stem == "slow":  # a parse that would never end in time (a pathological PDF, say)
        time.sleep(600)
    elif stem == "exit":  # the worker dies on its own (a native parser's abort)
        os._exit(3)
    elif stem == "killed":  # the worker is killed (the OOM killer)
        os.kill(os.getpid(), signal.SIGKILL)
    elif stem == "pid":  # which process parses
        return [SourceDocument(text=str(os.getpid()), title="pid", origin=name)]
    return parse_file(name, data, max_bytes, fields)
