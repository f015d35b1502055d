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
