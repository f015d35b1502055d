"""Shared test setup.

The test directory is also put on ``sys.path``: the core tests import their
sample generators as the top-level module ``samples`` (corosnap finds code by
module name, also in the child processes the cross-process tests start, which
get the same directory on their path), while ``tests`` itself is a package so
the store tests can use relative imports.
"""

from __future__ import annotations

import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
