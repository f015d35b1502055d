"""Build the one frame-access extension that matches the running interpreter.

The C module is compiled with ``Py_BUILD_CORE`` against the interpreter's own
internal headers (``include/python3.X/internal/pycore_frame.h`` and friends),
so struct layouts come from CPython itself rather than being restated by hand.
Only the module for the interpreter doing the build is compiled; on an
interpreter we do not support (PyPy, CPython < 3.11, a newer CPython) nothing is
compiled and ``corosnap`` imports but raises ``UnsupportedInterpreter``.
The shared headers beside the sources (``_common.h``, the per-layout
``_*_frames.h``) are listed as dependencies so editing one rebuilds.
"""

import glob
import os
import platform
import sys
import sysconfig

from setuptools import Extension, setup

FRAMES = os.path.join("src", "corosnap", "frames")

ext_modules = []
tag = f"{sys.version_info[0]}{sys.version_info[1]}"
source = os.path.join(FRAMES, f"_cpython{tag}.c")
if (
    platform.python_implementation() == "CPython"
    and os.path.exists(source)
    # A free-threaded build (3.13+, Py_GIL_DISABLED) lays out stack references
    # differently and is refused at run time anyway: compile nothing for it.
    and not sysconfig.get_config_var("Py_GIL_DISABLED")
):
    ext_modules.append(
        Extension(
            f"corosnap.frames._cpython{tag}",
            sources=[source],
            depends=sorted(glob.glob(os.path.join(FRAMES, "*.h")) + glob.glob(os.path.join("src", "corosnap", "*", "_c*.c"))),
            define_macros=[("Py_BUILD_CORE", "1")],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
        )
    )

setup(ext_modules=ext_modules)
