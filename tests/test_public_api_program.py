"""The strictly typed example program (tests/public_api_program.py) runs, and
packaging promises that need no build: corosnap.testing without pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import public_api_program

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def test_the_typed_program_runs(tmp_path: Path) -> None:
    out = public_api_program.main(tmp_path)
    assert out["keys"] == ["job/1"] * 3
    assert out["workflow"] == 12
    assert out["pickle"] == (5, 6)


def test_corosnap_testing_without_pytest_names_the_extra() -> None:
    # pytest is present here: hide it, as in an installation without the extra.
    code = ("import sys; sys.modules['pytest'] = None\n"
            "try:\n    import corosnap.testing\n"
            "except ImportError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert "pip install 'corosnap[testing]'" in proc.stdout
