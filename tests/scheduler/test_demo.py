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


DEPLOY_DEMO = Path(__file__).resolve().parents[2] / "examples" / "deploy_demo.py"


def test_the_deploy_demo_finishes_the_run_on_the_fixed_code() -> None:
    out = subprocess.run(
        [sys.executable, str(DEPLOY_DEMO)], capture_output=True, text=True, timeout=120,
        check=True,
    ).stdout
    assert "[process 1] run A-17 is running" in out
    assert "run/A-17: migrates automatically: billing.invoice: `await sleep(0.5)`" in out
    assert "(exit status 0: deploy)" in out
    assert "[process 2] result: {'order': 'A-17', 'total': 32.5, 'shipping': 4.0}" in out
