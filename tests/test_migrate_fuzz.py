"""Hostile signatures and manifests: migration never writes a frame a restore would refuse.

A blob's signature table and a manifest are untrusted input that *steers*
migration: which old slot is which local, which new suspension point the
frame resumes at.  A forged one may make migration pick a wrong (but real)
resume point; it must never get a frame past the checks of a normal restore.

* Every migrated frame is written by ``_restore.check_and_write``, the gate of
  every restored frame (counted with a spy).
* Thousands of forged tables and manifests (mutations of real ones: names
  shuffled, renamed, duplicated, cells and free counts changed, stack labels,
  keys, ordinals and offsets altered, points copied from other codes, random
  JSON) are loaded in forked children.  Each must end in a ``CorosnapError``
  or in a generator that a *plain* snapshot and restore on the same code
  accepts, and that survives being resumed, thrown into, closed and
  collected.  A child killed by a signal is a failure.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import random
import signal
import sys
import traceback
from typing import Any

import msgpack
import pytest

import corosnap
from _evolve import install
from corosnap.migrate import Manifest
from corosnap.snapshot import _migrate

INPUTS = int(os.environ.get("COROSNAP_MIGRATE_FUZZ_INPUTS", "1500"))

PAIRS: list[tuple[str, str, str, tuple, int]] = [
    ("""
def job(items, path=None):
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
""", """
def job(items, path=None):
    total = 0
    extra = [0]
    for x in items:
        total += x
        got = yield total
        extra.append(got)
    return total, extra
""", "job", ([1, 2, 3],), 2),
    ("""
import contextlib
def job(n):
    acc = []
    with contextlib.nullcontext(acc) as a:
        for i in range(n):
            try:
                raise KeyError(i)
            except KeyError as e:
                got = yield (i, acc, e)
                acc.append(got)
    return acc
""", """
import contextlib
def job(n):
    acc = []
    with contextlib.nullcontext(acc) as a:
        for i in range(n):
            try:
                raise KeyError(i)
            except KeyError as e:
                got = yield (i, acc, e)
                acc.append((got, len(acc)))
    return acc
""", "job", (3,), 2),
    ("""
class Step:
    def __init__(self, v):
        self.v = v
    def __await__(self):
        return (yield self.v)

async def leaf(x):
    return [await Step(i) for i in range(x)]

async def top(x):
    n = 1
    def bump():
        nonlocal n
        n += 1
    r = await leaf(x)
    bump()
    return r, n
""", """
class Step:
    def __init__(self, v):
        self.v = v
    def __await__(self):
        return (yield self.v)

async def leaf(x):
    return [await Step(i) for i in range(x)]

async def top(x):
    n = 1
    def bump():
        nonlocal n
        n += 10
    r = await leaf(x)
    bump()
    return r, n, "v2"
""", "top", (3,), 2),
    ("""
def helper(k):
    for i in range(k):
        got = yield i
    return k

def job(a, *rest, key=1, **kw):
    f = lambda v: v + key
    r = yield from helper(a)
    s = yield f(r)
    return r, s, rest, kw
""", """
def helper(k):
    for i in range(k):
        got = yield i
    return k * 2

def job(a, *rest, key=1, **kw):
    f = lambda v: v + key
    r = yield from helper(a)
    s = yield f(r)
    return r, s, rest, kw, "v2"
""", "job", (3, 4, 5), 2),
]

MOD = "migfuzz_mod"


def _real_inputs() -> list[tuple[int, bytes, dict[str, Any]]]:
    """(pair index, migratable blob, old manifest JSON) at every suspension of every pair."""
    out = []
    for p, (old, _new, fn, args, _steps) in enumerate(PAIRS):
        for k in range(0, 6):
            m = install(MOD, old)
            gen = getattr(m, fn)(*args)
            try:
                for _ in range(k):
                    gen.send(None)
            except StopIteration:
                break
            out.append((p, corosnap.dumps(gen, migratable=True),
                        Manifest.of_module(m).to_json()))
            gen.close()
    sys.modules.pop(MOD, None)
    return out


def _new_manifest(p: int) -> dict[str, Any]:
    return Manifest.of_module(install(MOD, PAIRS[p][1])).to_json()


# -- mutations ------------------------------------------------------------------------------

def _rand_value(r: random.Random) -> Any:
    return r.choice([None, 0, 1, -1, 2**31, 2**32, 2**64 - 1, "x", "", "total", [], {}, [0],
                     {"a": 1}, True, 1.5, b"b", r.randrange(2**32), [r.randrange(2**32)]])


def _mutate_tree(r: random.Random, v: Any, depth: int = 0) -> Any:
    """A random structural mutation somewhere in a msgpack-shaped tree."""
    if depth > 6 or r.random() < 0.2:
        return _rand_value(r) if r.random() < 0.5 else v
    if type(v) is list and v:
        v = list(v)
        i = r.randrange(len(v))
        op = r.random()
        if op < 0.6:
            v[i] = _mutate_tree(r, v[i], depth + 1)
        elif op < 0.7:
            del v[i]
        elif op < 0.8:
            v.insert(i, _rand_value(r))
        elif op < 0.9:
            r.shuffle(v)
        else:
            v.append(v[i])
        return v
    if type(v) is dict and v:
        v = dict(v)
        k = r.choice(list(v))
        op = r.random()
        if op < 0.6:
            v[k] = _mutate_tree(r, v[k], depth + 1)
        elif op < 0.75:
            del v[k]
        elif op < 0.9:
            nk = _rand_value(r) if r.random() < 0.3 else (
                k + r.choice([-2, -1, 1, 2, 17]) if type(k) is int else k + "x")
            try:
                v[nk] = v.pop(k)
            except TypeError:
                pass
        else:
            other = r.choice(list(v))
            v[k], v[other] = v[other], v[k]
        return v
    if type(v) is int and type(v) is not bool:
        return r.choice([v ^ (1 << r.randrange(32)), v + 1, v - 1, 0, v * 2, -v])
    if type(v) is str:
        return r.choice([v + "_", v[::-1], "", "total", "x"])
    return _rand_value(r)


def _names_attack(r: random.Random, table: list[Any]) -> list[Any]:
    """Targeted: names shuffled / swapped with a neighbour code's, cells and free counts."""
    table = [list(x) if type(x) is list else x for x in table]
    live = [i for i, x in enumerate(table) if type(x) is list and len(x) == 6]
    if not live:
        return table
    i = r.choice(live)
    sig = table[i]
    names = list(sig[1])
    op = r.randrange(6)
    if op == 0:
        r.shuffle(names)
    elif op == 1 and names:
        names[r.randrange(len(names))] = r.choice(["total", "x", "acc", "n", "zz", "e", "r"])
    elif op == 2:
        sig[2] = r.randrange(1 << max(len(names), 1))  # cells mask
    elif op == 3:
        sig[3] = r.randrange(len(names) + 1)  # free count
    elif op == 4 and len(live) > 1:
        j = r.choice(live)
        table[i], table[j] = table[j], table[i]
        return table
    else:
        sig[4] = r.choice([0, 32, 128, 256, 512, 32 | 256])  # flags
    sig[1] = names
    return table


def _point_attack(r: random.Random, table: list[Any], new_points: list[Any]) -> list[Any]:
    """Targeted: an old point replaced by a real point of the *new* code (a
    valid-looking description leading to another real resume point)."""
    table = [list(x) if type(x) is list else x for x in table]
    live = [i for i, x in enumerate(table) if type(x) is list and len(x) == 6
            and type(x[5]) is dict and x[5]]
    if not live or not new_points:
        return table
    i = r.choice(live)
    points = dict(table[i][5])
    off = r.choice(list(points))
    points[off] = r.choice(new_points)
    table[i][5] = points
    return table


def _new_points(p: int) -> list[Any]:
    from corosnap.snapshot._signature import point_from_json, point_to_blob

    out = []
    for funcs in _new_manifest(p)["modules"].values():
        for versions in funcs.values():
            for entry in versions.values():
                for pt in entry["points"].values():
                    out.append(point_to_blob(point_from_json(pt)))
    return out


def _forge(r: random.Random, p: int, blob: bytes, manifest: dict[str, Any],
           new_points: list[Any]) -> tuple[bytes, dict[str, Any] | None]:
    """One hostile (blob, manifest) pair derived from a real one."""
    tree = msgpack.unpackb(blob, strict_map_key=False, raw=False)
    choice = r.randrange(6)
    man: dict[str, Any] | None = None
    if choice == 0:
        tree[1] = _mutate_tree(r, tree[1])
    elif choice == 1:
        tree[1] = _names_attack(r, tree[1])
    elif choice == 2:
        tree[1] = _point_attack(r, tree[1], new_points)
    elif choice == 3:
        tree[1] = [None] * len(tree[1])  # no table: the manifest decides
        man = _mutate_tree(r, manifest)
    elif choice == 4:
        # The new code's own manifest, filed under the old fingerprints.
        tree[1] = [None] * len(tree[1])
        new = _new_manifest(p)
        man = json.loads(json.dumps(manifest))
        for mod, funcs in man["modules"].items():
            for q, versions in funcs.items():
                replacement = list(new["modules"].get(mod, {}).get(q, {}).values())
                for fp in list(versions):
                    if replacement:
                        versions[fp] = r.choice(replacement)
    else:
        tree[1] = _names_attack(r, _point_attack(r, tree[1], new_points))
    packed = msgpack.packb(tree, use_bin_type=True)
    return packed, man


# -- running in forked children ------------------------------------------------------------

def _exercise(gen: Any) -> None:
    """What a hostile frame must survive: a plain round trip, running, throwing, closing."""
    again = corosnap.loads(corosnap.dumps(gen))  # a normal restore accepts the migrated frame
    r = random.Random(len(repr(type(gen))))
    for g in (gen, again):
        try:
            for _ in range(3):
                g.send(None if r.random() < 0.7 else 1)
            g.throw(KeyError("fuzz"))
        except (StopIteration, Exception):  # noqa: BLE001 - the frame's own business
            pass
        try:
            g.close()
        except Exception:  # noqa: BLE001
            pass


def _child(cases: list[tuple[bytes, Any]], w: int) -> None:
    results = []
    for n, (blob, man) in enumerate(cases):
        if n % 25 == 0:
            gc.collect()  # a crash in a finalizer shows within 25 inputs
        try:
            gen = corosnap.loads(blob, migrate=True,
                                 manifests=None if man is None else Manifest.from_json(man))
        except corosnap.CorosnapError:
            results.append("rejected")
            continue
        except Exception:  # noqa: BLE001 - a non-corosnap exception escaped loads
            results.append("other: " + traceback.format_exc(limit=3))
            continue
        try:
            _exercise(gen)
            results.append("restored")
        except corosnap.CorosnapError as exc:
            results.append(f"roundtrip refused: {exc!r}")
    gc.collect()
    os.write(w, pickle.dumps(results))


def _run_forked(cases: list[tuple[bytes, Any]]) -> list[str]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code = 0
        try:
            install(MOD, PAIRS[_CURRENT[0]][1])
            _child(cases, w)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise AssertionError(f"child killed by signal {signal.Signals(os.WTERMSIG(status)).name}")
    assert os.WEXITSTATUS(status) == 0, "child failed"
    return pickle.loads(data)


_CURRENT = [0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forged_signatures_and_manifests_never_get_past_the_restore_checks():
    real = _real_inputs()
    r = random.Random(20260501)
    counts: dict[str, int] = {}
    per_pair = max(1, INPUTS // len(PAIRS))
    for p in range(len(PAIRS)):
        _CURRENT[0] = p
        new_points = _new_points(p)
        mine = [(b, m) for q, b, m in real if q == p]
        cases = []
        for _ in range(per_pair):
            blob, man = r.choice(mine)
            cases.append(_forge(r, p, blob, man, new_points))
        for start in range(0, len(cases), 250):
            for outcome in _run_forked(cases[start:start + 250]):
                key = outcome.split(":")[0]
                counts[key] = counts.get(key, 0) + 1
                assert key in ("rejected", "restored"), outcome
    sys.modules.pop(MOD, None)
    # The forgeries are not all refused at the door: some migrate to real points.
    assert counts.get("restored", 0) > 0 and counts.get("rejected", 0) > 0, counts
    print("forged migration inputs:", counts)


def test_every_migrated_frame_passes_through_the_restore_gate(monkeypatch):
    calls = []
    real_gate = _migrate.write_frame

    def gate(dec, entry, plan, pos, slots, exc, gen, root, fresh_sub):
        calls.append(entry.label)
        return real_gate(dec, entry, plan, pos, slots, exc, gen, root, fresh_sub)

    monkeypatch.setattr(_migrate, "write_frame", gate)
    old, new, fn, args, steps = PAIRS[2]
    m = install(MOD, old)
    gen = getattr(m, fn)(*args)
    for _ in range(steps):
        gen.send(None)
    blob = corosnap.dumps(gen, migratable=True)
    install(MOD, new)
    try:
        restored = corosnap.loads(blob, migrate=True)
    finally:
        sys.modules.pop(MOD, None)
    assert calls == [f"{MOD}.top()"]  # top changed; leaf's frames are unchanged
    restored.close()


def test_random_json_is_not_a_manifest():
    r = random.Random(5)
    for _ in range(300):
        junk = _mutate_tree(r, {"corosnap_manifest": 1, "python": f"3.{sys.version_info[1]}",
                                "modules": {"m": {"f": {"00": {"names": ["a"]}}}}})
        try:
            Manifest.from_json(junk)
        except corosnap.CorruptSnapshot:
            pass
