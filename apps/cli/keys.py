"""`dtrag keys create | list | revoke`: API keys; a key's secret is shown once, at creation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import typer
from rich.table import Column, Table

from apps.cli.common import console, emit, fail, print_json, with_runtime
from apps.core.api_keys import Scope, checked_bindings

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    scope: str = typer.Option(..., help="read | write | admin"),
    name: str = typer.Option("", help="a label for the key"),
    expires_in_days: float | None = typer.Option(None, help="expiry; default never"),
    rate_limit: int | None = typer.Option(None, help="requests a minute; default from settings"),
    collections: str = typer.Option("*", help="comma-separated collections it may use; * (default): every one"),
    groups: str = typer.Option("", help="comma-separated access groups: it sees documents carrying one of them"),
    as_json: bool = typer.Option(False, "--json", help='print {"id", "api_key", "scope", "collections", "groups"}'),
) -> None:
    """Create an API key; its secret is printed once."""
    if scope not in Scope.__members__:
        fail(f"--scope must be one of {', '.join(Scope.__members__)}")
    try:
        bound, carried = checked_bindings(_names(collections), _names(groups))
    except ValueError as exc:
        fail(str(exc))
    info, plaintext = with_runtime(lambda rt: rt.keys.create(
        Scope[scope], name=name, rate_limit_per_minute=rate_limit, collections=bound, groups=carried,
        expires_in=timedelta(days=expires_in_days) if expires_in_days else None))
    if as_json:
        print_json({"id": info.id, "api_key": plaintext, "scope": info.scope.name,
                    "collections": list(info.collections), "groups": list(info.groups)})
    else:
        console.print(f"id {info.id} scope {info.scope.name} collections {','.join(info.collections)}"
                      + (f" groups {','.join(info.groups)}" if info.groups else "")
                      + f"\n{plaintext}\n(shown once: store it now)")


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="print the keys as a JSON list")) -> None:
    """List API keys (never their secrets)."""
    keys = with_runtime(lambda rt: rt.keys.list())
    rows = [{"id": k.id, "name": k.name, "scope": k.scope.name, "collections": list(k.collections),
             "groups": list(k.groups), "active": k.active, "created_at": k.created_at,
             "expires_at": k.expires_at, "revoked_at": k.revoked_at} for k in keys]
    emit(rows, as_json, _show)


def _show(rows: list[dict[str, Any]]) -> None:
    table = Table(Column("id", no_wrap=True), "name", "scope", "collections", "groups", "active", "created", "expires",
                  "revoked")
    for k in rows:
        table.add_row(k["id"], k["name"], k["scope"], ",".join(k["collections"]), ",".join(k["groups"]),
                      "yes" if k["active"] else "no", str(k["created_at"])[:19],
                      str(k["expires_at"] or "")[:19], str(k["revoked_at"] or "")[:19])
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key; every worker refuses it from the next request on."""
    if not with_runtime(lambda rt: rt.keys.revoke(key_id)):
        fail(f"no API key with id {key_id!r}")
    console.print(f"revoked {key_id}")
