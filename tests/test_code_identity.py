"""Code identity: a snapshot survives moving the function or the checkout, and
refuses to resume code whose behaviour changed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ORIGINAL = '''
def work(n):
    total = 0
    for i in range(n):
        total += i * 2
        yield total
    return total
'''

VARIANTS = {
    "comment_above": "# a comment\n\n\n# and blank lines move every line number\n" + ORIGINAL,
    "docstring_module": '"""A module docstring."""\nimport os\n' + ORIGINAL,
    "changed_constant": ORIGINAL.replace("i * 2", "i * 3"),
    "changed_operation": ORIGINAL.replace("total += i", "total -= i"),
    "renamed_local": ORIGINAL.replace("total", "acc"),
}

CHILD = textwrap.dedent('''
    import sys, corosnap
    import movable
    mode = sys.argv[1]
    if mode == "dump":
        g = movable.work(5)
        next(g); next(g)
        sys.stdout.buffer.write(corosnap.dumps(g))
    else:
        try:
            g = corosnap.loads(sys.stdin.buffer.read())
            print("resumed", list(g))
        except corosnap.CodeMismatch as exc:
            print("mismatch", exc)
''')


def run(directory: str, mode: str, data: bytes = b"") -> bytes:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode], input=data,
                          capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": directory})
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    d = tmp_path_factory.mktemp("checkout_a")
    (d / "movable.py").write_text(ORIGINAL)
    return run(str(d), "dump")


def load_with(tmp_path, source: str, blob: bytes) -> str:
    d = tmp_path / "elsewhere" / "checkout_b"  # another directory: the checkout moved
    d.mkdir(parents=True)
    (d / "movable.py").write_text(source)
    return run(str(d), "load", blob).decode()


def test_same_code_in_a_moved_checkout_resumes(tmp_path, blob):
    assert load_with(tmp_path, ORIGINAL, blob).strip() == "resumed [6, 12, 20]"


@pytest.mark.parametrize("variant", ["comment_above", "docstring_module"])
def test_line_moves_keep_old_snapshots_loadable(tmp_path, blob, variant):
    assert load_with(tmp_path, VARIANTS[variant], blob).strip() == "resumed [6, 12, 20]"


@pytest.mark.parametrize("variant", ["changed_constant", "changed_operation", "renamed_local"])
def test_behaviour_changes_raise_code_mismatch_naming_the_function(tmp_path, blob, variant):
    out = load_with(tmp_path, VARIANTS[variant], blob)
    assert out.startswith("mismatch"), out
    assert "movable.work()" in out and "changed" in out


def test_missing_function_is_a_code_mismatch(tmp_path, blob):
    out = load_with(tmp_path, ORIGINAL.replace("def work", "def other"), blob)
    assert out.startswith("mismatch") and "work" in out


# -- types.coroutine inside a function ------------------------------------------------
# types.coroutine gives a generator function a copy of its code with
# CO_ITERABLE_COROUTINE added; defined inside another function, that copy is not
# among the enclosing function's constants.


def test_inner_types_coroutine_round_trips_as_the_decorated_generator():
    import inspect

    import agen_samples
    import corosnap
    from _helpers import drive, in_child

    g = agen_samples.outer_with_types_coroutine()
    assert g.send(None) == ("gb", 5)
    blob = corosnap.dumps(g)
    g2 = corosnap.loads(blob)
    assert g2.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE
    assert g2.gi_code == g.gi_code
    assert drive(g2, [7]) == [("return", 7)]
    assert in_child(blob, sends=[8]) == [("return", 8)]
    # Loaded twice, both frames share one code object.
    assert corosnap.loads(blob).gi_code is corosnap.loads(blob).gi_code
    g.close()


def test_coroutine_awaiting_an_inner_types_coroutine_resumes_in_another_process():
    import agen_samples
    import corosnap
    from _helpers import drive, in_child

    for k in range(3):
        c = agen_samples.awaits_inner_types_coroutine()
        first = drive(c, [None, "a"][:k])
        blob = corosnap.dumps(c)
        rest = in_child(blob, sends=[None, "a", "b"][k:])
        assert first + rest == [("yield", ("step", 1)), ("yield", ("step", 2)),
                                ("return", ("a", "b"))], k
        c.close()


def test_inner_types_coroutine_fingerprint_still_decides():
    import msgpack

    import agen_samples
    import corosnap

    g = agen_samples.outer_with_types_coroutine()
    g.send(None)
    tree = msgpack.unpackb(corosnap.dumps(g), strict_map_key=False)
    # [header, module, [qualname, *path], fingerprint, position, ...]
    assert tree[2][0] == "outer_with_types_coroutine" and len(tree[2]) == 2
    tree[3] ^= 1
    with pytest.raises(corosnap.CodeMismatch, match="outer_with_types_coroutine.<locals>.gb"):
        corosnap.loads(msgpack.packb(tree))
    g.close()


def test_nested_plain_generator_keeps_its_own_code():
    import inspect

    import corosnap

    def outer():
        def plain():
            yield 1
        return plain()

    g = outer()
    g2 = corosnap.loads(corosnap.dumps(g))
    assert not g2.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE
    assert g2.gi_code is g.gi_code


def test_replaced_code_is_refused_naming_what_happened():
    import corosnap

    def outer():
        def inner():
            yield 1
        inner.__code__ = inner.__code__.replace(co_consts=(*inner.__code__.co_consts, "x"))
        return inner()

    with pytest.raises(corosnap.SnapshotError) as err:
        corosnap.dumps(outer())
    msg = str(err.value)
    assert "its code is not among the code objects of " in msg
    assert msg.split(" of ")[1].split(" (")[0].endswith(
        "test_code_identity.test_replaced_code_is_refused_naming_what_happened")
    assert "__code__ replaced" in msg
