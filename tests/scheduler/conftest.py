"""Tests marked ``slow`` here are skipped unless asked for with ``-m slow``; ``heavy`` ones too,
unless ``COROSNAP_HEAVY_TESTS=1``.

``make test`` runs the whole suite without ``-m``; the slow variants repeat
what a default test proves with more waiting (an fsync per commit, more kills).
Run them with ``make pytest PYTEST_ARGS='-m slow tests/scheduler'``.  The
heavy ones (the many-workers crash tests on PostgreSQL and Redis, minutes
each) are required: CI runs them once, on CPython 3.11 (``.ci/run`` sets
``COROSNAP_HEAVY_TESTS=1``); ``-m heavy`` runs them by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = config.getoption("markexpr") or ""
    heavy_on = "heavy" in markexpr or os.environ.get("COROSNAP_HEAVY_TESTS", "") not in ("", "0")
    # The reasons start with "slow:": the server fixtures' check that no server test
    # is skipped in CI (tests/conftest.py) leaves those alone.
    skip_slow = pytest.mark.skip(reason="slow: run with -m slow")
    skip_heavy = pytest.mark.skip(
        reason="slow: a heavy test, run by CI (COROSNAP_HEAVY_TESTS=1) or with -m heavy"
    )
    for item in items:
        if HERE not in item.path.parents:
            continue
        if "heavy" in item.keywords:
            if not heavy_on:
                item.add_marker(skip_heavy)
        elif "slow" in item.keywords and "slow" not in markexpr:
            item.add_marker(skip_slow)
