"""The door from the lower layers to the composition root, for the runbooks' one-line entry points
(`get_pipeline()`, `get_q_learning()`).

Those functions live in the modules the runbooks import, below `apps/runtime.py`, and must not import
it: the root is found by name through the `dtrag.runtime` entry point that `pyproject.toml` declares,
the way a library finds the application that installed it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "dtrag.runtime"


def process_runtime() -> Any:
    """The process-wide runtime (engine, services, pipelines), built on first use."""
    found = entry_points(group=ENTRY_POINT_GROUP, name="default")
    if not found:
        raise RuntimeError(f"no {ENTRY_POINT_GROUP!r} entry point: install the project (`make install`)")
    get_runtime = next(iter(found)).load()
    return get_runtime()
