"""The evolution corpus: each (old, new) pair resumed in a fresh process on the new code.

For every ``evolution_corpus.Case``: the old version of the module is
installed here, run to its suspension and snapshotted (``migratable=True``,
or a plain blob with the old version's manifest, or a plain blob alone); the
new version is written to a file, and a fresh interpreter
(``_evolve_child.py``) asks ``corosnap.migrate.check`` for its verdict, then
restores with ``loads(migrate=True)`` and runs the frame to its end.  The
verdict, and the trace or the reason, must be the expected ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import corosnap
from _evolve import install, step
from corosnap.bytecode import fingerprint
from corosnap.migrate import Manifest
from evolution_corpus import CASES, Case

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)
    kinds = {c.expect for c in CASES}
    assert kinds == {"migrates", "resumes", "needs-migration", "refused"}


def _snapshot(case: Case, module: str) -> tuple[bytes, dict | None, int]:
    old = install(module, case.old)
    try:
        target = getattr(old, case.entry)
        if case.chain_entry:  # a method: entry names the class
            target = getattr(target(), case.chain_entry)
        old_fp = fingerprint(target.__code__)
        gen = target(*case.args)
        sends = list(case.sends_before)
        for i in range(case.steps):
            step(gen, sends[i] if i < len(sends) else None)
        blob = corosnap.dumps(gen, migratable=case.mode == "migratable")
        manifest = Manifest.of_module(old).to_json() if case.mode == "manifest" else None
        return blob, manifest, old_fp
    finally:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_in_a_fresh_process(case: Case, tmp_path):
    module = f"corpus_{case.name}"
    blob, manifest, old_fp = _snapshot(case, module)
    new_source = textwrap.dedent(case.new).replace("{OLD_FP}", f"{old_fp:016x}")
    (tmp_path / f"{module}.py").write_text(new_source)
    request = {"dir": str(tmp_path), "module": module, "blob": blob.hex(),
               "manifest": manifest, "sends": list(case.sends_after)}
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_evolve_child.py")],
                          input=json.dumps(request), capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verdict"] == case.expect, (out, proc.stderr)
    if case.expect in ("migrates", "resumes"):
        assert "error" not in out, out
        assert tuple(out["trace"]) == case.trace, out
        assert tuple(out["how"]) == tuple(sorted(case.how)) or (
            case.expect == "migrates" and not case.how), out
    else:
        assert re.search(case.reason, out["reason"]), out["reason"]
        assert re.search(case.reason, out["message"]), out["message"]
        expected_error = "NeedsMigration" if case.expect == "needs-migration" else None
        if expected_error:
            assert out["error"] == expected_error, out
