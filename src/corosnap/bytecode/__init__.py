"""Bytecode analysis: resume points, stack depths, fingerprints, code names.

Pure functions of code objects, cached by identity.  Nothing here touches
frame memory or does I/O; ``corosnap.snapshot`` uses these answers to decide
what it may write into a frame.
"""

from ._analysis import CREATED, CodeInfo, analyze, code_info, slot_names
from ._fingerprint import fingerprint
from ._locate import CodeRef, describe, locate, types_coroutine_copy

__all__ = [
    "CREATED",
    "CodeInfo",
    "CodeRef",
    "analyze",
    "code_info",
    "describe",
    "fingerprint",
    "locate",
    "slot_names",
    "types_coroutine_copy",
]
