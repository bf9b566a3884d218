"""The process that supervises this worker, when one can replace it without dropping requests.

`dtrag serve --workers N` (N ≥ 2) runs uvicorn's multiprocess supervisor: it spawns the workers with
multiprocessing and, on SIGHUP, replaces them one at a time, each new worker serving before the old
one is told to stop (SIGTERM: it stops accepting, finishes its in-flight requests, then exits). A
single-process server (`--workers 1`, plain `uvicorn`) has no supervisor: nothing could take over
while it restarts.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys

import psutil


def supervisor_pid() -> int | None:
    """uvicorn's supervisor when this process is one of its workers, else None."""
    parent = multiprocessing.parent_process()
    # A spawned multiprocessing child (its parent is known) of a process running uvicorn: its
    # supervisor, the only multiprocessing parent uvicorn has.
    if parent is None or parent.pid != os.getppid() or "uvicorn.supervisors.multiprocess" not in sys.modules:
        return None
    return parent.pid


def workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes now (not multiprocessing's resource tracker, also its child)."""
    found = []
    try:
        for child in psutil.Process(supervisor).children():
            try:
                if any("spawn_main" in part for part in child.cmdline()):
                    found.append(child.pid)
            except psutil.Error:  # exited meanwhile
                continue
    except psutil.Error:
        return []
    return sorted(found)


def rolling_restart(supervisor: int) -> None:
    os.kill(supervisor, signal.SIGHUP)
