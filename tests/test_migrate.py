"""Migration of frames onto edited code, in one process (``loads(migrate=True)``).

Each test installs an old version of a module, suspends a generator or
coroutine of it, snapshots it (``migratable=True``, or a plain blob plus the
old version's manifest), installs the new version under the same name and
restores with ``migrate=True``.  Accepted migrations are driven to the end and
compared with what the new code does; refusals must name the reason.  The
fresh-process corpus is ``test_evolution_corpus.py``.
"""

from __future__ import annotations

import sys

import pytest

import corosnap
from _evolve import advance, drive, install
from corosnap.migrate import Manifest

MOD = "evo_mod"


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    sys.modules.pop(MOD, None)


def snap_old(old: str, fn: str, args: tuple, steps: int, migratable: bool = True,
             sends: list | None = None) -> tuple[bytes, object]:
    m = install(MOD, old)
    gen = getattr(m, fn)(*args)
    for i in range(steps):
        gen.send(sends[i] if sends and i < len(sends) else None)
    blob = corosnap.dumps(gen, migratable=migratable)
    manifest = Manifest.of_module(m)
    return blob, manifest


COUNT_OLD = """
def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
"""


def test_plain_loads_still_refuses_changed_code():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 1)
    install(MOD, COUNT_OLD.replace("return total", "return total * 10"))
    with pytest.raises(corosnap.CodeMismatch, match="code changed"):
        corosnap.loads(blob)


def test_fix_after_the_resume_point_migrates():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 2)
    install(MOD, COUNT_OLD.replace("return total", "return total * 10"))
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen) == [6, ("return", 60)]


@pytest.mark.parametrize("flag", [1, 0, "yes", None])
def test_a_migratable_or_migrate_flag_that_is_no_bool_is_a_type_error(flag):
    # With no other option given, dumps/loads once tested `flag is True` and
    # went on with the plain default: migratable=1 made a plain blob, and
    # migrate=1 refused changed code, silently.  Every path now refuses it
    # as the Snapshotter does, naming the flag.
    m = install(MOD, COUNT_OLD)
    gen = m.job([1, 2, 3])
    next(gen)
    blob = corosnap.dumps(gen, migratable=True)
    for call in (lambda: corosnap.dumps(gen, migratable=flag),
                 lambda: corosnap.dumps(gen, migratable=flag, key=b"k"),
                 lambda: corosnap.Snapshotter(migratable=flag)):
        with pytest.raises(TypeError, match="migratable must be True or False"):
            call()
    for call in (lambda: corosnap.loads(blob, migrate=flag),
                 lambda: corosnap.loads(blob, migrate=flag, safe=True)):
        with pytest.raises(TypeError, match="migrate must be True or False"):
            call()


def test_logging_line_at_the_top_and_comments_migrate():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 1)
    install(MOD, '''
import logging
LOG = logging.getLogger("evo")


def job(items):
    # a comment
    LOG.debug("job starts with %r", items)

    total = 0
    for x in items:
        total += x
        got = yield total   # the same suspension
    return total
''')
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen) == [3, 6, ("return", 6)]


def test_the_same_blob_loads_as_is_when_the_code_did_not_change():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 1)
    assert drive(corosnap.loads(blob)) == [3, 6, ("return", 6)]
    assert drive(corosnap.loads(blob, migrate=True)) == [3, 6, ("return", 6)]


def test_plain_blobs_do_not_grow_and_migratable_ones_are_format_2():
    m = install(MOD, COUNT_OLD)
    gen = m.job([1, 2, 3])
    next(gen)
    plain = corosnap.dumps(gen)
    assert plain[1:3] == b"\xd4\x43" and plain[3] >> 5 == 1
    rich = corosnap.dumps(gen, migratable=True)
    assert rich[3] >> 5 == 2 and len(rich) > len(plain)
    # Both load as they are on unchanged code.
    assert drive(corosnap.loads(rich)) == [3, 6, ("return", 6)]


def test_constant_changed_in_code_already_executed_keeps_the_old_value():
    old = """
def job():
    limit = 3
    n = 0
    while n < 10:
        n += 1
        yield n
        if n >= limit:
            return n
"""
    blob, _ = snap_old(old, "job", (), 1)
    install(MOD, old.replace("limit = 3", "limit = 5"))
    gen = corosnap.loads(blob, migrate=True)
    # The frame had limit == 3 already: it keeps it.
    assert drive(gen) == [2, 3, ("return", 3)]


def test_new_local_assigned_after_the_resume_point():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 1)
    install(MOD, """
def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
        bonus = 1 if got else 0
        total += bonus
    return total
""")
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen, [1, 1]) == [4, 8, ("return", 8)]


def test_new_local_read_before_it_is_assigned_is_refused():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 1)
    install(MOD, """
def job(items, scale=1):
    total = 0
    factor = scale * 2
    for x in items:
        total += x
        got = yield total
        total *= factor
    return total
""")
    with pytest.raises(corosnap.NeedsMigration, match="new local 'factor' is read at line 8"):
        corosnap.loads(blob, migrate=True)


def test_new_parameter_with_a_default_gets_the_default():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 1)
    install(MOD, """
def job(items, scale=10):
    total = 0
    for x in items:
        total += x
        got = yield total
    return total * scale
""")
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen) == [3, 6, ("return", 60)]


def test_a_yield_added_earlier_in_the_function():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 2)
    install(MOD, """
def job(items):
    yield "starting"
    total = 0
    for x in items:
        total += x
        got = yield total
    return total
""")
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen) == [6, ("return", 6)]


def test_removed_yield_is_refused_naming_it():
    old = """
def job(a):
    first = yield a
    second = yield a + 1
    return first, second
"""
    blob, _ = snap_old(old, "job", (1,), 2)
    install(MOD, """
def job(a):
    first = yield a
    return first, None
""")
    with pytest.raises(corosnap.NeedsMigration, match=r"the `yield` at line 4 in the old code "
                       "has no counterpart"):
        corosnap.loads(blob, migrate=True)


def test_manifest_text_names_the_removed_yield():
    old = """
def job(a):
    first = yield a
    second = yield a + 1
    return first, second
"""
    blob, manifest = snap_old(old, "job", (1,), 2, migratable=False)
    install(MOD, """
def job(a):
    first = yield a
    return first, None
""")
    with pytest.raises(corosnap.NeedsMigration,
                       match=r"`yield a \+ 1` \(line 4 in the old code\) has no counterpart"):
        corosnap.loads(blob, migrate=True, manifests=manifest)


def test_moved_out_of_the_loop_is_refused_naming_the_loop():
    old = """
def job(items):
    for x in items:
        got = yield x
    return None
"""
    blob, _ = snap_old(old, "job", ([1, 2],), 1)
    install(MOD, """
def job(items):
    for x in items:
        pass
    got = yield x
    return None
""")
    with pytest.raises(corosnap.NeedsMigration,
                       match="moved from inside the `for` loop over `items` to outside it"):
        corosnap.loads(blob, migrate=True)


def test_with_block_added_around_the_resume_point_is_refused():
    old = """
def job(path):
    got = yield path
    return got
"""
    blob, _ = snap_old(old, "job", ("p",), 1)
    install(MOD, """
import contextlib
def job(path):
    with contextlib.nullcontext(path) as p:
        got = yield path
    return got
""")
    with pytest.raises(corosnap.NeedsMigration, match="never entered"):
        corosnap.loads(blob, migrate=True)


def test_changed_condition_on_the_path_is_refused():
    old = """
def job(x):
    if x > 3:
        got = yield x
        return got
    return None
"""
    blob, _ = snap_old(old, "job", (5,), 1)
    install(MOD, old.replace("x > 3", "x > 4"))
    with pytest.raises(corosnap.NeedsMigration, match="conditions on every path"):
        corosnap.loads(blob, migrate=True)


def test_loop_body_edited_while_suspended_in_the_loop():
    old = """
def job(items):
    out = []
    for x in items:
        out.append(x)
        got = yield len(out)
    return out
"""
    blob, _ = snap_old(old, "job", ([1, 2, 3],), 2)
    install(MOD, """
def job(items):
    out = []
    for x in items:
        out.append(x * 100)
        got = yield len(out)
        out.append("after")
    return out
""")
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen) == [4, ("return", [1, 2, "after", 300, "after"])]


def test_alike_points_map_by_ordinal_and_refuse_when_their_number_changes():
    old = """
def job():
    a = yield 0
    b = yield 0
    return a, b
"""
    blob, _ = snap_old(old, "job", (), 2, sends=[None, "A"])
    install(MOD, old.replace("return a, b", "return b, a"))
    assert drive(corosnap.loads(blob, migrate=True), ["B"]) == [("return", ("B", "A"))]
    install(MOD, """
def job():
    a = yield 0
    c = yield 0
    b = yield 0
    return a, b
""")
    with pytest.raises(corosnap.NeedsMigration, match="one of 2 alike"):
        corosnap.loads(blob, migrate=True)


def test_except_block_state_migrates():
    old = """
def job():
    try:
        raise ValueError("boom")
    except ValueError as e:
        got = yield str(e)
        return got
"""
    blob, _ = snap_old(old, "job", (), 1)
    install(MOD, """
def job():
    try:
        raise ValueError("boom")
    except ValueError as e:
        got = yield str(e)
        return (got, repr(e))
""")
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen, ["x"]) == [("return", ("x", "ValueError('boom')"))]


def test_cell_variables_must_stay_cells():
    old = """
def job():
    n = 1
    got = yield n
    return got
"""
    blob, _ = snap_old(old, "job", (), 1)
    install(MOD, """
def job():
    n = 1
    got = yield n
    return (lambda: n + got)()
""")
    with pytest.raises(corosnap.NeedsMigration,
                       match="was a plain local in the old code and is a cell variable"):
        corosnap.loads(blob, migrate=True)


def test_closures_and_cells_migrate():
    old = """
def job():
    n = 1
    def bump():
        nonlocal n
        n += 1
    bump()
    got = yield n
    bump()
    return n
"""
    blob, _ = snap_old(old, "job", (), 1)
    install(MOD, old.replace("return n", "return n * 100"))
    assert drive(corosnap.loads(blob, migrate=True)) == [("return", 300)]


AWAIT_OLD = """
class Step:
    def __init__(self, v):
        self.v = v
    def __await__(self):
        return (yield self.v)

async def leaf(x):
    got = await Step(x)
    return got * 2

async def middle(x):
    a = await leaf(x)
    return a + 1

async def top(x):
    r = await middle(x)
    return ("top", r)
"""


def test_change_inside_one_frame_of_a_three_deep_await_chain():
    blob, _ = snap_old(AWAIT_OLD, "top", (5,), 1)
    install(MOD, AWAIT_OLD.replace("return a + 1", "return a + 1000"))
    gen = corosnap.loads(blob, migrate=True)
    assert drive(gen, [7]) == [("return", ("top", 1014))]


def test_every_frame_of_the_chain_changed():
    blob, _ = snap_old(AWAIT_OLD, "top", (5,), 1)
    new = (AWAIT_OLD.replace("return a + 1", "return a + 1000")
           .replace("got * 2", "got * 3").replace('("top", r)', '("TOP", r)'))
    install(MOD, new)
    assert drive(corosnap.loads(blob, migrate=True), [7]) == [("return", ("TOP", 1021))]


def test_plain_blob_with_the_old_manifest():
    blob, manifest = snap_old(AWAIT_OLD, "top", (5,), 1, migratable=False)
    text = manifest.dumps()
    install(MOD, AWAIT_OLD.replace("return a + 1", "return a + 1000"))
    with pytest.raises(corosnap.NeedsMigration, match="no description of the old code"):
        corosnap.loads(blob, migrate=True)
    gen = corosnap.loads(blob, migrate=True, manifests=Manifest.loads(text))
    assert drive(gen, [7]) == [("return", ("top", 1014))]


def test_migrated_frame_is_a_frame_a_normal_restore_accepts():
    blob, _ = snap_old(COUNT_OLD, "job", ([1, 2, 3],), 1)
    install(MOD, COUNT_OLD.replace("return total", "return total * 10"))
    gen = corosnap.loads(blob, migrate=True)
    again = corosnap.dumps(gen)  # a plain snapshot of the migrated frame, on the new code
    assert drive(corosnap.loads(again)) == [3, 6, ("return", 60)]


def test_nested_generator_found_again_after_its_path_moved():
    old = """
def outer(n):
    def inner():
        for i in range(n):
            got = yield i
    return inner()
"""
    m = install(MOD, old)
    gen = m.outer(3)
    next(gen)
    blob = corosnap.dumps(gen, migratable=True)
    # A new constant and a lambda before the inner function move its co_consts index.
    install(MOD, """
def outer(n):
    label = "a new constant"
    key = lambda v: v
    def inner():
        for i in range(n):
            got = yield i
    return inner()
""")
    with pytest.raises(corosnap.CodeMismatch):
        corosnap.loads(blob)
    assert drive(corosnap.loads(blob, migrate=True)) == [1, 2, ("return", None)]


def test_generator_expression_in_a_changed_function():
    old = """
def outer(items):
    return (x * 2 for x in items)
"""
    m = install(MOD, old)
    gen = m.outer([1, 2, 3])
    next(gen)
    blob = corosnap.dumps(gen, migratable=True)
    install(MOD, """
def outer(items):
    print("changed")
    return (x * 2 for x in items)
""")
    assert drive(corosnap.loads(blob, migrate=True)) == [4, 6, ("return", None)]


def test_created_frame_migrates_with_a_new_default():
    m = install(MOD, COUNT_OLD)
    gen = m.job([1, 2])
    blob = corosnap.dumps(gen, migratable=True)
    gen.close()
    install(MOD, """
def job(items, start=100):
    total = start
    for x in items:
        total += x
        got = yield total
    return total
""")
    assert drive(corosnap.loads(blob, migrate=True)) == [101, 103, ("return", 103)]


def test_generator_turned_coroutine_is_refused():
    old = """
def job():
    got = yield 1
    return got
"""
    blob, _ = snap_old(old, "job", (), 1)
    install(MOD, """
import types
@types.coroutine
def job():
    got = yield 1
    return got
""")
    # types.coroutine on a generator function sets CO_ITERABLE_COROUTINE.
    with pytest.raises(corosnap.NeedsMigration, match="was a generator"):
        corosnap.loads(blob, migrate=True)


def test_manifest_roundtrip_and_lookup():
    m = install(MOD, AWAIT_OLD)
    man = Manifest.of_module(m)
    assert len(man) >= 4
    again = Manifest.loads(man.dumps())
    assert again.to_json() == man.to_json()


def test_migrate_options_are_checked():
    blob, _ = snap_old(COUNT_OLD, "job", ([1],), 1)
    with pytest.raises(TypeError, match="migrate=True"):
        corosnap.loads(blob, manifests=[])
    with pytest.raises(TypeError, match="Migrations"):
        corosnap.loads(blob, migrate=True, migrations={})


def test_advance_helper():
    m = install(MOD, COUNT_OLD)
    assert advance(m.job([1, 2]), 2) == 3


# -- explicit migrations -----------------------------------------------------------------

RENAME_OLD = """
def job(items):
    lim = 2
    total = 0
    for x in items:
        total += x
        got = yield total
        if total > lim:
            return "over"
    return total
"""
RENAME_NEW = """
def job(items):
    limit = 2
    total = 0
    for x in items:
        total += x
        got = yield total
        if total > limit:
            return "over"
    return total
"""


def _old_fp(source: str, fn: str) -> int:
    from corosnap.bytecode import fingerprint

    return fingerprint(getattr(install(MOD, source), fn).__code__)


def test_renamed_local_needs_an_explicit_migration_and_gets_one():
    from corosnap.migrate import Migrations, Resume

    blob, _ = snap_old(RENAME_OLD, "job", ([1, 1, 5],), 1)
    old_fp = _old_fp(RENAME_OLD, "job")
    install(MOD, RENAME_NEW)
    with pytest.raises(corosnap.NeedsMigration, match="new local 'limit' is read"):
        corosnap.loads(blob, migrate=True)
    reg = Migrations()
    seen = []

    @reg.register(f"{MOD}:job", f"{old_fp:016x}")
    def rename(old):
        seen.append((old.kind, old.line, sorted(old.locals)))
        new_locals = dict(old.locals)
        new_locals["limit"] = new_locals.pop("lim")
        return Resume(line=old.line, locals=new_locals)

    gen = corosnap.loads(blob, migrate=True, migrations=reg)
    assert seen == [("yield", 7, ["items", "lim", "total", "x"])]
    assert drive(gen) == [2, 7, ("return", "over")]


def test_explicit_migration_is_validated_like_any_restore():
    from corosnap.migrate import EMPTY, Migrations, Resume

    blob, _ = snap_old(RENAME_OLD, "job", ([1, 1, 5],), 1)
    old_fp = _old_fp(RENAME_OLD, "job")
    install(MOD, RENAME_NEW)
    reg = Migrations()

    def renamed(old):
        return {("limit" if k == "lim" else k): v for k, v in old.locals.items()}

    # A stack that does not fit: the for loop's iterator replaced by an int
    # (3.15 keeps an index slot above it, empty for a real iterator).
    bad = [5, EMPTY] if sys.version_info >= (3, 15) else [5]
    reg.add(f"{MOD}:job", old_fp, lambda old: Resume(line=7, locals=renamed(old), stack=bad))
    with pytest.raises(corosnap.CorruptSnapshot, match="must be an iterator"):
        corosnap.loads(blob, migrate=True, migrations=reg)
    # A line where the new code does not suspend.
    reg.add(f"{MOD}:job", old_fp, lambda old: Resume(line=3, locals=renamed(old)))
    with pytest.raises(corosnap.NeedsMigration, match="line 3, where the new code does not"):
        corosnap.loads(blob, migrate=True, migrations=reg)
    # A local the new code does not have.
    reg.add(f"{MOD}:job", old_fp, lambda old: Resume(line=7, locals={"nope": 1}))
    with pytest.raises(corosnap.NeedsMigration, match="nope"):
        corosnap.loads(blob, migrate=True, migrations=reg)
    # Unbound locals the new code reads unchecked (3.12+) are refused by the
    # normal checks; on 3.11 LOAD_FAST checks, and the run raises instead.
    reg.add(f"{MOD}:job", old_fp, lambda old: Resume(line=7, locals={}))
    try:
        gen = corosnap.loads(blob, migrate=True, migrations=reg)
    except corosnap.CorruptSnapshot as exc:
        assert "read without a check" in str(exc)
    else:
        assert drive(gen)[-1][0] == "raise"


def test_explicit_migration_moves_the_resume_point():
    from corosnap.migrate import Migrations, Resume

    old = """
def job():
    a = yield "first"
    b = yield "second"
    return a, b
"""
    blob, _ = snap_old(old, "job", (), 2, sends=[None, "A"])
    old_fp = _old_fp(old, "job")
    install(MOD, """
def job():
    a = yield "first"
    b = yield "second"
    c = yield "third"
    return a, b, c
""")
    reg = Migrations()
    # Suspended after "second" was yielded: continue at the new third yield,
    # with b already received... here we choose to re-ask for b instead.
    reg.add(f"{MOD}:job", old_fp, lambda old: Resume(index=1, locals=old.locals))
    gen = corosnap.loads(blob, migrate=True, migrations=reg)
    assert drive(gen, ["B", "C"]) == ["third", ("return", ("A", "B", "C"))]


def test_migration_decorator_registers_in_the_default_registry():
    from corosnap.migrate import Resume, migration, migrations

    blob, _ = snap_old(RENAME_OLD, "job", ([1, 1, 5],), 1)
    old_fp = _old_fp(RENAME_OLD, "job")
    new = install(MOD, RENAME_NEW)

    @migration(new.job, old_fp)
    def rename(old):
        new_locals = dict(old.locals)
        new_locals["limit"] = new_locals.pop("lim")
        return Resume(line=old.line, locals=new_locals)

    try:
        assert drive(corosnap.loads(blob, migrate=True)) == [2, 7, ("return", "over")]
    finally:
        migrations._by_key.clear()


def test_function_value_in_a_local_moves_to_its_new_code():
    old = """
def job(k):
    f = lambda v: v + k
    got = yield f(1)
    return f(got)
"""
    blob, _ = snap_old(old, "job", (10,), 1)
    install(MOD, old.replace("lambda v: v + k", "lambda v: v * k").replace(
        "return f(got)", "return f(got), 'v2'"))
    assert drive(corosnap.loads(blob, migrate=True), [3]) == [("return", (30, "v2"))]


def test_function_value_whose_closure_changed_is_refused():
    old = """
def job(k, j):
    g = lambda: j
    f = lambda v: v + k
    got = yield f(1)
    return f(got) + g()
"""
    blob, _ = snap_old(old, "job", (10, 5), 1)
    install(MOD, old.replace("lambda v: v + k", "lambda v: v + k + j"))
    with pytest.raises(corosnap.NeedsMigration, match="function value"):
        corosnap.loads(blob, migrate=True)


# -- the commands ----------------------------------------------------------------------------

def test_manifest_and_check_commands(tmp_path, capsys, monkeypatch):
    import json

    from corosnap.cli import main

    src_dir = tmp_path / "code"
    src_dir.mkdir()
    (src_dir / "cmdmod.py").write_text(COUNT_OLD)
    monkeypatch.syspath_prepend(str(src_dir))
    import importlib

    sys.modules.pop("cmdmod", None)
    mod = importlib.import_module("cmdmod")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for name, steps in (("a.bin", 1), ("b.bin", 2)):
        gen = mod.job([1, 2, 3])
        for _ in range(steps):
            next(gen)
        (blobs / name).write_bytes(corosnap.dumps(gen))
    (blobs / "notes.txt").write_text("not a blob")
    assert main(["manifest", "cmdmod", "-o", str(tmp_path / "v1.json")]) == 0
    assert json.loads((tmp_path / "v1.json").read_text())["modules"]["cmdmod"]["job"]
    # Unchanged code: everything resumes.
    assert main(["check", str(blobs)]) == 0
    assert "2 resume as is" in capsys.readouterr().out
    # A fix after the resume point, deployed.
    (src_dir / "cmdmod.py").write_text(COUNT_OLD.replace("return total", "return -total"))
    sys.modules.pop("cmdmod", None)
    importlib.invalidate_caches()
    assert main(["check", str(blobs)]) == 1  # plain blobs, no manifest: stranded
    out = capsys.readouterr().out
    assert "needs an explicit migration" in out and "2 would be stranded" in out
    assert main(["check", str(blobs), "--manifest", str(tmp_path / "v1.json"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"] == {"migrates": 2}
    assert [r["key"] for r in report["snapshots"]] == ["a.bin", "b.bin"]
    assert main(["check", "no.such.module:store"]) == 2
    sys.modules.pop("cmdmod", None)


def test_a_pending_value_the_analysis_cannot_tell_apart_is_refused():
    # Five conditional expressions in one operand: 32 ways to compute it, more
    # than the labels keep apart, so it is opaque (unlike one conditional,
    # whose alternatives are compared as a set).
    old = """
def job(c, d, a, b):
    r = [(a if c else b) + (a if d else b) + (b if c else a) + (b if d else a)
         + (a if c and d else b), (yield 0)]
    return r
"""
    blob, _ = snap_old(old, "job", (True, False, 1, 2), 1)
    install(MOD, old.replace("(b if c else a)", "(b if c else a + 1)"))
    with pytest.raises(corosnap.NeedsMigration, match="cannot tell apart"):
        corosnap.loads(blob, migrate=True)


def test_a_pending_conditional_operand_is_compared_as_a_set():
    old = """
def job(c, a, b):
    r = [(a if c else b) + 1, (yield 0)]
    return r
"""
    blob, _ = snap_old(old, "job", (True, 1, 2), 1)
    install(MOD, old.replace("(a if c else b) + 1", "(a if c else b * 2) + 1"))
    with pytest.raises(corosnap.NeedsMigration, match="expression around the suspension"):
        corosnap.loads(blob, migrate=True)
    install(MOD, old.replace("return r", "return r, 'v2'"))
    assert drive(corosnap.loads(blob, migrate=True), [5]) == [("return", ([2, 5], "v2"))]


# -- async generators -------------------------------------------------------------------

ACOUNT_OLD = """
async def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
    yield ("done", total)
"""

AGEN_AWAITED = """
class Step:
    def __init__(self, v):
        self.v = v

    def __await__(self):
        return (yield self.v)


async def ticks(n):
    for i in range(n):
        got = await Step(("tick", i))
        yield got


async def job(n):
    it = ticks(n)
    seen = []
    async for t in it:
        seen.append(t)
    return seen
"""


def _astep(agen, value=None):
    """One asend(value) of an async generator that awaits nothing: what it yields."""
    try:
        agen.asend(value).send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the async generator awaited something")


def _adrive(agen) -> list:
    out = []
    while True:
        try:
            out.append(_astep(agen))
        except StopAsyncIteration:
            return out


def _snap_agen(source: str, args: tuple, steps: int, migratable: bool = True):
    m = install(MOD, source)
    agen = m.job(*args)
    for _ in range(steps):
        _astep(agen)
    return corosnap.dumps(agen, migratable=migratable), Manifest.of_module(m)


def test_async_generator_fix_after_the_resume_point_migrates():
    blob, _ = _snap_agen(ACOUNT_OLD, ([1, 2, 3],), 2)
    install(MOD, ACOUNT_OLD.replace('("done", total)', '("done", total * 10)'))
    with pytest.raises(corosnap.CodeMismatch):
        corosnap.loads(blob)
    agen = corosnap.loads(blob, migrate=True)
    assert type(agen).__name__ == "async_generator" and not agen.ag_running
    assert _adrive(agen) == [6, ("done", 60)]


def test_async_generator_plain_blob_migrates_with_the_old_manifest():
    blob, manifest = _snap_agen(ACOUNT_OLD, ([1, 2],), 1, migratable=False)
    install(MOD, ACOUNT_OLD.replace('("done", total)', '("done", -total)'))
    with pytest.raises(corosnap.NeedsMigration, match="carries no description"):
        corosnap.loads(blob, migrate=True)
    agen = corosnap.loads(blob, migrate=True, manifests=manifest)
    assert _adrive(agen) == [3, ("done", -3)]


def test_async_generator_removed_yield_is_refused_naming_it():
    old = """
async def job(a):
    first = yield a
    second = yield a + 1
    yield (first, second)
"""
    blob, manifest = _snap_agen(old, (1,), 2, migratable=False)
    install(MOD, """
async def job(a):
    first = yield a
    yield (first, None)
""")
    with pytest.raises(corosnap.NeedsMigration,
                       match=r"`yield a \+ 1` \(line 4 in the old code\) has no counterpart"):
        corosnap.loads(blob, migrate=True, manifests=manifest)


def test_async_generator_with_an_operation_in_flight_migrates_under_its_awaiter():
    m = install(MOD, AGEN_AWAITED)
    coro = m.job(2)
    assert coro.send(None) == ("tick", 0)  # ticks() is inside its await, asend in flight
    blob = corosnap.dumps(coro, migratable=True)
    install(MOD, AGEN_AWAITED.replace("yield got", "yield (got, 'v2')"))
    coro2 = corosnap.loads(blob, migrate=True)
    it = coro2.cr_frame.f_locals["it"]
    assert it.ag_running  # the in-flight flag was set on the migrated generator
    assert it.ag_code is sys.modules[MOD].ticks.__code__
    assert drive(coro2, ["a", "b"]) == [("tick", 1), ("return", [("a", "v2"), ("b", "v2")])]


def test_explicit_migration_cannot_move_an_in_flight_async_generator_to_a_yield():
    from corosnap.migrate import Migrations, Resume

    old_fp = _old_fp(AGEN_AWAITED, "ticks")
    m = install(MOD, AGEN_AWAITED)
    coro = m.job(2)
    coro.send(None)
    blob = corosnap.dumps(coro, migratable=True)
    new = AGEN_AWAITED.replace("yield got", "yield (got, 'v2')")
    install(MOD, new)
    yield_line = new.splitlines().index("        yield (got, 'v2')") + 1
    reg = Migrations()
    # The stack the yield needs: the old one without the awaitable (and, on
    # 3.15, the slot SEND keeps above it).
    keep = -2 if sys.version_info >= (3, 15) else -1
    reg.add(f"{MOD}:ticks", old_fp,
            lambda old: Resume(line=yield_line, locals={**old.locals, "got": 1},
                               stack=old.stack[:keep]))
    with pytest.raises(corosnap.NeedsMigration, match="in flight must resume inside an await"):
        corosnap.loads(blob, migrate=True, migrations=reg)


def test_async_generator_description_that_contradicts_the_blob_is_corrupt():
    blob, manifest = _snap_agen(ACOUNT_OLD, ([1, 2],), 1, migratable=False)
    data = manifest.to_json()
    for entry in data["modules"][MOD]["job"].values():
        entry["flags"] = 0x20  # CO_GENERATOR
    install(MOD, ACOUNT_OLD.replace('("done", total)', '("done", -total)'))
    with pytest.raises(corosnap.CorruptSnapshot, match="description says it was a generator"):
        corosnap.loads(blob, migrate=True, manifests=Manifest.from_json(data))


def test_async_generator_turned_generator_is_refused():
    blob, _ = _snap_agen(ACOUNT_OLD, ([1, 2],), 1)
    install(MOD, ACOUNT_OLD.replace("async def", "def"))
    with pytest.raises(corosnap.NeedsMigration,
                       match="was an async generator and is now a generator"):
        corosnap.loads(blob, migrate=True)


def test_check_classifies_async_generator_blobs(tmp_path, capsys, monkeypatch):
    import importlib
    import json

    from corosnap.cli import main
    from corosnap.migrate import check

    src_dir = tmp_path / "code"
    src_dir.mkdir()
    (src_dir / "agenmod.py").write_text(ACOUNT_OLD)
    monkeypatch.syspath_prepend(str(src_dir))
    sys.modules.pop("agenmod", None)
    mod = importlib.import_module("agenmod")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for name, migratable in (("a.bin", True), ("b.bin", False)):
        agen = mod.job([1, 2, 3])
        _astep(agen)
        (blobs / name).write_bytes(corosnap.dumps(agen, migratable=migratable))
    try:
        # Unchanged code: both resume as they are (a check writes no frame).
        assert check((blobs / "b.bin").read_bytes()).status == "resumes"
        assert main(["check", str(blobs)]) == 0
        assert "2 resume as is" in capsys.readouterr().out
        (src_dir / "agenmod.py").write_text(
            ACOUNT_OLD.replace('("done", total)', '("done", -total)'))
        sys.modules.pop("agenmod", None)
        importlib.invalidate_caches()
        assert main(["check", str(blobs), "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["summary"] == {"migrates": 1, "needs-migration": 1}
        by_key = {r["key"]: r for r in report["snapshots"]}
        assert by_key["a.bin"]["status"] == "migrates"
        assert "carries no description" in by_key["b.bin"]["reason"]
    finally:
        sys.modules.pop("agenmod", None)
