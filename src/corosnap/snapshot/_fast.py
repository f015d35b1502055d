"""The frame module, with its C fast paths configured (frames/_fastpath.h).

``frames.capture`` and ``frames.restore`` do the per-frame glue of
``_capture.encode_frame`` and ``_restore.decode_frame`` in C, from the same
per-code caches and plans; they call back into the codec for values and into
``decode_frame`` for sub-frames, and decline (return None, before any side
effect) whatever the Python path must do.  This module hands them, once, the
Python objects they need.
"""

from __future__ import annotations

from types import ModuleType

from .._errors import CorruptSnapshot
from ..codec import NONE_EXT, NONE_MARK, Deferred, Tag
from ..codec._decoder import _TAG_BY_DATA as TAGS_BY_DATA
from ..codec._decoder import constant_exts, ext_hook_for
from ..codec._tags import T_RANGEITER
from ..frames import backend

TAGS_DECODED = {tag.kind: tag for tag in TAGS_BY_DATA.values()}

_frames: ModuleType | None = None


def frames() -> ModuleType:
    """The configured frame module (UnsupportedInterpreter if there is none)."""
    global _frames
    if _frames is None:
        module = backend()
        from ._restore import _check_no_delegation_cycle, adopt, decode_frame

        module.configure(CorruptSnapshot, Tag, Deferred, NONE_MARK, NONE_EXT, decode_frame,
                         _check_no_delegation_cycle, getattr(module, "virtual_iterable", None),
                         constant_exts(), ext_hook_for, TAGS_DECODED[T_RANGEITER], adopt)
        _frames = module
    return _frames
