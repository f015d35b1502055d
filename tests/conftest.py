"""Make the flat test helpers (``samples``, ``_helpers``) importable by their bare names.

The core tests import ``samples`` and ``_helpers`` as top-level modules (the
snapshots they take name ``samples`` as the module of their code, and child
interpreters import it under that name).  Since ``tests/`` became a package
(``tests/stores`` uses relative imports), pytest no longer puts ``tests/`` on
``sys.path`` by itself, so this file does.
"""

from __future__ import annotations

import os
import sys

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
