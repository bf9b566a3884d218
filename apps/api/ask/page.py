"""The Ask page's HTML shell and the files it loads: its own script and style, nothing from the network."""

from __future__ import annotations

from pathlib import Path
from string import Template

from apps import __version__

STATIC = Path(__file__).parent / "static"
# Only these files are served: a name from the URL never becomes a path on its own.
ASSETS = {"ask.js": "text/javascript", "ask.css": "text/css"}


def page() -> str:
    """The HTML shell (no data, so it needs no key); the version busts browser caches of the assets."""
    template = Template((Path(__file__).parent / "templates" / "ask.html").read_text(encoding="utf-8"))
    return template.substitute(version=__version__)
