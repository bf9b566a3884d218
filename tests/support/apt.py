"""Debian packages the suite needs, installed once when missing. Test workers run in parallel, and
two `apt-get` runs at once fail on dpkg's lock, so installs take a file lock first."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


def ensure(package: str, installed: Callable[[], str | None]) -> str:
    """`installed()` gives the program's path or None; install `package` if it is None."""
    if path := installed():
        return path
    with open(Path(tempfile.gettempdir()) / "dtrag-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path := installed()):  # another worker may have installed it meanwhile
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env, capture_output=True)
            path = installed()
    if not path:
        raise RuntimeError(f"{package} is not installed and apt-get could not install it")
    return path
