"""The suite's real model server: llama.cpp's HTTP server (xllamacpp) with the packaged Gemma 3 270M on
loopback, started once per test session by the same code `ANSWER_PROVIDER=local` and
`dtrag models serve-local` use. Tests talk to it over HTTP like to any OpenAI-compatible server.

Import the fixture into a test module: `from tests.support.llama_server import llama_server  # noqa: F401`.
"""

from __future__ import annotations

import pytest

from apps.core.config import load_settings
from apps.llm.factory import local_config
from apps.llm.local import LocalServer, local_server


@pytest.fixture(scope="session")
def llama_server() -> LocalServer:
    # The configuration the default settings give, so the `local` provider of a test runtime shares it.
    return local_server(local_config(load_settings()))
