"""Migration on both engines: the C engine and the pure-Python one agree.

Under the C engine a blob is restored by C until a function turns out to have
changed; the blob is then restored again, every frame in Python, with the
migration session.  So ``loads(migrate=True)`` must give the same frames, the
same run and the same refusal on either engine, and ``dumps(migratable=True)``
the same bytes.  Every case of the evolution corpus is taken through both
engines in this process (``Snapshotter._with_engine``); under
``COROSNAP_PUREPYTHON=1`` the C side is not loaded and those tests skip.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Any

import pytest

import corosnap
from _evolve import close, drive, install, step
from corosnap import Snapshotter
from corosnap._accel import ENGINE
from corosnap.bytecode import fingerprint
from corosnap.migrate import Manifest, check
from corosnap.snapshot._api import default
from evolution_corpus import CASES, Case

needs_c = pytest.mark.skipif(ENGINE != "c", reason="the C engine is not loaded "
                             "(COROSNAP_PUREPYTHON=1)")


def _engines() -> dict[str, Snapshotter]:
    return {name: default()._with_engine(name) for name in ("c", "python")}


def _outcome(snap: Snapshotter, blob: bytes, manifests: Any, sends: tuple) -> tuple[Any, ...]:
    try:
        gen = snap.replace(migrate=True, manifests=manifests).loads(blob)
    except corosnap.CorosnapError as exc:
        return ("refused", type(exc).__name__, str(exc))
    return ("ran", drive(gen, list(sends)))


@needs_c
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_engines_migrate_alike(case: Case) -> None:
    module = f"engines_{case.name}"
    engines = _engines()
    old = install(module, case.old)
    try:
        target = getattr(old, case.entry)
        if case.chain_entry:
            target = getattr(target(), case.chain_entry)
        old_fp = fingerprint(target.__code__)
        blobs = {}
        for name, snap in engines.items():
            gen = target(*case.args)
            for i in range(case.steps):
                step(gen, case.sends_before[i] if i < len(case.sends_before) else None)
            blobs[name] = snap.replace(migratable=case.mode == "migratable").dumps(gen)
            close(gen)
        assert blobs["c"] == blobs["python"]
        manifests = Manifest.of_module(old) if case.mode == "manifest" else None
        install(module, textwrap.dedent(case.new).replace("{OLD_FP}", f"{old_fp:016x}"))
        outcomes = {name: _outcome(snap, blobs["c"], manifests, case.sends_after)
                    for name, snap in engines.items()}
    finally:
        sys.modules.pop(module, None)
    assert outcomes["c"] == outcomes["python"], outcomes
    expected = "ran" if case.expect in ("migrates", "resumes") else "refused"
    assert outcomes["c"][0] == expected, outcomes["c"]


COUNT_OLD = """
def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
"""
COUNT_NEW = """
def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
    return total * 10
"""


def test_migration_options_belong_to_the_snapshotter() -> None:
    mod = install("engines_opts", COUNT_OLD)
    try:
        gen = mod.job([1, 2, 3])
        next(gen)
        snap = Snapshotter(migratable=True)
        blob = snap.dumps(gen)
        assert blob == corosnap.dumps(gen, migratable=True) != corosnap.dumps(gen)
        assert "migratable=True" in repr(snap)
        install("engines_opts", COUNT_NEW)
        with pytest.raises(corosnap.CodeMismatch):
            snap.loads(blob)
        migrating = snap.replace(migrate=True)
        assert (migrating.migrate, migrating.migratable) == (True, True)
        assert migrating._caches is snap._caches
        assert drive(migrating.loads(blob)) == [3, 6, ("return", 60)]
        # The module functions are the same options of the shared instance.
        assert drive(corosnap.loads(blob, migrate=True)) == [3, 6, ("return", 60)]
        assert check(blob).status == "migrates"
    finally:
        sys.modules.pop("engines_opts", None)
    with pytest.raises(TypeError, match="migrate=True"):
        Snapshotter(manifests=[])
    with pytest.raises(TypeError, match="Migrations"):
        Snapshotter(migrate=True, migrations={})
    with pytest.raises(TypeError, match="migratable must be True or False"):
        Snapshotter(migratable=1)  # type: ignore[arg-type]


def test_unchanged_code_is_restored_by_the_c_engine_even_with_migrate(monkeypatch: Any) -> None:
    # migrate=True costs nothing while nothing changed: the first restore is
    # the usual one (C engine included); the Python engine's write_frame is
    # reached only for a blob whose code changed.
    import corosnap.snapshot._migrate as migrate
    import corosnap.snapshot._restore as restore

    calls: list[str] = []
    real = restore.write_frame

    def spy(dec: Any, entry: Any, *rest: Any) -> Any:
        calls.append(entry.label)
        return real(dec, entry, *rest)

    mod = install("engines_fast", COUNT_OLD)
    try:
        gen = mod.job([1, 2])
        next(gen)
        blob = corosnap.dumps(gen, migratable=True)
        snap = Snapshotter(migrate=True)
        snap.loads(blob).close()  # the first restore of a code makes its records
        monkeypatch.setattr(restore, "write_frame", spy)
        monkeypatch.setattr(migrate, "write_frame", spy)
        assert drive(snap.loads(blob)) == [3, ("return", 3)]
        assert calls == ([] if ENGINE == "c" else ["engines_fast.job()"])
        calls.clear()
        install("engines_fast", COUNT_NEW)
        assert drive(snap.loads(blob)) == [3, ("return", 30)]
        assert calls == ["engines_fast.job()"]  # the migrated frame, once
    finally:
        sys.modules.pop("engines_fast", None)


def test_check_and_the_worker_open_stores_with_one_opener(tmp_path: Any) -> None:
    from corosnap.cli._check import open_target
    from corosnap.scheduler import SchedulerError
    from corosnap.scheduler._cli import open_store as worker_open
    from corosnap.stores import BadStoreSpec, SQLiteStore

    for spec in ("ftp://host/x", "s3:///prefix", "tests.scheduler.cli_app:nothing"):
        with pytest.raises(BadStoreSpec) as from_check:
            open_target(spec)
        with pytest.raises(SchedulerError) as from_worker:
            worker_open(spec)
        assert str(from_check.value) == str(from_worker.value)
    store, _ = open_target(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(store, SQLiteStore)
    store.close()
    store, _ = open_target(f"sqlite:{tmp_path}/b.db")
    assert isinstance(store, SQLiteStore)
    store.close()
    assert open_target(str(tmp_path)) == (str(tmp_path), f"directory {tmp_path}")
    with pytest.raises(corosnap.CorosnapError, match="neither a directory"):
        open_target(str(tmp_path / "missing"))


def test_inspect_command_reads_a_migratable_blob(tmp_path: Any, capsys: Any) -> None:
    import json

    from corosnap.cli import main

    mod = install("engines_inspect", COUNT_OLD)
    try:
        gen = mod.job([1, 2])
        next(gen)
        path = tmp_path / "m.bin"
        path.write_bytes(corosnap.dumps(gen, migratable=True))
        assert main(["inspect", str(path), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        root = info["frames"][0]["bytes"]
        assert info["format_version"] == 2 and info["migration_bytes"] > 0
        assert (info["header_bytes"] + info["envelope_bytes"] + info["unread_bytes"]
                + info["migration_bytes"] + root == info["size"] == path.stat().st_size)
        assert main(["inspect", str(path)]) == 0
        assert "migration signatures" in capsys.readouterr().out
    finally:
        sys.modules.pop("engines_inspect", None)


BUF_OLD = """
def job(data):
    total = 0
    for x in data:
        total += len(x)
        got = yield total
    return total
"""
BUF_NEW = """
def job(data):
    total = 0
    for x in data:
        total += len(x)
        got = yield total
    return -total
"""


@pytest.mark.parametrize("engine", ["c", "python"])
def test_signed_migratable_blobs_with_out_of_band_buffers_migrate(engine: str) -> None:
    if engine == "c" and ENGINE != "c":
        pytest.skip("the C engine is not loaded (COROSNAP_PUREPYTHON=1)")
    snap = default()._with_engine(engine).replace(key=b"secret", migratable=True)
    mod = install("engines_signed", BUF_OLD)
    try:
        gen = mod.job([b"x" * 5000, b"y" * 7000])
        next(gen)
        buffers: list[Any] = []
        blob = snap.dumps(gen, buffer_callback=buffers.append)
        assert len(buffers) == 2
        install("engines_signed", BUF_NEW)
        migrating = snap.replace(migrate=True)
        assert drive(migrating.loads(blob, buffers=buffers)) == [12000, ("return", -12000)]
        with pytest.raises(corosnap.SignatureError):
            migrating.replace(key=b"other").loads(blob, buffers=buffers)
        with pytest.raises(corosnap.SignatureError):
            migrating.loads(blob, buffers=buffers[:1] + [b"z" * 7000])
        assert check(blob, key=b"secret").status == "refused"  # buffers are not given
        assert check(blob, key=b"secret", buffers=buffers).status == "migrates"
    finally:
        sys.modules.pop("engines_signed", None)


DONE_OLD = """
def helper():
    yield 1


def job():
    h = helper()
    for _ in h:
        pass
    got = yield "ready"
    return (got, h.gi_frame)
"""
DONE_NEW = DONE_OLD.replace("yield 1", "yield 2")


@pytest.mark.parametrize("engine", ["c", "python"])
@pytest.mark.parametrize("migratable", [True, False])
def test_a_finished_generator_of_changed_code_is_rebuilt(engine: str, migratable: bool) -> None:
    # A local holds a finished generator whose function changed: the blob
    # keeps only its code reference, and any code of that function makes an
    # equally finished generator.
    if engine == "c" and ENGINE != "c":
        pytest.skip("the C engine is not loaded (COROSNAP_PUREPYTHON=1)")
    snap = default()._with_engine(engine).replace(migratable=migratable)
    mod = install("engines_done", DONE_OLD)
    try:
        gen = mod.job()
        assert next(gen) == "ready"
        blob = snap.dumps(gen)
        install("engines_done", DONE_NEW)
        assert drive(snap.replace(migrate=True).loads(blob), [5]) == [("return", (5, None))]
    finally:
        sys.modules.pop("engines_done", None)
