"""Deploys and the scheduler: runs suspended on an old workflow finish on the new one.

The scheduler keeps a manifest record of every workflow version it
checkpoints (``manifest/...``), so after a deploy its runs migrate with no
flag; a run that cannot be migrated is reported as ``needs-migration`` by
``Scheduler.status`` and left untouched, and resumes once a migration is
registered.  The workflow module is replaced in ``sys.modules`` between the
two schedulers, as a deploy replaces it between two processes.
"""

from __future__ import annotations

import sys
import time

import pytest

from _evolve import install
from corosnap.bytecode import fingerprint
from corosnap.migrate import Migrations, Resume
from corosnap.scheduler import Scheduler, SchedulerError
from corosnap.scheduler._engine import Engine
from corosnap.scheduler._lease import register, unregister
from corosnap.scheduler._records import decode_run, run_key
from corosnap.stores import MemoryStore, Store

MOD = "sched_evolve_wf"

V1 = """
from corosnap.scheduler import call, sleep

def price(item):
    return len(item) * 10

async def order(items):
    total = 0
    for it in items:
        p = await call(price, it)
        total += p
    await sleep(0.3)
    return {"total": total, "version": 1}
"""

FIXED = V1.replace('return {"total": total, "version": 1}',
                   'return {"total": total, "tax": total // 10, "version": 2}')

RENAMED = V1.replace("    total = 0\n    for it in items:\n        p = await call(price, it)\n"
                     "        total += p\n    await sleep(0.3)\n"
                     '    return {"total": total, "version": 1}',
                     "    sum_ = 0\n    for it in items:\n        p = await call(price, it)\n"
                     "        sum_ += p\n    await sleep(0.3)\n"
                     '    return {"total": sum_, "version": 3}')


def _sched(store, source: str, **kw):
    m = install(MOD, source)
    s = Scheduler(store, workers=0, **kw)
    s.function(m.price)
    s.workflow(m.order)
    return s, m


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    sys.modules.pop(MOD, None)


def _at_the_sleep(store: Store, run_id: str) -> bool:
    raw = store.get(run_key(run_id))
    waiting = decode_run(run_id, raw.blob).waiting if raw is not None else None
    return waiting is not None and [op.kind for op in waiting.ops] == ["sleep"]


def _checkpoint_at_the_sleep(sched: Scheduler, run_id: str) -> None:
    """Drive a worker of ``sched`` until run ``run_id`` is checkpointed at its ``sleep``,
    then let go of what it holds, as a worker stopped there would.

    Not ``run_until_complete(timeout=0.1)``: under load that deadline can pass
    before the first checkpoint, leaving the run unstarted (a run with no frame
    yet has nothing to migrate and rightly reads ``running`` on any code).  One
    engine step at a time, stopped right after that checkpoint's write, so no
    timer (the sleep's end) can fire meanwhile either.
    """
    engine = Engine(sched, until_idle=True)
    deadline = time.monotonic() + 60.0
    register(engine.id)
    try:
        while not _at_the_sleep(sched._store, run_id):
            assert time.monotonic() < deadline, f"run {run_id} never reached its sleep"
            if not engine.step():
                engine.wait(deadline, False)
    finally:
        engine.release_all()
        engine.drop_coroutines()
        unregister(engine.id)


def _suspended_run(store: Store) -> str:
    """A run of V1 checkpointed at its ``sleep`` (after both steps), held by nobody."""
    s, m = _sched(store, V1)
    run_id = s.start(m.order, ["ab", "cde"])
    _checkpoint_at_the_sleep(s, run_id)
    return run_id


def test_a_bug_fixed_after_the_step_and_the_run_finishes_on_the_fixed_code():
    store = MemoryStore()
    run_id = _suspended_run(store)
    assert [k for k in store.keys("manifest/") if k.startswith(f"manifest/{MOD}/order/")]
    s2, _ = _sched(store, FIXED)  # the deploy
    assert s2.status(run_id).state == "running"
    s2.run_until_complete(timeout=10)
    assert s2.result(run_id) == {"total": 50, "tax": 5, "version": 2}


def test_manifests_are_written_once_per_code_version():
    store = MemoryStore()
    _suspended_run(store)
    keys = sorted(store.keys("manifest/"))
    versions = {k: store.get(k).version for k in keys}
    assert all(v == 1 for v in versions.values())
    # Another process checkpointing the same version writes nothing new.
    s, m = _sched(store, V1)
    run2 = s.start(m.order, ["x"])
    _checkpoint_at_the_sleep(s, run2)
    assert {k: store.get(k).version for k in store.keys("manifest/")} == versions


def test_a_run_that_cannot_migrate_is_reported_and_kept_until_a_migration_exists():
    store = MemoryStore()
    run_id = _suspended_run(store)
    old_fp = fingerprint(install(MOD, V1).order.__code__)
    s2, _ = _sched(store, RENAMED)
    status = s2.status(run_id)
    assert status.state == "needs-migration"
    assert "new local 'sum_' is read" in (status.problem or "")
    assert list(s2.run_ids(state="needs-migration")) == [run_id]
    before = store.get(f"run/{run_id}")
    with pytest.raises(SchedulerError, match=f"could not be resumed.*{run_id}"):
        s2.run_until_complete(timeout=10)
    assert store.get(f"run/{run_id}") == before  # never lost, never changed
    # The migration ships with the next deploy.
    reg = Migrations()

    @reg.register(f"{MOD}:order", old_fp)
    def from_total(old):
        new_locals = {("sum_" if k == "total" else k): v for k, v in old.locals.items()}
        return Resume(line=old.line, locals=new_locals)

    s3, _ = _sched(store, RENAMED, migrations=reg)
    assert s3.status(run_id).state == "running"
    s3.run_until_complete(timeout=10)
    assert s3.result(run_id) == {"total": 50, "version": 3}


def test_a_run_that_never_started_has_nothing_to_migrate_and_starts_on_the_new_code():
    """A run no worker has advanced holds no frame yet: after a deploy it is
    ``running`` (not ``needs-migration``), whatever changed, and runs the new code."""
    store = MemoryStore()
    s, m = _sched(store, V1)
    run_id = s.start(m.order, ["ab", "cde"])
    s2, _ = _sched(store, RENAMED)
    status = s2.status(run_id)
    assert (status.state, status.checkpoints, status.problem) == ("running", 0, None)
    assert list(s2.run_ids(state="needs-migration")) == []
    s2.run_until_complete(timeout=10)
    assert s2.result(run_id) == {"total": 50, "version": 3}


def test_migrate_false_keeps_the_old_behaviour():
    store = MemoryStore()
    run_id = _suspended_run(store)
    s2, _ = _sched(store, FIXED, migrate=False)
    status = s2.status(run_id)
    assert status.state == "needs-migration" and "migrate=False" in (status.problem or "")
    with pytest.raises(SchedulerError, match="could not be resumed"):
        s2.run_until_complete(timeout=10)
    s3, _ = _sched(store, FIXED)
    s3.run_until_complete(timeout=10)
    assert s3.result(run_id)["version"] == 2


def test_the_old_code_back_resumes_the_run_as_is():
    store = MemoryStore()
    run_id = _suspended_run(store)
    s2, _ = _sched(store, RENAMED)
    with pytest.raises(SchedulerError):
        s2.run_until_complete(timeout=10)
    s3, _ = _sched(store, V1)  # rolled back
    s3.run_until_complete(timeout=10)
    assert s3.result(run_id) == {"total": 50, "version": 1}


def test_check_command_on_a_scheduler_store(tmp_path, capsys):
    from corosnap.cli import main
    from corosnap.stores import SQLiteStore

    path = str(tmp_path / "runs.db")
    with SQLiteStore(path) as store:
        run_id = _suspended_run(store)
    install(MOD, RENAMED)
    assert main(["check", f"sqlite:{path}"]) == 1
    out = capsys.readouterr().out
    assert f"run/{run_id}: needs an explicit migration" in out and "'sum_'" in out
    install(MOD, FIXED)
    assert main(["check", f"sqlite:{path}", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["summary"] == {"migrates": 1} and report["stranded"] == 0


def test_check_command_on_a_redis_store(redis_server, tmp_path, capsys, monkeypatch):
    """A server store, named by URL (its own database) and by module:attribute."""
    import json

    from corosnap.cli import main
    from corosnap.stores import RedisStore

    url = f"redis://127.0.0.1:{redis_server.port}/9"  # a database of its own
    store = RedisStore(url)
    try:
        for key in list(store.keys("")):
            store.delete(key)
        run_id = _suspended_run(store)
    finally:
        store.close()
    install(MOD, RENAMED)
    assert main(["check", url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["summary"] == {"needs-migration": 1}
    assert report["snapshots"][0]["key"] == f"run/{run_id}"
    (tmp_path / "redis_target.py").write_text(
        f"from corosnap.stores import RedisStore\n\ndef store():\n    return RedisStore({url!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    install(MOD, FIXED)
    assert main(["check", "redis_target:store"]) == 0
    assert "migrates automatically" in capsys.readouterr().out
    sys.modules.pop("redis_target", None)
