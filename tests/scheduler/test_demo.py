"""``make demo``'s main job, examples/workflow_demo.py, runs and tells the story it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "workflow_demo.py"


def test_the_workflow_demo_kills_resumes_and_summarizes() -> None:
    out = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "== killed process 1" in out
    assert "[process 2] run price-report (__main__.price_report) claimed from the store" in out
    assert "result: {'priced': 19, 'missing': ['item-13'], 'total': 6216.83" in out
    assert "steps recorded: 21:" in out  # how many by each process depends on the kill
    assert "recorded by process 1 and never called again" in out
