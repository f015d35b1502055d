"""The value codec: Python values <-> msgpack trees (blob format version 1).

Pure and synchronous.  ``Encoder``/``Decoder`` carry one snapshot's memo (object
identity), string table and code table; generators met inside values are
handed to the frame hooks supplied by ``corosnap.snapshot``, which keeps this
layer free of frame knowledge.
"""

# _iterators registers the builtin iterators' tags in the encoder and decoder.
from . import _iterators  # noqa: F401
from ._decoder import Decoder, ext_hook, is_exception, new_ext_hook
from ._encoder import BufferDecisions, Encoder, pack_offered, type_name
from ._markers import NONE_MARK, Deferred, Tag
from ._picklers import pickler_id
from ._tags import EXT_HEADER, EXT_NONE, EXT_SIGNED, NONE_EXT

__all__ = [
    "Decoder",
    "Deferred",
    "NONE_MARK",
    "Tag",
    "ext_hook",
    "is_exception",
    "new_ext_hook",
    "BufferDecisions",
    "Encoder",
    "pack_offered",
    "EXT_HEADER",
    "EXT_NONE",
    "EXT_SIGNED",
    "NONE_EXT",
    "pickler_id",
    "type_name",
]
