"""The public entry points: ``Snapshotter``, and ``dumps``/``loads``/``dump``/``load``.

What lives here: the object that owns a caller's options and the caches
that make repeated snapshots cheap, playing the part ``pickle.Pickler`` and
``msgpack.Packer`` play for their formats; and the module-level functions,
which use one shared default instance.  No I/O beyond the file object a
caller hands to ``dump``/``load``.

Why one object for both directions (pickle has a Pickler and an
Unpickler): the options are shared (``key`` signs and verifies), and so are
the caches' subjects (the code objects a process snapshots are those it
restores), like ``struct.Struct``, which packs and unpacks with one compiled
format.  Its caches are per instance and weak (``corosnap._weak``): a
per-code capture record, and per named code a restore record with its
plans.  Make one Snapshotter and reuse it; ``replace()`` makes another with
other options that shares them.

Adding an option (``migrate=``, ``buffer_callback=``, ...) is a change in
three places, all in this file: a keyword of ``Snapshotter.__init__``
(validated there and stored as an attribute, listed in ``__slots__`` and
``_OPTIONS``), the same keyword on the module function(s) it concerns
(passed on to ``replace``, and compared with its default on the fast path),
and the use of ``self.<option>`` where it acts (``dumps``/``loads`` here,
or an argument of what they call).  Then its tests and docs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import CoroutineType, GeneratorType
from typing import IO, Any, Literal

import msgpack

from .. import frames as _frames
from .._accel import ENGINE
from .._errors import CorosnapError, CorruptSnapshot, LimitExceeded, RestoreError
from .._weak import ModuleCache, RecordCache
from ..codec import pickler_id
from ..codec._decoder import printable_cause
from ..codec._engines import ENGINES
from ..frames import backend
from ._blob import DEFAULT_MAX_SIZE, HEADER, open_blob, sign
from ._capture import FrameEncoder, check_target
from ._restore import FrameDecoder

Pickler = Literal["cloudpickle", "pickle", "dill"]
"""The fallback picklers, for values corosnap cannot store natively."""

_OPTIONS = ("pickler", "key", "safe", "allow", "max_size")


class _Caches:
    """What a Snapshotter and its ``replace()`` copies share: the per-code
    caches (weak), the frame engines built on them, a reusable msgpack
    Packer per thread."""

    __slots__ = ("engine", "codec", "capture_codes", "restore_codes", "frames_out", "frames_in",
                 "local")

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.codec = ENGINES[engine]
        self.capture_codes: RecordCache[Any] = RecordCache()
        self.restore_codes: ModuleCache[Any] = ModuleCache()
        self.frames_out = FrameEncoder(self.capture_codes, engine)
        self.frames_in = FrameDecoder(self.restore_codes, engine)
        self.local = threading.local()

    def packer(self) -> msgpack.Packer:
        """This thread's Packer: msgpack.packb builds a new one per call,
        which costs more than packing a small snapshot."""
        packer = getattr(self.local, "packer", None)
        if packer is None:
            packer = self.local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        return packer


class Snapshotter:
    """Captures suspended generators and coroutines as bytes, and rebuilds them.

    Options (each also a keyword of the module functions):

    ``pickler``
        The fallback pickler for values corosnap cannot store natively:
        ``"cloudpickle"`` (default), ``"pickle"`` or ``"dill"``.  Used by
        ``dumps``; ``loads`` reads whichever a blob names.
    ``key``
        ``dumps`` signs blobs with HMAC-SHA256 under this key; ``loads``
        verifies the signature before anything is decoded (SignatureError).
    ``safe``
        ``loads`` refuses pickled payloads and any global outside ``allow``.
        Only give the default (``safe=False``) mode trusted input: like
        pickle, it can import modules and call the reduce callables a blob
        names, and the fallback pickler can run arbitrary code.
    ``allow``
        Module names (each allowing its submodules) safe mode accepts.
    ``max_size``
        ``loads`` refuses larger blobs before parsing them (LimitExceeded).

    The instance holds its caches (per code object and per named function,
    weakly: dropping a module frees what they hold), so make one and reuse
    it; ``replace(**options)`` makes one with other options that shares them.
    """

    __slots__ = ("pickler", "key", "safe", "allow", "max_size", "_pid", "_caches")

    def __init__(
        self,
        *,
        pickler: Pickler | None = None,
        key: bytes | None = None,
        safe: bool = False,
        allow: Iterable[str] = (),
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._pid = pickler_id(pickler)  # ValueError naming the choices
        self.pickler = pickler
        if key is not None and not isinstance(key, bytes | bytearray | memoryview):
            raise TypeError(f"key must be bytes or None, got {type(key).__name__}")
        self.key = None if key is None else bytes(key)
        self.safe = bool(safe)
        if isinstance(allow, str | bytes):
            raise TypeError(f"allow must be an iterable of module names, not a single "
                            f"{type(allow).__name__} ({allow!r})")
        self.allow = tuple(allow)
        if not all(type(name) is str for name in self.allow):
            raise TypeError(f"allow must hold module names (str), got {self.allow!r}")
        if type(max_size) is not int or max_size < 0:
            raise TypeError(f"max_size must be an int >= 0, got {max_size!r}")
        self.max_size = max_size
        self._caches = _Caches(ENGINE)

    def replace(self, **options: Any) -> Snapshotter:
        """A Snapshotter with these options changed (the others as here),
        sharing this one's caches."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; options: {list(_OPTIONS)}")
        new = Snapshotter(**{**{name: getattr(self, name) for name in _OPTIONS}, **options})
        new._caches = self._caches
        return new

    def _with_engine(self, engine: str) -> Snapshotter:
        """This Snapshotter's options on the given engine (``"c"`` or
        ``"python"``), with caches of its own: for tests and tools that hold
        the two engines against each other in one process."""
        if engine == "c" and ENGINE != "c":
            raise RuntimeError("the C engine is not loaded in this process")
        new = self.replace()
        new._caches = _Caches(engine)
        return new

    def __repr__(self) -> str:
        key = None if self.key is None else "<set>"
        return (f"Snapshotter(pickler={self.pickler!r}, key={key}, safe={self.safe!r}, "
                f"allow={self.allow!r}, max_size={self.max_size!r})")

    # -- capture ----------------------------------------------------------
    def dumps(self, obj: Any) -> bytes:
        """Capture a suspended or not-yet-started generator/coroutine as bytes.

        Raises SnapshotError naming the function, the slot and the type at fault.
        """
        if type(obj) is not GeneratorType and type(obj) is not CoroutineType:
            check_target(obj)  # raises, naming what it got
        if _frames._backend is None:
            backend()  # UnsupportedInterpreter, before anything else
        try:
            body = self._encode(obj, False)
        except (OverflowError, UnicodeEncodeError):
            # An int outside msgpack's 64-bit range, or a str with a lone
            # surrogate, slipped through the fast path: encode again, checking.
            body = self._encode(obj, True)
        if self.key is not None:
            return sign(body, self.key)
        return body

    def _encode(self, obj: Any, strict: bool) -> bytes:
        caches = self._caches
        hook = caches.frames_out.hook
        enc = caches.codec.Encoder(self._pid, hook, strict)
        enc.memo[id(obj)] = 0  # the root is memo entry 0 (enc.register)
        enc.keep.append(obj)
        try:
            fields = hook(enc, obj)
        finally:
            enc.cstate = None  # it refers back to enc
        fields.insert(0, HEADER)
        packer = getattr(caches.local, "packer", None) or caches.packer()
        try:
            return packer.pack(fields)
        except BaseException:
            caches.local.packer = None  # a failed pack may leave data in the buffer
            raise

    def dump(self, obj: Any, file: IO[bytes]) -> None:
        """``file.write(self.dumps(obj))``."""
        file.write(self.dumps(obj))

    # -- restore ----------------------------------------------------------
    def loads(self, data: bytes) -> Any:
        """Rebuild the generator/coroutine captured in ``data``."""
        if _frames._backend is None:
            backend()  # UnsupportedInterpreter, before anything else
        tree = None
        if self.key is None and type(data) is bytes and len(data) <= self.max_size:
            # The common case inline: an unsigned blob of this version.
            try:
                tree = msgpack.unpackb(data, strict_map_key=False,
                                       ext_hook=self._caches.codec.new_ext_hook())
            except Exception:  # noqa: BLE001 - open_blob parses again and says what is wrong
                tree = None
            if type(tree) is not list or not tree or tree[0] is not HEADER:
                tree = None
        if tree is None:
            tree = open_blob(data, self.key, self.max_size, self._caches.codec.new_ext_hook)
        try:
            return self._caches.frames_in.restore(tree, self.safe, self.allow)
        except CorosnapError:
            raise
        except RecursionError:
            raise LimitExceeded("blob nested too deeply") from None
        except MemoryError:
            raise LimitExceeded("blob asks for more memory than is available") from None
        except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError) as exc:
            raise CorruptSnapshot(f"malformed blob: {exc!r}") from printable_cause(exc)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # user code run by a reduce callable, an import, ...
            raise RestoreError(
                f"restoring the snapshot failed: {exc!r}") from printable_cause(exc)

    def load(self, file: IO[bytes]) -> Any:
        """``self.loads(file.read())``."""
        return self.loads(file.read())


_default = Snapshotter()
"""The instance the module functions use (and share caches with)."""


def default() -> Snapshotter:
    """The Snapshotter behind ``corosnap.dumps``/``loads`` (its caches are theirs)."""
    return _default


def dumps(obj: Any, *, key: bytes | None = None, pickler: Pickler | None = None) -> bytes:
    """Capture a suspended or not-yet-started generator/coroutine as bytes.

    ``key``: sign the blob with HMAC-SHA256 (``loads(..., key=)`` verifies it).
    ``pickler``: the fallback pickler for values corosnap cannot store natively:
    ``"cloudpickle"`` (default), ``"pickle"`` or ``"dill"``.
    Raises SnapshotError naming the function, the slot and the type at fault.
    See ``Snapshotter`` for a reusable object holding these options.
    """
    if key is None and pickler is None:
        return _default.dumps(obj)
    return _default.replace(key=key, pickler=pickler).dumps(obj)


def loads(
    data: bytes,
    *,
    key: bytes | None = None,
    safe: bool = False,
    allow: Iterable[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
) -> Any:
    """Rebuild the generator/coroutine captured in ``data``.

    Only give the default (``safe=False``) mode trusted input: like pickle, it
    can import modules and call the reduce callables the blob names, and the
    fallback pickler can run arbitrary code.  ``safe=True`` refuses pickled
    payloads and any global outside the modules in ``allow``.  ``key``: verify
    the blob's HMAC-SHA256 signature before anything is decoded.  ``max_size``:
    refuse larger blobs before parsing them.
    """
    if key is None and safe is False and allow == () and max_size == DEFAULT_MAX_SIZE:
        return _default.loads(data)
    return _default.replace(key=key, safe=safe, allow=allow, max_size=max_size).loads(data)


def dump(obj: Any, file: IO[bytes], *, key: bytes | None = None,
         pickler: Pickler | None = None) -> None:
    """``file.write(dumps(obj, key=key, pickler=pickler))``."""
    file.write(dumps(obj, key=key, pickler=pickler))


def load(file: IO[bytes], *, key: bytes | None = None, safe: bool = False,
         allow: Iterable[str] = (), max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """``loads(file.read(), key=key, safe=safe, allow=allow, max_size=max_size)``."""
    return loads(file.read(), key=key, safe=safe, allow=allow, max_size=max_size)


__all__ = ["Pickler", "Snapshotter", "default", "dump", "dumps", "load", "loads"]
