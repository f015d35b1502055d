"""Shared test setup.

The test directory is also put on ``sys.path``: the core tests import their
sample generators as the top-level module ``samples`` (corosnap finds code by
module name, also in the child processes the cross-process tests start, which
get the same directory on their path), while ``tests`` itself is a package so
the store tests can use relative imports.  The differential harness's helper
modules (``_driver``, ``_gensrc``, ``_worker``, ``_xp_funcs``) are imported the
same way.

Fixtures of the cross-process / differential tests:

* ``worker``: one second interpreter (``tests/_worker.py``) for the whole session,
  restarted on demand after a crash; cross-process tests send it blobs.
* ``gen_dir``: a directory on ``sys.path`` (here and in the worker) where
  generated modules are written, one file per distinct source.
* ``load_generated``: writes a ``_gensrc.GenModule`` there and imports it.
* ``fixture_dir``: ``tests/`` itself, where ``_xp_funcs`` lives.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

import _driver  # noqa: E402
from _worker import WorkerClient  # noqa: E402


@pytest.fixture(scope="session")
def worker() -> Iterator[WorkerClient]:
    """The session's worker process (same interpreter as the tests)."""
    client = WorkerClient()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("corosnap_gen"))
    sys.path.insert(0, path)
    yield path
    sys.path.remove(path)


@pytest.fixture(scope="session")
def load_generated(gen_dir: str) -> Callable[[Any], ModuleType]:
    """``load_generated(gen_module) -> module``: write the source to ``gen_dir``, import it."""

    def load(gm: Any) -> ModuleType:
        name = _driver.write_module(gen_dir, gm.source, gm.name)
        return _driver.import_from(gen_dir, name)

    return load


@pytest.fixture(scope="session")
def fixture_dir() -> str:
    """The directory of hand-written modules used by cross-process tests (``tests/``)."""
    return TESTS_DIR
