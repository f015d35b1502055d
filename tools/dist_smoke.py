"""Smoke test of an installed corosnap, run by tools/dist.py in a fresh venv.

Run with the venv's interpreter, from an empty directory (so the checkout is
not on the path).  Checks, and prints one JSON line saying what it saw:
- corosnap is imported from the venv's site-packages, with its compiled
  frame module for this interpreter;
- dumps/loads in this process (plain, signed, safe mode);
- loads in another process (a fresh interpreter given the blob on stdin);
- corosnap.pickling: a generator through pickle;
- corosnap.testing: importable with pytest, or an ImportError naming the
  ``corosnap[testing]`` extra without it;
- the ``corosnap`` console script answers ``--help``, when the installed
  package has ``corosnap.cli`` (the entry point names it).
Exit status 0 when everything held.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

MODULE = '''
def job(items):
    total = 0
    for x in items:
        total += x
        got = yield total
        if got:
            total += got
    return total


class Ready:
    def __init__(self, v):
        self.v = v

    def __await__(self):
        return (yield self.v)


async def pipeline(n):
    a = await Ready(n)
    b = await Ready(a * 2)
    return a + b
'''

CHILD = '''
import sys
import corosnap
gen = corosnap.loads(sys.stdin.buffer.read())
print(gen.send(100))
'''


def main() -> int:
    seen: dict[str, object] = {"python": sys.version.split()[0]}
    work = Path(tempfile.mkdtemp(prefix="corosnap-smoke-"))
    (work / "smoke_mod.py").write_text(MODULE)
    sys.path.insert(0, str(work))

    import smoke_mod

    import corosnap

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    where = Path(corosnap.__file__).resolve()
    assert site in where.parents, f"corosnap imported from {where}, not from {site}"
    frames = importlib.import_module(f"corosnap.frames._cpython{sys.version_info[0]}"
                                     f"{sys.version_info[1]}")
    seen["frame_module"] = Path(frames.__file__ or "?").name
    from corosnap import _accel

    assert _accel.ENGINE == "c", "the C engine did not load"  # ImportError otherwise, too
    seen["engine"] = _accel.ENGINE

    gen = smoke_mod.job([1, 2, 3])
    assert next(gen) == 1
    blob = corosnap.dumps(gen)
    assert corosnap.loads(blob).send(10) == 13
    signed = corosnap.dumps(gen, key=b"smoke")
    assert corosnap.loads(signed, key=b"smoke", safe=True, allow=("smoke_mod",)).send(0) == 3
    coro = smoke_mod.pipeline(5)
    assert coro.send(None) == 5
    assert corosnap.loads(corosnap.dumps(coro)).send(7) == 14
    seen["blob_bytes"] = len(blob)

    child = subprocess.run([sys.executable, "-c", CHILD], input=blob, capture_output=True,
                           timeout=120, env={**os.environ, "PYTHONPATH": str(work)}, cwd=work)
    assert child.returncode == 0, child.stderr.decode()
    assert child.stdout.decode().strip() == "103", child.stdout
    seen["other_process"] = "ok"

    import corosnap.pickling

    corosnap.pickling.install()
    assert pickle.loads(pickle.dumps({"g": gen}))["g"].send(1) == 4
    corosnap.pickling.uninstall()
    seen["pickling"] = "ok"

    if importlib.util.find_spec("pytest") is None:
        try:
            importlib.import_module("corosnap.testing")
        except ImportError as exc:
            assert "corosnap[testing]" in str(exc), exc
            seen["testing"] = "ImportError naming corosnap[testing] (no pytest here)"
        else:
            raise AssertionError("corosnap.testing imported without pytest")
    else:
        importlib.import_module("corosnap.testing")
        seen["testing"] = "imported (pytest present)"

    if importlib.util.find_spec("corosnap.cli") is None:
        seen["console_script"] = "skipped: corosnap.cli is not in this build"
    else:
        script = Path(sys.executable).parent / "corosnap"
        run = subprocess.run([str(script), "--help"], capture_output=True, timeout=60, cwd=work)
        assert run.returncode == 0, run.stderr.decode()
        seen["console_script"] = "corosnap --help: ok"
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
