"""`dtrag models serve-local`: llama.cpp's own server with the packaged GGUF model, for a user who
wants a fully local answer model (other processes point ANSWER_PROVIDER=openai at it)."""

from __future__ import annotations

import typer

from apps.cli.common import console
from apps.core.config import get_settings

models_app = typer.Typer(help="Model servers.", no_args_is_help=True)


@models_app.command("serve-local")
def serve_local_cmd(host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
                    port: int = typer.Option(8081, help="port to serve on")) -> None:
    """Serve the packaged local model over the OpenAI chat API until Ctrl-C."""
    from apps.llm.factory import local_config
    from apps.llm.local import serve_local

    def ready(server) -> None:  # noqa: ANN001 - apps.llm.local.LocalServer
        console.print(f"serving {server.model} at {server.url}\n"
                      f"use it with: ANSWER_PROVIDER=openai LLM_BASE_URL={server.url} LLM_MODEL={server.model}")

    try:
        serve_local(local_config(get_settings(), host, port), on_ready=ready)
    except KeyboardInterrupt:
        pass
