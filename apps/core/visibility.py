"""What a request may see: the one predicate over documents, built in one function from the API key.

A document is visible when its collection is one the viewer may use and, if it carries access groups,
the viewer shares one of them (or is not bound by groups: an admin key, or the operator's own process).
`visibility_of` turns a key (and an authenticating proxy's end-user groups) into a `Visibility`; every
read of the corpus takes one: the store's search legs, hydration, document reads and deletes, the
taxonomy, jobs, the search cache key. `sql` renders it over `documents d` for both backends, `allows`
is the same predicate in Python (tests check every hit against it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Collection as Sized
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

ALL = "*"  # a key's collections: every one, present and future
DEFAULT_COLLECTION = "default"
COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,99}$")
FORWARDED_GROUPS_HEADER = "x-forwarded-groups"
MAX_FORWARDED_GROUPS = 100


class CollectionAccessError(PermissionError):
    """A request named collections its key may not use (HTTP 403)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        super().__init__(f"this key may not use collection{'s' if len(self.names) > 1 else ''} "
                         + ", ".join(repr(n) for n in self.names))


@dataclass(frozen=True)
class Visibility:
    """`collections` None: every collection; `groups` None: not bound by access groups (a document's
    groups do not hide it). `key_id` names the viewer (decisions and feedback are kept per key); it is
    not part of what is visible, so two keys with the same view share cached results."""

    collections: frozenset[str] | None
    groups: frozenset[str] | None
    key_id: str | None = field(default=None, compare=False)

    @property
    def everything(self) -> bool:
        return self.collections is None and self.groups is None

    def allows(self, collection: str, groups: Iterable[str] = ()) -> bool:
        """The predicate, in Python: may this viewer see a document of `collection` carrying `groups`?"""
        if self.collections is not None and collection not in self.collections:
            return False
        document_groups = set(groups)
        return self.groups is None or not document_groups or bool(document_groups & self.groups)

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def covers(self, collections: Iterable[str]) -> bool:
        """Every one of `collections` is the viewer's (`*`, the whole corpus: only for a viewer of every one).
        What decides whether a job, which writes to its collections, is the viewer's."""
        wanted = set(collections)
        return self.collections is None or (ALL not in wanted and wanted <= self.collections)

    def narrowed(self, requested: Sized[str] | None) -> Visibility:
        """Only the `requested` collections (None or empty: no narrowing); CollectionAccessError for one the
        viewer may not use. Whether the collections exist is the caller's check."""
        if not requested:
            return self
        wanted = frozenset(requested)
        if self.collections is not None and not wanted <= self.collections:
            raise CollectionAccessError(wanted - self.collections)
        return Visibility(wanted, self.groups, self.key_id)

    def within(self, outer: Visibility) -> Visibility:
        """What both this and `outer` allow: an explicit visibility can narrow a request's, never widen it."""
        collections = _meet(self.collections, outer.collections)
        groups = _meet(self.groups, outer.groups)
        return Visibility(collections, groups, self.key_id or outer.key_id)

    def digest(self) -> str:
        """A stable digest of what is visible (the search cache's key includes it)."""
        payload = json.dumps([sorted(self.collections) if self.collections is not None else ALL,
                              sorted(self.groups) if self.groups is not None else ALL], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        """What a job stores of its submitter's view (`from_json` reads it back)."""
        return {"collections": sorted(self.collections) if self.collections is not None else [ALL],
                "groups": sorted(self.groups) if self.groups is not None else [ALL], "key_id": self.key_id}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Visibility:
        if not data:
            return EVERYTHING
        collections, groups = data.get("collections") or [ALL], data.get("groups") or []
        return cls(None if ALL in collections else frozenset(collections),
                   None if ALL in groups else frozenset(groups), data.get("key_id"))

    def sql(self, dialect: str) -> tuple[str, dict[str, Any], list[str]]:
        """SQL over `documents d`: (condition or "", parameters, names of expanding parameters)."""
        parts: list[str] = []
        params: dict[str, Any] = {}
        expanding: list[str] = []
        if self.collections is not None:
            parts.append("d.collection_id IN (SELECT vc.id FROM collections vc WHERE vc.name IN :v_collections)")
            params["v_collections"] = sorted(self.collections) or [""]  # IN () is not SQL; "" names none
            expanding.append("v_collections")
        if self.groups is not None:
            unrestricted = "NOT d.restricted" if dialect == "postgresql" else "d.restricted = 0"
            if self.groups:
                parts.append(f"({unrestricted} OR EXISTS (SELECT 1 FROM document_groups vg "
                             "WHERE vg.document_id = d.id AND vg.name IN :v_groups))")
                params["v_groups"] = sorted(self.groups)
                expanding.append("v_groups")
            else:
                parts.append(unrestricted)
        return " AND ".join(parts), params, expanding


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    return a if b is None else a & b


# The operator's own view: the CLI, the benches, the runbooks' Python API (no key, no request).
EVERYTHING = Visibility(None, None)

# The view of the request being served, set by the API's one key check (`apps.api.deps.authorize`) and
# inherited by every task the request starts: a search that was handed no visibility runs with it, and one
# that was handed one runs with no more than it (`effective`).
request_visibility: ContextVar[Visibility | None] = ContextVar("request_visibility", default=None)


def effective(explicit: Visibility | None) -> Visibility:
    """What a read may see: `explicit` within the current request's view; the request's view when none is
    given; outside any request (no key: the CLI, a bench), `explicit` or everything."""
    request = request_visibility.get()
    if explicit is None:
        return request if request is not None else EVERYTHING
    return explicit if request is None else explicit.within(request)


def visibility_of(key: Any, forwarded_groups: frozenset[str] | None = None) -> Visibility:
    """THE function from an authenticated key to what it may see. `key` is an `apps.core.api_keys.KeyInfo`
    (its scope, collections, groups); `forwarded_groups` are an end user's groups an authenticating proxy
    sent (see `forwarded_groups`): they narrow the key's own, and bind even an admin key to them."""
    collections = None if ALL in key.collections else frozenset(key.collections)
    groups = None if key.sees_every_group else frozenset(key.groups)
    if forwarded_groups is not None:
        groups = forwarded_groups if groups is None else groups & forwarded_groups
    return Visibility(collections, groups, key.id)


def trusted_networks(cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """TRUSTED_PROXY_CIDRS parsed (ValueError for a malformed one)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs.split(",") if c.strip())


def forwarded_groups(networks: tuple[Any, ...], peer: str | None, header: str | None) -> frozenset[str] | None:
    """The end user's groups from X-Forwarded-Groups, only when the request came from a trusted proxy;
    None otherwise (the header of anyone else is ignored). A trusted proxy that sends no header leaves
    the key's groups as they are; an empty header means "no groups"."""
    if header is None or not networks or not peer:
        return None
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    if not any(address in n for n in networks):
        return None
    names = [g.strip() for g in header.split(",") if g.strip()][:MAX_FORWARDED_GROUPS]
    return frozenset(g for g in names if GROUP_NAME.match(g))
