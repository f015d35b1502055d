"""corosnap.save / corosnap.restore spell out dumps's and loads's keywords.

Each keyword has the name, annotation and default of the one it is passed to
(``snapshot/_api.py``), a misspelt keyword is a TypeError naming it, and every
option reaches ``dumps`` / ``loads``: most are shown by their effect on a real
snapshot, all by a spy wrapped round the real functions.  (That a wrong value
is a type error too is checked by ``make typecheck`` on
``tests/public_api_program.py``.)
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from pathlib import Path
from pickle import PickleBuffer
from typing import Any

import pytest

import corosnap
import corosnap.migrate
from corosnap.stores import MemoryStore, restore, save

SAVE_OPTIONS = ("key", "pickler", "buffer_callback", "migratable")
RESTORE_OPTIONS = ("key", "safe", "allow", "max_size", "buffers", "migrate", "manifests",
                   "migrations")
ALLOW = (__name__,)


def countdown(n: int) -> Generator[int, None, None]:
    while n:
        yield n
        n -= 1


def holding_a_local_class() -> Generator[Any, None, None]:
    class Local:  # not importable by name: only cloudpickle or dill can store it
        pass

    value = Local()
    yield 1
    yield type(value).__name__


def holding_big_bytes() -> Generator[Any, None, None]:
    data = b"x" * 5000  # at least 4 KiB: offered to buffer_callback
    yield len(data)
    yield data[:2]


def started(gen: Generator[Any, None, None]) -> Generator[Any, None, None]:
    next(gen)
    return gen


@pytest.mark.parametrize(("helper", "target", "names"), [
    (save, corosnap.dumps, SAVE_OPTIONS),
    (restore, corosnap.loads, RESTORE_OPTIONS),
])
def test_keywords_mirror_dumps_and_loads(helper: Any, target: Any, names: tuple[str, ...]) -> None:
    mine = inspect.signature(helper).parameters
    theirs = inspect.signature(target).parameters  # the C entries follow __wrapped__
    assert set(names) == {name for name, p in theirs.items() if p.kind is p.KEYWORD_ONLY}
    for name in names:
        assert mine[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert mine[name].annotation == theirs[name].annotation, name
        assert mine[name].default == theirs[name].default, name
    positional = [name for name, p in mine.items() if p.kind is p.POSITIONAL_ONLY]
    assert positional == (["store", "store_key", "gen"] if helper is save
                          else ["store", "store_key"])
    assert not any(p.kind is p.VAR_KEYWORD for p in mine.values())


def test_an_unknown_keyword_is_a_type_error_naming_it() -> None:
    store = MemoryStore()
    with pytest.raises(TypeError, match="sfae"):
        save(store, "wf/1", started(countdown(3)), sfae=True)  # type: ignore[call-arg]
    assert list(store.keys()) == []
    save(store, "wf/1", started(countdown(3)))
    with pytest.raises(TypeError, match="pickler"):
        restore(store, "wf/1", pickler="pickle")  # type: ignore[call-arg]
    # The store key is positional-only: key= is the HMAC key, never the store's.
    with pytest.raises(TypeError, match="store_key"):
        save(store, store_key="wf/1", gen=countdown(1))  # type: ignore[call-arg]


def test_pickler_reaches_dumps() -> None:
    store = MemoryStore()
    gen = started(holding_a_local_class())
    with pytest.raises(corosnap.SnapshotError, match="Local"):
        save(store, "wf/1", gen, pickler="pickle")
    with pytest.raises(ValueError, match="json"):
        save(store, "wf/1", gen, pickler="json")  # type: ignore[arg-type]
    assert list(store.keys()) == []
    save(store, "wf/1", gen, pickler="dill")
    assert next(restore(store, "wf/1")) == "Local"


def test_key_reaches_dumps_and_loads() -> None:
    store = MemoryStore()
    save(store, "wf/1", started(countdown(3)), key=b"secret")
    with pytest.raises(corosnap.SignatureError):
        restore(store, "wf/1", key=b"other")
    assert list(restore(store, "wf/1", key=b"secret")) == [2, 1]
    save(store, "wf/2", started(countdown(3)))
    with pytest.raises(corosnap.SignatureError, match="not signed"):
        restore(store, "wf/2", key=b"secret")


def test_migratable_reaches_dumps() -> None:
    store = MemoryStore()
    gen = started(countdown(3))
    save(store, "plain", gen)
    save(store, "described", gen, migratable=True)
    described = store.get("described")
    plain = store.get("plain")
    assert described is not None and plain is not None
    assert described.blob == corosnap.dumps(gen, migratable=True) != plain.blob


def test_buffer_callback_and_buffers_reach_dumps_and_loads() -> None:
    store = MemoryStore()
    bufs: list[PickleBuffer] = []
    save(store, "wf/1", started(holding_big_bytes()), buffer_callback=bufs.append)
    assert len(bufs) == 1
    record = store.get("wf/1")
    assert record is not None and len(record.blob) < 1000
    with pytest.raises(corosnap.CorruptSnapshot, match="buffers="):
        restore(store, "wf/1")
    assert next(restore(store, "wf/1", buffers=bufs)) == b"xx"


def test_safe_allow_and_max_size_reach_loads() -> None:
    store = MemoryStore()
    save(store, "wf/1", started(countdown(3)))
    save(store, "pickled", started(holding_a_local_class()))
    with pytest.raises(corosnap.UnsafeSnapshot, match="allow"):
        restore(store, "wf/1", safe=True)
    assert list(restore(store, "wf/1", safe=True, allow=ALLOW)) == [2, 1]
    with pytest.raises(corosnap.UnsafeSnapshot, match="fallback pickler"):
        restore(store, "pickled", safe=True, allow=ALLOW)
    with pytest.raises(corosnap.LimitExceeded, match="max_size=10"):
        restore(store, "wf/1", max_size=10)


def test_migrate_and_manifests_reach_loads(tmp_path: Path) -> None:
    store = MemoryStore()
    save(store, "wf/1", started(countdown(3)), migratable=True)
    missing = tmp_path / "missing-manifest.json"
    with pytest.raises(OSError):
        restore(store, "wf/1", migrate=True, manifests=missing)
    # Unchanged code restores as usual with migrate=True.
    assert list(restore(store, "wf/1", migrate=True,
                        migrations=corosnap.migrate.Migrations())) == [2, 1]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The real dumps/loads, recording the keywords each call is given."""
    calls: list[tuple[str, dict[str, Any]]] = []
    real_dumps, real_loads = corosnap.dumps, corosnap.loads

    def dumps(obj: object, **kwargs: Any) -> bytes:
        calls.append(("dumps", kwargs))
        return real_dumps(obj, **kwargs)

    def loads(data: bytes, **kwargs: Any) -> Any:
        calls.append(("loads", kwargs))
        return real_loads(data, **kwargs)

    monkeypatch.setattr(corosnap, "dumps", dumps)
    monkeypatch.setattr(corosnap, "loads", loads)
    return calls


def test_every_option_given_is_passed_on(spy: list[tuple[str, dict[str, Any]]]) -> None:
    store = MemoryStore()
    bufs: list[PickleBuffer] = []
    migrations = corosnap.migrate.Migrations()
    dumps_options: dict[str, Any] = {"key": b"k", "pickler": "dill",
                                     "buffer_callback": bufs.append, "migratable": True}
    loads_options: dict[str, Any] = {"key": b"k", "safe": True, "allow": ALLOW,
                                     "max_size": 1 << 20, "buffers": bufs, "migrate": True,
                                     "manifests": [], "migrations": migrations}
    save(store, "wf/1", started(countdown(3)), **dumps_options)
    assert list(restore(store, "wf/1", **loads_options)) == [2, 1]
    assert spy == [("dumps", dumps_options), ("loads", loads_options)]


def test_options_left_at_their_defaults_are_not_passed_on(
        spy: list[tuple[str, dict[str, Any]]]) -> None:
    """``save(store, k, gen)`` is ``dumps(gen)`` (the C engine's fast entry),
    also when the defaults are given explicitly."""
    store = MemoryStore()
    save(store, "wf/1", started(countdown(3)))
    save(store, "wf/2", started(countdown(3)), key=None, pickler=None, buffer_callback=None,
         migratable=False)
    restore(store, "wf/1")
    loads_sig = inspect.signature(restore).parameters
    restore(store, "wf/2", **{name: loads_sig[name].default for name in RESTORE_OPTIONS})
    assert spy == [("dumps", {}), ("dumps", {}), ("loads", {}), ("loads", {})]


@pytest.mark.parametrize("helper, target", [(save, corosnap.dumps), (restore, corosnap.loads)],
                         ids=["save", "restore"])
def test_the_annotations_resolve_at_run_time_as_those_of_dumps_and_loads(
        helper: Any, target: Any) -> None:
    import typing

    hints = typing.get_type_hints(helper)
    target_hints = typing.get_type_hints(getattr(target, "__wrapped__", target))
    shared = [name for name in hints if name in target_hints and name != "return"]
    assert "key" in shared and len(shared) >= 4, shared
    for name in shared:
        assert hints[name] == target_hints[name], name
