"""The ext type codes and tags of blob format version 1 (see docs/format.md).

Values msgpack holds natively (None, bool, int in [-2**63, 2**64), float, str,
bytes, list, dict with scalar keys) are stored natively.  Everything else is
either a *leaf ext* (an msgpack ext whose payload is raw bytes) or a *tagged
array*: an msgpack array whose first element is the 3-byte ext
``EXT_TAG`` carrying one kind byte.  A plain list can never start with a bare
``EXT_TAG`` (no value encodes to one), so the two never collide.

These numbers are part of the format: never renumber, only add.
"""

from __future__ import annotations

from array import array

from msgpack import ExtType

# Leaf ext codes.
EXT_TAG = 0  # first element of a tagged array; payload: one kind byte
EXT_REF = 1  # back-reference; payload: big-endian memo index (1, 2 or 4 bytes)
EXT_BIGINT = 2  # int outside msgpack's range; payload: signed little-endian
EXT_COMPLEX = 3  # payload: two little-endian doubles
EXT_BYTEARRAY = 4  # payload: the bytes
EXT_WELLKNOWN = 5  # a global from the well-known table; payload: one index byte
EXT_PICKLE = 6  # fallback pickler; payload: pickler id byte + pickle stream
EXT_NONE = 7  # None in a frame slot, where nil means an empty (NULL) slot; payload: b"\0"
EXT_SURROGATE_STR = 8  # str that UTF-8 cannot encode (lone surrogates); payload: surrogatepass
EXT_INTLIST = 9  # list of >= 16 ints: width byte (1, 2, 4, 8) + signed little-endian items
EXT_BUFFER = 10  # bytes/bytearray/memoryview offered as a buffer: kind byte + index or data
EXT_HEADER = 0x43  # "C": blob header; payload: (format << 5 | python minor)
EXT_SIGNED = 0x53  # "S": signed-blob header; same payload

# Tag kinds (the byte inside EXT_TAG).
T_TUPLE = 1  # [tag, *items]
T_SET = 2  # [tag, *items]
T_FROZENSET = 3  # [tag, *items]
T_DICT = 4  # [tag, k0, v0, k1, v1, ...]  (dict with a non-scalar key)
T_FLATLIST = 5  # [tag, *scalars]  (list of scalars only: decoded without a walk)
T_GLOBAL = 6  # [tag, module, qualname]  (strings or string-table indexes)
T_MODULE = 7  # [tag, module]
T_CELL = 8  # [tag] (empty) or [tag, contents]
T_FUNCTION = 9  # [tag, coderef..., closure, defaults, kwdefaults, qualname, dict]
T_FRAME = 10  # [tag, coderef..., position, *localsplus, *stack]
T_REDUCE = 11  # [tag, callable, args, state, listitems, dictitems]
T_NEWOBJ = 12  # [tag, cls, args, state, listitems, dictitems]
T_RANGE = 13  # [tag, start, stop, step]
T_RANGEITER = 14  # [tag, stop, index] | [tag, start, stop, index] | [tag, start, stop, step, index]
T_SEQITER = 15  # [tag, sequence, index]
T_SHAPED = 16  # [tag, shape index, *values]  (dict whose str keys repeat an earlier dict's)
T_DONE = 17  # [tag, coderef...]  (a generator/coroutine that already finished)
T_EXCEPTION = 18  # [tag, reduce array, cause, context, suppress_context]
T_DICTITER = 19  # [tag, dict, kind (0 keys, 1 values, 2 items), position]
T_DICTVIEW = 20  # [tag, dict, kind (0 keys, 1 values, 2 items)]
T_METHOD = 21  # [tag, obj, name]  (a method found by name on a type: _globals.resolve_method)
# Async generators and their awaitables (snapshot/_asyncgen.py).
T_ASYNCGEN = 22  # [tag, flags, frame fields...]  (flags: 1 ag_closed | 2 ag_running_async)
T_ASEND = 23  # [tag, agen, state] (__anext__()) | [tag, agen, state, value] (asend(value))
T_ATHROW = 24  # [tag, agen, state] (aclose()) | [tag, agen, state, typ[, val[, tb]]] (athrow)
T_CORO_WRAPPER = 25  # [tag, coroutine]  (what coroutine.__await__() returns)
T_ANEXT = 26  # [tag, awaitable, default]  (what anext(it, default) returns)

# Builtin iterators with their position (codec/_iterators.py; the fields are
# those of frames.iter_read, see frames/_itertools.h).  A block of their own,
# from 64, so that the general kinds above can grow without meeting them.
T_COUNT = 64  # [tag, count] | [tag, start, step]
T_REPEAT = 65  # [tag, element] | [tag, element, times left]
T_CYCLE = 66  # [tag, saved, index] | [tag, saved, 0, it] | [tag, saved, 0, it, True]
T_ISLICE = 67  # [tag] | [tag, it, next, stop, step, count]
T_CHAIN = 68  # [tag] | [tag, source] | [tag, source, active]
T_ZIP_LONGEST = 69  # [tag, fillvalue, *iterators (nil: exhausted)]
T_ACCUMULATE = 70  # [tag, it, initial, func] | [tag, it, initial, func, total]
T_PAIRWISE = 71  # [tag] | [tag, it] | [tag, it, old]
T_BATCHED = 72  # [tag] | [tag, it, n] | [tag, it, n, True]
T_COMPRESS = 73  # [tag, data, selectors]
T_DROPWHILE = 74  # [tag, func, it] | [tag, func, it, True]
T_TAKEWHILE = 75  # [tag, func, it] | [tag, func, it, True]
T_FILTERFALSE = 76  # [tag, func, it]
T_STARMAP = 77  # [tag, func, it]
T_TEE = 78  # [tag, buffer, index]
T_TEE_DATA = 79  # [tag, *values, next buffer or nil, source]
T_GROUPBY = 80  # [tag, it, key] | [tag, it, key, tgtkey] | [..., tgtkey, currkey, currvalue]
T_GROUPER = 81  # [tag, groupby, tgtkey] | [tag, groupby, tgtkey, True]
T_PRODUCT = 82  # [tag] | [tag, pools] | [tag, pools, *indices]
T_PERMUTATIONS = 83  # [tag] | [tag, pool, r] | [tag, pool, r, *indices, *cycles]
T_COMBINATIONS = 84  # [tag] | [tag, pool, r] | [tag, pool, r, *indices]
T_CWR = 85  # combinations_with_replacement, as combinations
T_MAP = 86  # [tag, func, *iterators] | [tag, func, True, *iterators]
T_FILTER = 87  # [tag, func, it]
T_REVERSED = 88  # [tag] | [tag, sequence, index]
T_CALL_ITER = 89  # [tag] | [tag, callable, sentinel]

TAGS = {kind: ExtType(EXT_TAG, bytes([kind])) for kind in (*range(1, 27), *range(64, 90))}

MAX_EQUAL_HASHES = 64
"""At most this many items of one set, frozenset or dict (keys), and at most
this many distinct big ints or complex numbers of one blob, may share a hash
(hash flooding); smaller containers are not checked."""

SEQITER_TYPES = frozenset({list, tuple, str, bytes})
"""The exact types a T_SEQITER iterates; an iterator over anything else (a
subclass) goes through the reduce protocol."""

SHAPE_MIN = 2
"""A dict with at least this many keys, all str, defines or reuses a shape."""

INTLIST_MIN = 16
"""A list of at least this many ints (all fitting in 64 bits) is stored as EXT_INTLIST."""
INT_TYPECODES = {1: "b", 2: "h", 4: next(c for c in "il" if array(c).itemsize == 4), 8: "q"}
"""``array`` typecodes per EXT_INTLIST width (the C type of 4 bytes is looked up)."""
NONE_EXT = ExtType(EXT_NONE, b"\0")

# EXT_BUFFER kinds (the payload's first byte): what the buffer is restored as.
# Out of band: the kind, then the buffer's index in ``loads(buffers=)``
# (big-endian, 1, 2 or 4 bytes).  In band: the kind | BUFFER_IN_BAND, then the data.
BUFFER_BYTES = 0
BUFFER_BYTEARRAY = 1
BUFFER_VIEW_READONLY = 2  # memoryview, read-only
BUFFER_VIEW_WRITABLE = 3  # memoryview, writable
BUFFER_IN_BAND = 0x80

BUFFER_MIN_SIZE = 4096
"""With a ``buffer_callback``, bytes and bytearray values of at least this
many bytes are offered to it (memoryviews whatever their size); smaller ones
are cheaper to copy than to carry as a buffer of their own."""

PICKLERS = {1: "pickle", 2: "cloudpickle", 3: "dill"}
PICKLER_IDS = {name: code for code, name in PICKLERS.items()}
