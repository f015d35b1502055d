"""Tests marked ``slow`` here are skipped unless asked for with ``-m slow``.

``make test`` runs the whole suite without ``-m``; the slow variants repeat
what a default test proves with more waiting (an fsync per commit, more kills).
Run them with ``make pytest PYTEST_ARGS='-m slow tests/scheduler'``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and HERE in item.path.parents:
            item.add_marker(skip)
