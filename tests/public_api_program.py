"""A small program written against corosnap's public API, as a user would.

``make typecheck`` runs ``mypy --strict`` on it (the package's own annotations
must let a strictly typed program use dumps, loads, save, restore, the stores,
the scheduler and corosnap.pickling without casts), and
``tests/test_public_api_program.py`` runs it.  The ``# type: ignore[...]``
lines are calls that must stay type errors: mypy's ``warn_unused_ignores``
(part of ``--strict``) fails if one stops being an error.
"""

from __future__ import annotations

import pickle
from collections.abc import Generator
from pathlib import Path
from typing import Any, assert_type

import corosnap
import corosnap.migrate
import corosnap.pickling
from corosnap.scheduler import RunStatus, Scheduler, Stats, call, gather, sleep
from corosnap.stores import DirectoryStore, MemoryStore, Record, SQLiteStore, Store


def running_total(items: list[int]) -> Generator[int, int | None, int]:
    total = 0
    for x in items:
        total += x
        extra = yield total
        if extra is not None:
            total += extra
    return total


def snapshots() -> int:
    gen = running_total([1, 2, 3])
    assert next(gen) == 1
    blob: bytes = corosnap.dumps(gen, pickler="dill", key=b"secret")
    again = corosnap.loads(blob, key=b"secret", safe=True, allow=("public_api_program",))
    assert again.send(10) == 13
    try:
        corosnap.dumps(gen, pickler="json")  # type: ignore[arg-type]
    except ValueError:
        pass
    else:
        raise AssertionError("pickler='json' was accepted")
    buffers: list[pickle.PickleBuffer] = []
    blob = corosnap.dumps(gen, buffer_callback=buffers.append)
    restored = corosnap.loads(blob, buffers=buffers)
    assert restored.send(None) == 3
    try:
        corosnap.loads(b"not a blob")
    except corosnap.CorruptSnapshot as exc:
        assert "not a" in str(exc)
    snap = corosnap.Snapshotter(pickler="pickle", key=b"k", safe=True,
                                allow=["public_api_program"])
    signed: bytes = snap.dumps(gen)
    assert snap.replace(safe=False).loads(signed).send(1) == 4
    try:
        corosnap.Snapshotter(pickler="json")  # type: ignore[arg-type]
    except ValueError:
        pass
    else:
        raise AssertionError("Snapshotter(pickler='json') was accepted")
    migrating = corosnap.Snapshotter(migratable=True).replace(
        migrate=True, migrations=corosnap.migrate.Migrations())
    described: bytes = migrating.dumps(gen)
    assert migrating.loads(described).send(1) == 4
    assert corosnap.loads(described, migrate=True, manifests=[]).send(1) == 4
    verdict: corosnap.migrate.Verdict = corosnap.migrate.check(described)
    assert verdict.status == "resumes"
    return len(blob)


def stores(directory: Path) -> list[str]:
    keys: list[str] = []
    backends: list[Store] = [MemoryStore(), DirectoryStore(directory / "snaps"),
                             SQLiteStore(directory / "snaps.db")]
    for store in backends:
        with store:
            gen = running_total([5, 0])
            next(gen)
            version = corosnap.save(store, "job/1", gen, key=b"k")
            assert_type(version, int)
            corosnap.save(store, "job/1", gen, expected_version=version, key=b"k")
            back = corosnap.restore(store, "job/1", key=b"k")
            assert back.send(1) == 6
            record = store.get("job/1")
            assert record is not None
            assert_type(record, Record)
            assert record.version == version + 1
            # save/restore take dumps's and loads's keywords, spelt out.
            corosnap.save(store, "job/1", gen, pickler="pickle", migratable=True,
                          buffer_callback=None, expected_version=record.version)
            again = corosnap.restore(store, "job/1", safe=True, allow=["public_api_program"],
                                     max_size=1 << 20, migrate=True, buffers=None)
            assert again.send(2) == 7
            try:
                corosnap.save(store, "job/1", gen, pickler="json")  # type: ignore[arg-type]
            except ValueError:
                pass
            else:
                raise AssertionError("save(pickler='json') was accepted")
            try:
                corosnap.restore(store, "job/1", sfae=True)  # type: ignore[call-arg]
            except TypeError as exc:
                assert "sfae" in str(exc)
            else:
                raise AssertionError("restore(sfae=True) was accepted")
            keys.extend(store.keys("job/"))
    return keys


sched = Scheduler(MemoryStore())


@sched.function(retries=2)
def double(x: int) -> int:
    return 2 * x


@sched.workflow
async def doubled_sum(xs: list[int]) -> int:
    first: int = await call(double, xs[0])
    rest: list[Any] = await gather(*(call(double, x) for x in xs[1:]))
    await sleep(0)
    return first + sum(int(v) for v in rest)


def workflows() -> int:
    run_id: str = sched.start(doubled_sum, [1, 2, 3])
    stats: Stats = sched.run_until_complete(timeout=60)
    assert stats is not None
    status: RunStatus = sched.status(run_id)
    assert status.state == "done", status
    result: int = sched.result(run_id)
    return result


def through_pickle() -> tuple[int, int]:
    reducer: corosnap.pickling.Reducer = corosnap.pickling.install(pickler="cloudpickle")
    try:
        gen = running_total([2, 3])
        next(gen)
        copy = pickle.loads(pickle.dumps({"job": gen}))["job"]
        table = reducer.dispatch_table()
        assert table
        return copy.send(None), gen.send(1)
    finally:
        corosnap.pickling.uninstall()


def main(directory: Path) -> dict[str, Any]:
    return {
        "blob_size": snapshots(),
        "keys": stores(directory),
        "workflow": workflows(),
        "pickle": through_pickle(),
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(main(Path(tmp)))
