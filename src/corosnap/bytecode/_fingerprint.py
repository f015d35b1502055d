"""Short fingerprints of what a code object does.

A fingerprint covers everything that changes behaviour: the bytecode (without
CPython's inline caches or instrumentation: ``co_code`` is the canonical form),
constants (nested code objects by their own fingerprint), names, variable
names, cell and free variables, argument counts, flags and the exception
table.  It deliberately leaves out line numbers, column positions, the file
name and the function's own name, so moving a function, adding a comment above
it or moving the checkout keeps old snapshots loadable.

The hash is BLAKE2b truncated to 8 bytes (returned as an unsigned int, which
msgpack stores in 9 bytes).  It detects change; it is not a security boundary
(signing is, see ``corosnap.snapshot``).

Constants are serialised canonically, not with ``repr``/``hash``: a frozenset's
iteration order depends on string hash randomisation, so its elements are
sorted by their canonical bytes.
"""

from __future__ import annotations

import hashlib
import types

from .._weak import IdentityCache


def _const_bytes(value: object, out: list[bytes]) -> None:
    t = type(value)
    if t is types.CodeType:
        out.append(b"C" + fingerprint(value).to_bytes(8, "little"))  # type: ignore[arg-type]
    elif t is tuple:
        out.append(b"T%d(" % len(value))  # type: ignore[arg-type]
        for item in value:  # type: ignore[attr-defined]
            _const_bytes(item, out)
        out.append(b")")
    elif t is frozenset:
        parts = []
        for item in value:  # type: ignore[attr-defined]
            sub: list[bytes] = []
            _const_bytes(item, sub)
            parts.append(b"".join(sub))
        out.append(b"F%d(" % len(parts) + b"".join(sorted(parts)) + b")")
    elif t is str:
        raw = value.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
        out.append(b"S%d:" % len(raw) + raw)
    elif t is bytes:
        out.append(b"B%d:" % len(value) + value)  # type: ignore[arg-type, operator]
    else:
        # int, float, complex, bool, None, Ellipsis: repr is exact and stable.
        text = f"{t.__name__}:{value!r}".encode()
        out.append(b"V%d:" % len(text) + text)


def _compute(code: types.CodeType) -> int:
    parts: list[bytes] = [
        b"corosnap-fp-1",
        code.co_code,
        code.co_exceptiontable,
        repr(
            (
                code.co_argcount,
                code.co_posonlyargcount,
                code.co_kwonlyargcount,
                code.co_flags,
                code.co_names,
                code.co_varnames,
                code.co_cellvars,
                code.co_freevars,
            )
        ).encode(),
    ]
    _const_bytes(code.co_consts, parts)
    digest = hashlib.blake2b(b"\0".join(parts), digest_size=8).digest()
    return int.from_bytes(digest, "little")


_cache: IdentityCache[int] = IdentityCache()


def fingerprint(code: types.CodeType) -> int:
    """The 64-bit fingerprint of ``code`` (cached by identity, holding it weakly)."""
    fp = _cache.get(code)
    if fp is None:
        fp = _cache.put(code, _compute(code))
    return fp
