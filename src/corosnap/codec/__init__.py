"""The value codec: Python values <-> msgpack trees (blob format version 1).

Pure and synchronous.  ``Encoder``/``Decoder`` carry one snapshot's memo (object
identity), string table and code table; generators met inside values are
handed to the frame hooks supplied by ``corosnap.snapshot``, which keeps this
layer free of frame knowledge.
"""

from ._decoder import Decoder
from ._encoder import Encoder, type_name
from ._picklers import pickler_id
from ._tags import EXT_HEADER, EXT_NULL, EXT_SIGNED, NULL_EXT

__all__ = [
    "Decoder",
    "Encoder",
    "EXT_HEADER",
    "EXT_NULL",
    "EXT_SIGNED",
    "NULL_EXT",
    "pickler_id",
    "type_name",
]
