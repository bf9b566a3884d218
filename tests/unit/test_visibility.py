"""The visibility predicate's object (SPEC-ACCESS-001): from a key, narrowed, met, digested; forwarded groups
only from a trusted proxy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.core.api_keys import KeyInfo, Scope, checked_bindings
from apps.core.visibility import (
    EVERYTHING,
    CollectionAccessError,
    Visibility,
    forwarded_groups,
    trusted_networks,
    visibility_of,
)


def key(scope: Scope, collections: tuple[str, ...] = ("*",), groups: tuple[str, ...] = ()) -> KeyInfo:
    return KeyInfo("k1", "test", scope, None, datetime.now(UTC), None, None, collections, groups)


def test_a_key_becomes_its_view() -> None:
    assert visibility_of(key(Scope.admin)) == EVERYTHING
    assert visibility_of(key(Scope.read)) == Visibility(None, frozenset())  # groupless: no grouped documents
    reader = visibility_of(key(Scope.read, ("a", "b"), ("x",)))
    assert reader == Visibility(frozenset({"a", "b"}), frozenset({"x"})) and reader.key_id == "k1"
    assert visibility_of(key(Scope.admin, ("a",))) == Visibility(frozenset({"a"}), None)
    # A trusted proxy's end-user groups narrow the key's, and bind an admin key too.
    assert visibility_of(key(Scope.read, groups=("x", "y")), frozenset({"y", "z"})).groups == {"y"}
    assert visibility_of(key(Scope.admin), frozenset({"z"})).groups == {"z"}


def test_the_predicate_in_python() -> None:
    view = Visibility(frozenset({"a"}), frozenset({"x"}))
    assert view.allows("a") and view.allows("a", ["x", "y"]) and not view.allows("a", ["y"])
    assert not view.allows("b") and not view.allows("b", ["x"])
    assert Visibility(None, None).allows("b", ["y"]) and not Visibility(None, frozenset()).allows("b", ["y"])


def test_narrowing_meeting_and_digests() -> None:
    view = Visibility(frozenset({"a", "b"}), frozenset({"x"}), "k1")
    assert view.narrowed(None) is view and view.narrowed([]) is view
    assert view.narrowed(["a"]) == Visibility(frozenset({"a"}), frozenset({"x"}))
    with pytest.raises(CollectionAccessError, match="'c'"):
        view.narrowed(["a", "c"])
    assert EVERYTHING.narrowed(["c"]).collections == {"c"}
    assert EVERYTHING.within(view) == view and view.within(Visibility(frozenset({"b", "c"}), None)) == \
        Visibility(frozenset({"b"}), frozenset({"x"}))
    # Stable, order-free, and blind to who is looking: the same view shares cached results.
    assert view.digest() == Visibility(frozenset({"b", "a"}), frozenset({"x"}), "k2").digest()
    assert len({EVERYTHING.digest(), Visibility(None, frozenset()).digest(), view.digest()}) == 3
    assert Visibility.from_json(view.to_json()) == view and Visibility.from_json(None) == EVERYTHING


def test_forwarded_groups_only_from_trusted_addresses() -> None:
    networks = trusted_networks("10.0.0.0/8, ::1/128")
    assert forwarded_groups(networks, "10.1.2.3", "finance, hr,bad group") == {"finance", "hr"}
    assert forwarded_groups(networks, "::1", "") == frozenset()  # a trusted proxy saying "no groups"
    assert forwarded_groups(networks, "192.168.1.1", "finance") is None
    assert forwarded_groups(networks, "10.1.2.3", None) is None
    assert forwarded_groups((), "10.1.2.3", "finance") is None
    with pytest.raises(ValueError):
        trusted_networks("10.0.0.0/33")


def test_key_bindings_are_checked() -> None:
    assert checked_bindings(None, None) == (["*"], [])
    assert checked_bindings(["b", "a", "a"], ["x"]) == (["a", "b"], ["x"])
    assert checked_bindings(["a", "*"], []) == (["*"], [])
    with pytest.raises(ValueError, match="collection name"):
        checked_bindings(["Bad Name"], None)
    with pytest.raises(ValueError, match="group name"):
        checked_bindings(None, ["no spaces"])
