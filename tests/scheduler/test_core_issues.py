"""Problems in corosnap's core found while building the scheduler, kept as expected failures.

The scheduler does not work around them; each test says what goes wrong and
passes (XPASS) once the core is fixed.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import corosnap


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in ("corosnap_small_module", "corosnap_big_module"):
        sys.modules.pop(name, None)


def _suspended_in(directory: Path, name: str, instances: int) -> object:
    lines = ["class P:", "    pass"] + [f"v{i} = P()" for i in range(instances)]
    lines += ["def gen():", "    x = yield 1", "    yield x"]
    (directory / f"{name}.py").write_text("\n".join(lines) + "\n")
    gen = importlib.import_module(name).gen()
    next(gen)
    return gen


def _dumps_seconds(gen: object, rounds: int = 20) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        corosnap.dumps(gen)
        best = min(best, time.perf_counter() - t0)
    return best


def test_dumps_cost_does_not_grow_with_the_size_of_the_module(modules: Path) -> None:
    small = _suspended_in(modules, "corosnap_small_module", 10)
    big = _suspended_in(modules, "corosnap_big_module", 2000)
    assert _dumps_seconds(big) < 10 * _dumps_seconds(small)
