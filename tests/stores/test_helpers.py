"""corosnap.save / corosnap.restore: snapshot into a store and back in one call.

The stand-ins for ``corosnap.dumps`` / ``corosnap.loads`` record how they were
called, so these tests run whether or not the real snapshot functions exist
yet; ``test_real_generator_round_trip`` uses the real ones when they do.
"""

from __future__ import annotations

from typing import Any

import pytest

import corosnap
from corosnap.stores import Conflict, MemoryStore, NotFound, Record, restore, save


@pytest.fixture
def fake_codec(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, dict[str, Any]]]:
    calls: list[tuple[str, Any, dict[str, Any]]] = []

    def dumps(obj: object, **kwargs: Any) -> bytes:
        calls.append(("dumps", obj, kwargs))
        return repr(obj).encode()

    def loads(data: bytes, **kwargs: Any) -> object:
        calls.append(("loads", data, kwargs))
        return ("loaded", data)

    monkeypatch.setattr(corosnap, "dumps", dumps, raising=False)
    monkeypatch.setattr(corosnap, "loads", loads, raising=False)
    return calls


def test_save_dumps_then_puts(fake_codec: list[Any]) -> None:
    store = MemoryStore()
    assert save(store, "wf/1", ["gen"], key=b"hmac-key") == 1
    assert fake_codec == [("dumps", ["gen"], {"key": b"hmac-key"})]
    assert store.get("wf/1") == Record(b"['gen']", 1)
    assert save(store, "wf/1", ["gen", 2]) == 2


def test_hmac_key_passes_through_to_dumps_and_loads(fake_codec: list[Any]) -> None:
    """``key=`` is the HMAC key of dumps/loads; the store key is positional-only."""
    store = MemoryStore()
    save(store, "wf/1", "gen", key=b"secret")
    restore(store, "wf/1", key=b"secret")
    assert [call[2] for call in fake_codec] == [{"key": b"secret"}, {"key": b"secret"}]


def test_save_with_expected_version_is_a_compare_and_set(fake_codec: list[Any]) -> None:
    store = MemoryStore()
    assert save(store, "wf/1", "a", expected_version=0) == 1
    with pytest.raises(Conflict) as info:
        save(store, "wf/1", "b", expected_version=0)
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert save(store, "wf/1", "c", expected_version=1) == 2
    assert store.get("wf/1") == Record(b"'c'", 2)


def test_save_leaves_the_store_alone_if_dumps_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def dumps(obj: object, **kwargs: Any) -> bytes:
        raise corosnap.SnapshotError("cannot capture")

    monkeypatch.setattr(corosnap, "dumps", dumps, raising=False)
    store = MemoryStore()
    with pytest.raises(corosnap.SnapshotError):
        save(store, "wf/1", object())
    assert list(store.keys()) == []


def test_restore_gets_then_loads(fake_codec: list[Any]) -> None:
    store = MemoryStore()
    store.put("wf/1", b"blob")
    assert restore(store, "wf/1", safe=True, allow=("m.f",)) == ("loaded", b"blob")
    assert fake_codec == [("loads", b"blob", {"safe": True, "allow": ("m.f",)})]


def test_restore_missing_key_raises_not_found(fake_codec: list[Any]) -> None:
    store = MemoryStore()
    with pytest.raises(NotFound) as info:
        restore(store, "wf/missing")
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, corosnap.CorosnapError)
    assert "'wf/missing'" in str(info.value) and "MemoryStore" in str(info.value)
    assert fake_codec == []  # loads was never called


def test_real_generator_round_trip() -> None:
    if not (hasattr(corosnap, "dumps") and hasattr(corosnap, "loads")):
        pytest.skip("corosnap.dumps/loads are not on this branch yet")

    def countdown(n: int) -> Any:
        while n:
            yield n
            n -= 1

    gen = countdown(3)
    assert next(gen) == 3
    store = MemoryStore()
    assert save(store, "countdown", gen) == 1
    assert list(restore(store, "countdown")) == [2, 1]
