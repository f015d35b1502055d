"""The codec's classes for each engine.

``ENGINES["c"]`` and ``ENGINES["python"]`` are the Encoder class, the Decoder
class and the msgpack ext hook factory of each engine (``"c"`` only when the
C engine is loaded).  The engine this process runs (``corosnap._accel``) uses
``Encoder`` and ``Decoder`` themselves; the other set binds the same classes
to the other engine's scans, so that one process can hold the two engines
against each other (``Snapshotter._with_engine``, ``tests/test_engines.py``).
The C engine's Encoder and Decoder are always subclasses whose ``enc`` and
``enc_items`` (and ``__init__``, ``clear`` and ``note_globals``, which run
on every dumps), ``dec``, ``dec_items`` and ``__init__`` are the C value codec's
(codec/_ccodec.c).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .._accel import accelerator
from ._decoder import Decoder
from ._encoder import Encoder
from ._speedups import ACTIVE, PYTHON, C, Helpers


class CodecEngine(NamedTuple):
    """One engine's codec."""

    name: str
    Encoder: type[Encoder]
    Decoder: type[Decoder]
    new_ext_hook: Callable[[], Callable[[int, bytes], Any]]
    unpack: Callable[[bytes], Any]
    pack: Callable[..., bytes]


def _bind(helpers: Helpers) -> CodecEngine:
    scans = {"__slots__": (), "is_flat": staticmethod(helpers.is_flat),
             "pack_ints": staticmethod(helpers.pack_ints),
             "str_keys": staticmethod(helpers.str_keys)}
    decoding = {"__slots__": (), "is_flat": staticmethod(helpers.is_flat)}
    if helpers.engine == "c":
        assert _C_VALUES is not None
        # The C value codec: Encoder.enc, Encoder.enc_items, Decoder.dec and
        # Decoder.dec_items in C, the rest of each class (and everything
        # they leave to it) Python's.
        scans.update(enc=_C_VALUES.enc, enc_items=_C_VALUES.enc_items,
                     __init__=_C_VALUES.encoder_init, clear=_C_VALUES.encoder_clear,
                     note_globals=_C_VALUES.note_globals)
        decoding.update(dec=_C_VALUES.dec, dec_items=_C_VALUES.dec_items,
                        __init__=_C_VALUES.decoder_init)
    elif helpers is ACTIVE:
        return CodecEngine(helpers.engine, Encoder, Decoder, helpers.new_ext_hook,
                           helpers.unpack, helpers.pack)
    encoder = type(f"{helpers.engine.capitalize()}Encoder", (Encoder,), scans)
    decoder = type(f"{helpers.engine.capitalize()}Decoder", (Decoder,), decoding)
    return CodecEngine(helpers.engine, encoder, decoder, helpers.new_ext_hook, helpers.unpack,
                       helpers.pack)


_C_VALUES = accelerator("corosnap.codec._ccodec") if C is not None else None

ENGINES: dict[str, CodecEngine] = {"python": _bind(PYTHON)}
if C is not None:
    ENGINES["c"] = _bind(C)

__all__ = ["ENGINES", "CodecEngine"]
