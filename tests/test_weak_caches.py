"""corosnap's caches hold code objects and modules weakly.

A process that creates modules at run time (plugins loaded and unloaded,
notebooks, tests that build modules) gets their memory back once it drops
them, even after snapshotting and restoring their generators: nothing in
corosnap's caches keeps a module, its code objects or its functions alive.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from typing import Any

import corosnap
from corosnap.snapshot._api import default

SOURCE = '''
import dataclasses

REGISTRY = []          # a module-level mutable value: stored by reference

@dataclasses.dataclass
class Point:           # a class: stored by name
    x: int
    y: int

SETTINGS = Point(7, 7)  # a module-level instance: in the module's index, by reference

def helper(items):
    total = 0
    for item in items:
        total += item
        got = yield total
        REGISTRY.append(got)
    return total

def job(items):
    origin = Point(0, 0)
    settings = SETTINGS
    log = REGISTRY
    fn = helper
    doubled = yield from (x * 2 for x in items)   # a nested code
    result = yield from helper(items)
    return origin, log, fn, doubled, result
'''


def _make(k: int) -> types.ModuleType:
    name = f"_corosnap_dynamic_{k}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(SOURCE, f"<{name}>", "exec"), module.__dict__)
    return module


def _cache_sizes(snapshotter: Any) -> tuple[int, int]:
    return len(snapshotter._caches.capture_codes), len(snapshotter._caches.restore_codes)


def test_200_dynamic_modules_snapshotted_restored_and_dropped_are_freed() -> None:
    snapshotter = corosnap.Snapshotter(key=b"k")  # an instance of its own, beside the default
    gc.collect()
    before = (_cache_sizes(default()), _cache_sizes(snapshotter))
    refs: list[weakref.ref[Any]] = []
    for k in range(200):
        module = _make(k)
        g = module.job([1, 2, 3])
        next(g)
        next(g)
        blob = corosnap.dumps(g)
        restored = corosnap.loads(blob)
        assert restored.send(None) == 6  # the generator expression resumed (2, 4, then 6)
        signed = snapshotter.dumps(g)
        again = snapshotter.loads(signed)
        assert again.send(None) == 6
        assert restored.gi_frame.f_locals["settings"] is module.SETTINGS
        refs += [weakref.ref(module), weakref.ref(module.job.__code__),
                 weakref.ref(module.helper), weakref.ref(module.Point),
                 weakref.ref(module.SETTINGS)]
        g.close()
        restored.close()
        again.close()
        del sys.modules[module.__name__]
        del module, g, restored, again
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"{len(alive)} objects of dropped modules are still alive: {alive[:4]}"
    assert (_cache_sizes(default()), _cache_sizes(snapshotter)) == before


def test_a_module_reloaded_under_the_same_name_gets_fresh_cache_entries() -> None:
    first = _make(1000)
    g = first.job([5])
    next(g)
    blob = corosnap.dumps(g)
    g.close()
    corosnap.loads(blob).close()  # cached for `first`
    del sys.modules[first.__name__]
    second = _make(1000)  # same name, same code: the cache must not serve `first`'s entry
    restored = corosnap.loads(blob)
    assert restored.gi_frame.f_globals is second.__dict__
    restored.close()
    ref = weakref.ref(first)
    del first
    gc.collect()
    assert ref() is None
    restored = corosnap.loads(blob)  # the entry of `second` survived `first`'s death
    assert restored.gi_frame.f_globals is second.__dict__
    restored.close()
    del sys.modules[second.__name__]


def test_entries_the_c_engine_found_again_still_go_with_their_module() -> None:
    """The C restore stores a cache entry again under the key it keeps (an
    equal tuple): after several loads, the entry still goes when its module
    dies, and the module is freed."""
    gc.collect()
    before = _cache_sizes(default())
    module = _make(3000)
    g = module.job([1, 2, 3])
    next(g)
    next(g)
    blob = corosnap.dumps(g)
    g.close()
    for _ in range(4):  # found by the Python engine, then kept and found by the C one
        restored = corosnap.loads(blob)
        assert restored.send(None) == 6
        restored.close()
    data = default()._caches.restore_codes.data
    owner = default()._caches.restore_codes._owner
    assert set(data) <= set(owner)
    ref = weakref.ref(module)
    del sys.modules[module.__name__]
    del module, g, restored
    gc.collect()
    assert ref() is None
    assert _cache_sizes(default()) == before


class _Sentinel:
    pass


def test_a_dropped_snapshotter_is_freed_with_its_caches_after_c_captures() -> None:
    """The C capture keeps the records of the frames it captured lately
    (process-wide): what it keeps is a copy that refers to nothing of the
    Snapshotter, whose caches (and whatever they hold) go with it."""
    mod = types.ModuleType("corosnap_test_dropped_snapshotter")
    sys.modules[mod.__name__] = mod
    try:
        exec(SOURCE, mod.__dict__)
        snapshotter = corosnap.Snapshotter()
        gen = mod.job([1, 2, 3])
        next(gen)
        for _ in range(3):  # the first by the Python engine, then by the C engine
            snapshotter.dumps(gen)
        sentinel = _Sentinel()
        probe = weakref.ref(sentinel)
        snapshotter._caches.capture_codes.data[-1] = sentinel
        del sentinel, snapshotter
        gc.collect()
        assert probe() is None, "the dropped Snapshotter's code cache is still alive"
        gen.close()
    finally:
        del sys.modules[mod.__name__]


class _NameHolding(str):
    """A module __name__ that holds something (a str subclass can)."""

    hold: Any = None


def test_a_module_name_holding_its_globals_does_not_keep_them_alive() -> None:
    """A code whose globals' __name__ is a str subclass holding the globals:
    nothing the C capture keeps refers to such a name, so the module, its
    code and its globals are freed once dropped with the Snapshotter (whose
    code cache holds the name while the code lives, on both engines)."""
    name = "corosnap_test_name_holding"
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    exec(SOURCE, mod.__dict__)
    snapshotter = corosnap.Snapshotter()
    gen = mod.job([1, 2, 3])
    next(gen)
    snapshotter.dumps(gen)
    held = _NameHolding(name + "_renamed")  # described again, under this name
    held.hold = mod.__dict__
    mod.__dict__["__name__"] = held
    for _ in range(3):  # described again for the new name, then by the C engine
        snapshotter.dumps(gen)
    probe = weakref.ref(mod.job.__code__)
    gen.close()
    del sys.modules[name]
    del mod, gen, held, snapshotter
    gc.collect()
    assert probe() is None, "the module's code is still alive"


MIGRATED_SOURCE = '''
def job(items):
    total = 0
    for item in items:
        total += item
        yield total
    return total
'''

EDITED_SOURCE = '''
def job(items):
    total = 0
    for item in items:
        total += item
        yield total
        seen = total   # a new local, assigned before any read: the frame migrates
    return total
'''


def test_50_dynamic_modules_migrated_and_dropped_are_freed() -> None:
    """Migration's bytecode analyses (the suspension shapes of the old and the
    new code, the new code's assignment graph) are cached per code object:
    the code of modules created, snapshotted with ``migratable=True``, edited,
    restored with ``migrate=True`` and dropped is freed all the same."""
    from corosnap.bytecode import _assign, _identity

    gc.collect()
    before = (len(_identity._cache), len(_assign._cache))
    refs: list[weakref.ref[Any]] = []
    for k in range(50):
        name = f"_corosnap_migrated_{k}"
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(MIGRATED_SOURCE, f"<{name}>", "exec"), module.__dict__)
        g = module.job([1, 2, 3])
        assert next(g) == 1
        blob = corosnap.dumps(g, migratable=True)
        refs += [weakref.ref(module), weakref.ref(module.job.__code__)]
        exec(compile(EDITED_SOURCE, f"<{name}>", "exec"), module.__dict__)  # edited in place
        refs.append(weakref.ref(module.job.__code__))
        restored = corosnap.loads(blob, migrate=True)
        assert restored.gi_code is module.job.__code__  # moved onto the new code
        assert list(restored) == [3, 6]
        g.close()
        del sys.modules[name]
        del module, g, restored
    assert len(_identity._cache) > before[0] and len(_assign._cache) > before[1]  # were cached
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert not alive, f"{len(alive)} objects of dropped modules are still alive: {alive[:4]}"
    assert (len(_identity._cache), len(_assign._cache)) == before
