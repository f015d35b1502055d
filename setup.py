"""Build corosnap's C extensions for the running interpreter.

- ``corosnap.frames._cpython3XX``: the frame-access module of this version,
  compiled with ``Py_BUILD_CORE`` against the interpreter's own internal
  headers (``include/python3.X/internal/pycore_frame.h`` and friends), so
  struct layouts come from CPython itself rather than being restated by hand.
- ``corosnap.codec._ccodec`` and ``corosnap.snapshot._csnapshot``: the C
  engines of the codec and the snapshot layer (see ``corosnap/_accel.py``),
  plain extensions that reach frames through the frame module's C API.

Only the running interpreter's modules are compiled; on an interpreter we do
not support (PyPy, CPython < 3.11, a newer CPython, a free-threaded build)
nothing is compiled and ``corosnap`` imports but raises
``UnsupportedInterpreter``.  The headers each module includes are listed as
its dependencies, so editing one rebuilds.
"""

import glob
import os
import platform
import sys
import sysconfig

from setuptools import Extension, setup

PACKAGE = os.path.join("src", "corosnap")
FRAMES = os.path.join(PACKAGE, "frames")
HEADERS = sorted(glob.glob(os.path.join(FRAMES, "*.h")) + [os.path.join(PACKAGE, "_records.h"),
                                                          os.path.join(PACKAGE, "_lists.h"),
                                                          os.path.join(PACKAGE, "codec", "_memo.h")])
# -falign-functions=64: every function starts on a cache line, so adding or
# moving one does not shift the others' alignment.  Without it, a change to
# the decoder alone made the unchanged encoder about 5-7% slower on 3.11
# (instruction counts within 0.4%: code placement), and such swings hid
# real changes.
COMPILE_ARGS = ["-O2", "-falign-functions=64", "-Wall", "-Wno-missing-field-initializers"]
# -fno-plt (ELF): a call into libpython reads its address from the GOT
# instead of jumping through a PLT stub.  Under cachegrind a checkout loads on
# 3.11 ran 200 fewer instructions, 39 fewer I1 misses and 27 fewer mispredicted
# indirect branches per call; timed on 3.14 (a distribution build whose
# pickle is compiled into the interpreter) loads and dumps took 3-4% less.
if sys.platform.startswith("linux"):
    COMPILE_ARGS.append("-fno-plt")

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
            depends=HEADERS,
            define_macros=[("Py_BUILD_CORE", "1")],
            extra_compile_args=COMPILE_ARGS,
        )
    )
    for layer, name in (("codec", "_ccodec"), ("snapshot", "_csnapshot")):
        ext_modules.append(
            Extension(
                f"corosnap.{layer}.{name}",
                sources=[os.path.join(PACKAGE, layer, f"{name}.c")],
                depends=HEADERS,
                extra_compile_args=COMPILE_ARGS,
            )
        )

setup(ext_modules=ext_modules)
