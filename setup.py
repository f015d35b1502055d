"""Build the one frame-access extension that matches the running interpreter.

The C module is compiled with ``Py_BUILD_CORE`` against the interpreter's own
internal headers (``include/python3.X/internal/pycore_frame.h`` and friends),
so struct layouts come from CPython itself rather than being restated by hand.
Only the module for the interpreter doing the build is compiled; on an
interpreter we do not support (PyPy, CPython < 3.11, a newer CPython) nothing is
compiled and ``corosnap`` imports but raises ``UnsupportedInterpreter``.
"""

import os
import platform
import sys

from setuptools import Extension, setup

ext_modules = []
tag = f"{sys.version_info[0]}{sys.version_info[1]}"
source = os.path.join("src", "corosnap", "frames", f"_cpython{tag}.c")
if platform.python_implementation() == "CPython" and os.path.exists(source):
    ext_modules.append(
        Extension(
            f"corosnap.frames._cpython{tag}",
            sources=[source],
            define_macros=[("Py_BUILD_CORE", "1")],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
        )
    )

setup(ext_modules=ext_modules)
