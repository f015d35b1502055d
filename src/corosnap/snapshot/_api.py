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

Where an option goes.  One that says how to snapshot (``pickler``, ``key``,
``safe``, ``allow``, ``max_size``, ``migratable``, ``migrate``,
``manifests``, ``migrations``) is an option of the Snapshotter, a change in three places of
this file: a keyword of ``Snapshotter.__init__`` (validated there, stored as
an attribute, listed in ``__slots__`` and ``_OPTIONS``), the same keyword on
the module function(s) it concerns (passed on to ``replace``, and compared
with its default on the fast path), and the use of ``self.<option>`` where
it acts (``dumps``/``loads``, or an argument of what they call).  One that
belongs to a single blob (``buffer_callback``, ``buffers``, as in pickle's
``dumps``/``loads``) is a keyword of the ``dumps``/``loads`` methods and of
the module functions, passed straight through.  Then its tests and docs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial, update_wrapper
from pickle import PickleBuffer
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import IO, TYPE_CHECKING, Any, Literal, NoReturn

from .. import frames as _frames
from .._accel import ENGINE
from .._errors import (
    CodeMismatch,
    CorosnapError,
    CorruptSnapshot,
    LimitExceeded,
    RestoreError,
    SnapshotError,
)
from .._weak import ModuleCache, RecordCache
from ..codec import BufferDecisions, pack_offered, pickler_id
from ..codec._decoder import printable_cause
from ..codec._engines import ENGINES
from ..frames import backend
from . import _asyncgen
from ._blob import DEFAULT_MAX_SIZE, HEADER, HEADER2, open_blob, sign
from ._capture import FrameEncoder, check_target, describe_target
from ._contract import CaptureRoot, capture_root, load_root
from ._contract import Dumps as _Dumps
from ._contract import Loads as _Loads
from ._migrate import Migrations, Migrator, Session, make_migrator
from ._restore import FrameDecoder
from ._signature import signature_table

Pickler = Literal["pickle", "cloudpickle", "dill"]
"""The fallback picklers ``dumps(pickler=)`` accepts (None means cloudpickle)."""

BufferCallback = Callable[[PickleBuffer], Any]
"""``dumps(buffer_callback=)``: as pickle's (protocol 5)."""

_OPTIONS = ("pickler", "key", "safe", "allow", "max_size", "migratable", "migrate", "manifests",
            "migrations")


_SPARE = 4
"""How many emptied encoders a Snapshotter's caches keep (one per thread
that snapshots at the same time, up to this many)."""


class _Caches:
    """What a Snapshotter and its ``replace()`` copies share: the per-code
    caches (weak), the frame engines built on them, the engine's codec."""

    __slots__ = ("engine", "codec", "Encoder", "new_ext_hook", "unpack", "pack", "capture_codes",
                 "restore_codes", "frames_out", "frames_in", "frames_migrating", "hook", "spare",
                 "capture_root", "root", "load_root")

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.codec = ENGINES[engine]
        self.Encoder = self.codec.Encoder
        self.new_ext_hook = self.codec.new_ext_hook
        self.unpack = self.codec.unpack
        self.pack = self.codec.pack
        self.capture_codes: RecordCache[Any] = RecordCache()
        self.restore_codes: ModuleCache[Any] = ModuleCache()
        self.frames_out = FrameEncoder(self.capture_codes, engine)
        self.frames_in = FrameDecoder(self.restore_codes, engine)
        # A blob whose code changed is migrated on the Python engine: the C
        # engine restores only unchanged code (snapshot/_migrate.py).
        self.frames_migrating = FrameDecoder(self.restore_codes, engine, frames_in_c=False)
        self.hook = self.frames_out.hook
        # Encoders emptied after a dumps (Encoder.clear), for the next: making
        # one costs about as much as capturing a small frame.  A list, whose
        # pop and append are atomic, so that threads never share one.
        self.spare: list[Any] = []
        # The C engine's dumps of a generator or coroutine in one call (an
        # encoder taken from spare, the root captured, the blob packed), and
        # what it needs of these caches.
        self.capture_root = capture_root if engine == "c" else None
        # And its loads of an unsigned blob in the default mode in one call
        # (the bytes parsed, the header checked, the root restored).
        self.load_root = None if load_root is None or engine != "c" else partial(
            load_root, self.frames_in, self.restore_codes.data)
        self.root = None if self.capture_root is None else CaptureRoot(
            spare=self.spare, frames=self.frames_out, code_cache=self.capture_codes.data,
            encoder_class=self.Encoder, hook=self.hook)

class Snapshotter:
    """Captures suspended generators, coroutines and async generators as bytes, and rebuilds them.

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
    ``migratable``
        ``dumps`` embeds a compact description of each frame's code (local
        names, the suspension point's structural identity), so that
        ``loads`` with ``migrate=True`` can move the frames onto edited code
        with nothing but the blob (blob format 2, docs/evolution.md).
    ``migrate``
        ``loads`` moves a frame whose function changed since the snapshot
        onto the new code when a correspondence can be proven (or an
        explicit migration is registered), instead of raising CodeMismatch;
        ``NeedsMigration`` says why when it cannot.  Unchanged code restores
        as usual, at the usual speed.
    ``manifests``
        With ``migrate``: descriptions of old code for blobs that carry none
        (a ``corosnap.migrate.Manifest``, a path to one, its JSON object, or
        a list of these), read when the Snapshotter is made.
    ``migrations``
        With ``migrate``: the registry of explicit migrations (default:
        ``corosnap.migrate.migrations``).

    The instance holds its caches (per code object and per named function,
    weakly: dropping a module frees what they hold), so make one and reuse
    it; ``replace(**options)`` makes one with other options that shares them.
    """

    __slots__ = ("pickler", "key", "safe", "allow", "max_size", "migratable", "migrate",
                 "manifests", "migrations", "_pid", "_migrator", "_caches")

    def __init__(
        self,
        *,
        pickler: Pickler | None = None,
        key: bytes | None = None,
        safe: bool = False,
        allow: Iterable[str] = (),
        max_size: int = DEFAULT_MAX_SIZE,
        migratable: bool = False,
        migrate: bool = False,
        manifests: Any = None,
        migrations: Migrations | None = None,
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
        for name, flag in (("migratable", migratable), ("migrate", migrate)):
            if type(flag) is not bool:
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.migratable = migratable
        self.migrate = migrate
        self.manifests = manifests
        self.migrations = migrations
        self._migrator: Migrator | None = make_migrator(migrate, manifests, migrations)
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
        extra = "".join(f", {name}={getattr(self, name)!r}" for name in _OPTIONS[5:]
                        if getattr(self, name) not in (False, None))
        return (f"Snapshotter(pickler={self.pickler!r}, key={key}, safe={self.safe!r}, "
                f"allow={self.allow!r}, max_size={self.max_size!r}{extra})")

    # -- capture ----------------------------------------------------------
    def dumps(self, obj: Any, *, buffer_callback: BufferCallback | None = None) -> bytes:
        """Capture a suspended or not-yet-started generator/coroutine/async generator.

        ``buffer_callback``: as pickle's (protocol 5): called, once the snapshot
        is encoded, with a ``pickle.PickleBuffer`` of every bytes or bytearray
        value of at least 4 KiB and every memoryview, in order; a false result
        (e.g. ``list.append``'s None) leaves the buffer out of the blob, which
        then holds only its index, and ``loads(..., buffers=)`` must be given
        those buffers.  With ``migratable=True`` (an option), the blob is
        format 2 and carries its frames' code descriptions.
        Raises SnapshotError naming the function, the slot and the type at fault.
        """
        if type(obj) is not GeneratorType and type(obj) is not CoroutineType:
            check_target(obj)  # raises, naming what it got
        if _frames._backend is None:
            backend()  # UnsupportedInterpreter, before anything else
        caches = self._caches
        if (caches.capture_root is not None and buffer_callback is None and not self.migratable
                and type(obj) is not AsyncGeneratorType):
            # The C engine's common case in one call (snapshot/_csnapshot.c;
            # what the module function's C entry does too): the blob's
            # bytes, or what _captured finishes.
            try:
                given = caches.capture_root(caches.root, self._pid, obj)
            except Exception as exc:
                given = exc
            if type(given) is bytes:
                return given if self.key is None else sign(given, self.key, ())
            return self._captured(obj, given)
        return self._captured(obj, None, buffer_callback)

    def _captured(self, obj: Any, given: Any,
                  buffer_callback: BufferCallback | None = None) -> bytes:
        """The rest of a dumps the C engine's ``capture_root`` did not finish
        (or all of it): ``given`` is its answer, ``(encoder, root fields)``
        (buffers to decide, checks to run: the blob is finished here), None
        (the root frame declined before anything happened, or no C engine),
        or the exception it raised, met again here the general way, which
        names the frame and the slot at fault (an int past 64 bits or a lone
        surrogate: encoded again, checking every value)."""
        caches = self._caches
        strict = isinstance(given, OverflowError | UnicodeEncodeError)
        if isinstance(given, BaseException):
            given = None
        hook = caches.hook
        decisions = None if buffer_callback is None else BufferDecisions()
        spare = caches.spare
        while True:
            # The common encoder (not strict, no buffer callback) is reused:
            # one emptied by an earlier dumps, else a new one.
            reuse = not strict and buffer_callback is None
            enc = fields = None
            if given is not None:
                enc, fields = given
                given = None
            elif reuse:
                try:
                    enc = spare.pop()
                    enc.pid = self._pid
                except IndexError:
                    pass
            if enc is None:
                enc = caches.Encoder(self._pid, hook, strict, buffer_callback)
            done = False
            try:
                if fields is None:
                    enc.memo[id(obj)] = 0  # the root is memo entry 0 (enc.register)
                    enc.keep.append(obj)
                    fields = (hook(enc, obj) if type(obj) is not AsyncGeneratorType
                              else _asyncgen.encode_root(enc, obj))
                if enc.after:
                    enc.finish()
                if self.migratable:
                    # Format 2: the signature table after the header, built
                    # from the encoder's tables (docs/format.md).
                    fields[0:0] = [HEADER2, signature_table(enc, _frames)]
                else:
                    fields.insert(0, HEADER)
                if enc.offered:  # buffers: decided now that nothing can be rolled back
                    try:
                        enc.finish_buffers(decisions or BufferDecisions())
                    except SnapshotError as err:
                        raise SnapshotError(f"in {describe_target(obj)}: {err}") from None
                    body = caches.pack(fields, pack_offered)
                else:
                    body = caches.pack(fields)
                done = True
                break
            except (OverflowError, UnicodeEncodeError):
                # An int outside msgpack's 64-bit range, or a str with a lone
                # surrogate, slipped through the fast path: encode again, checking.
                if strict:
                    raise
                strict = True
            except ValueError as exc:  # after UnicodeEncodeError, one of them
                # msgpack's (and _ccodec.pack's) nesting limit, 1,024 levels:
                # met when the recursion limit lets the encoder go deeper.
                if str(exc) != "recursion limit exceeded.":
                    raise
                raise SnapshotError(
                    f"in {describe_target(obj)}: values nested too deeply") from None
            finally:
                if done and reuse and len(spare) < _SPARE:
                    enc.clear()  # drops every reference to this snapshot's values
                    spare.append(enc)
                else:
                    enc.cstate = None  # it refers back to enc
        if self.key is not None:
            return sign(body, self.key, () if decisions is None else decisions.out)
        return body

    def dump(self, obj: Any, file: IO[bytes], *,
             buffer_callback: BufferCallback | None = None) -> None:
        """``file.write(self.dumps(obj, buffer_callback=buffer_callback))``."""
        file.write(self.dumps(obj, buffer_callback=buffer_callback))

    # -- restore ----------------------------------------------------------
    def loads(self, data: bytes, *, buffers: Iterable[Any] | None = None) -> Any:
        """Rebuild the generator/coroutine/async generator captured in ``data``.

        ``buffers``: the out-of-band buffers ``dumps``'s ``buffer_callback`` set
        aside, in order (any bytes-like objects; the restored values share their
        memory where the type allows, as pickle's do); a signature covers them.
        With ``migrate=True`` (an option), a frame whose function changed is
        moved onto the new code, or ``NeedsMigration`` says why not.
        """
        if _frames._backend is None:
            backend()  # UnsupportedInterpreter, before anything else
        caches = self._caches
        load_root = caches.load_root  # None but on the C engine
        if (load_root is not None and buffers is None and type(data) is bytes
                and self.key is None and self.safe is False and self._migrator is None
                and len(data) <= self.max_size):
            # The C engine's common case in one call: parsed, checked and
            # restored (what the module function's C entry does too).
            try:
                out = load_root(data)
            except BaseException as exc:
                self._failed(exc)
            if out is not None and type(out) is not list:
                return out
            return self._loaded(data, out)
        if buffers is not None:
            buffers = _check_buffers(buffers)
        tree = None
        if self.key is None and type(data) is bytes and len(data) <= self.max_size:
            # The common case inline: an unsigned blob of this version (None:
            # open_blob parses again and says what is wrong).
            tree = caches.unpack(data)
            if type(tree) is not list or not tree or (tree[0] is not HEADER
                                                      and tree[0] is not HEADER2):
                tree = None
        if tree is None:
            tree = open_blob(data, self.key, self.max_size, buffers, caches.new_ext_hook)
        table = None if tree[0] is HEADER else _split_table(tree)
        migrator = self._migrator
        if migrator is None:
            return self._restore(tree, buffers)
        try:
            # Migration costs nothing while the code has not changed: the
            # blob is restored as usual (C engine included), and only a
            # changed function makes it restore again, from the bytes
            # (decoding consumes the tree), with a migration session.
            return self._restore(tree, buffers)
        except CodeMismatch:
            tree = open_blob(data, self.key, self.max_size, buffers, caches.new_ext_hook)
            _split_table(tree)
        return self._restore(tree, buffers, Session(migrator, table))

    def _loaded(self, data: bytes, out: list[Any] | None) -> Any:
        """The rest of a loads the C engine's ``load_root`` did not finish:
        ``out`` is the parsed blob (a list: a blob of this version whose root
        it declined, untouched, restored here and not offered to it again),
        or None (the bytes are not a blob it reads: opened again here, which
        says what is wrong)."""
        if out is None:
            out = open_blob(data, None, self.max_size, None, self._caches.new_ext_hook)
        elif out[0] is HEADER:
            return self._restore(out, None, declined=True)
        if out[0] is not HEADER:
            _split_table(out)
        return self._restore(out, None)

    @staticmethod
    def _failed(exc: BaseException) -> NoReturn:
        """Raise what ``loads`` raises for ``exc``, raised while a parsed blob
        was restored (``_restore_failure``)."""
        failure = _restore_failure(exc)
        if failure is None:
            raise exc
        raise failure[0] from failure[1]

    def _restore(self, tree: list[Any], buffers: list[Any] | None,
                 session: Session | None = None, declined: bool = False) -> Any:
        """The root frame of a parsed, verified blob (``[header, *root fields]``);
        ``session``: a migration session (frames in Python, see _migrate.py)."""
        caches = self._caches
        try:
            if session is None:
                return caches.frames_in.restore(tree, self.safe, self.allow, buffers, None,
                                                declined)
            return caches.frames_migrating.restore(tree, self.safe, self.allow, buffers,
                                                   session)
        except BaseException as exc:
            self._failed(exc)

    def load(self, file: IO[bytes], *, buffers: Iterable[Any] | None = None) -> Any:
        """``self.loads(file.read(), buffers=buffers)``."""
        return self.loads(file.read(), buffers=buffers)


def _restore_failure(exc: BaseException) -> tuple[BaseException, BaseException | None] | None:
    """What ``loads`` raises for ``exc``, raised while a parsed blob was
    restored, and its cause; None: ``exc`` itself goes through (a corosnap
    error, KeyboardInterrupt)."""
    if isinstance(exc, CorosnapError | KeyboardInterrupt):
        return None
    if isinstance(exc, RecursionError):
        return LimitExceeded("blob nested too deeply"), None
    if isinstance(exc, MemoryError):
        return LimitExceeded("blob asks for more memory than is available"), None
    if isinstance(exc, TypeError | ValueError | IndexError | KeyError | AttributeError
                  | OverflowError):
        return CorruptSnapshot(f"malformed blob: {exc!r}"), printable_cause(exc)
    # user code run by a reduce callable, an import, ...
    return RestoreError(f"restoring the snapshot failed: {exc!r}"), printable_cause(exc)


def _split_table(tree: list[Any]) -> Any:
    """A migratable blob's signature table (None for any other blob), taken
    out of ``tree`` so that it reads ``[header, *root fields]`` as format 1."""
    if tree[0] is not HEADER2:
        return None
    if len(tree) < 2:
        raise CorruptSnapshot("migratable blob without its signature table")
    return tree.pop(1)


def _check_buffers(buffers: Iterable[Any]) -> list[Any]:
    out = list(buffers)
    for i, buf in enumerate(out):
        if type(buf) not in (bytes, bytearray, memoryview, PickleBuffer):
            try:
                memoryview(buf).release()
            except TypeError:
                raise TypeError(f"loads(): buffers[{i}] is a {type(buf).__name__}, not a "
                                "bytes-like object") from None
    return out


class _Default(Snapshotter):
    """The Snapshotter behind the module functions, whose options are fixed:
    the C entries of ``loads`` and ``dumps`` are made from them once (a
    changed option would hold for the Python functions only)."""

    __slots__ = ("_fixed",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._fixed = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_fixed", False):
            raise AttributeError(f"the default Snapshotter's options are fixed (setting "
                                 f"{name!r}); make one: Snapshotter(...) or default().replace("
                                 "...)")
        super().__setattr__(name, value)


_default: Snapshotter = _Default()
"""The instance the module functions use (and share caches with)."""


_migratable = _default.replace(migratable=True)
_migrating = _default.replace(migrate=True)
"""The default instance with ``migratable=True`` / ``migrate=True`` alone (the
module functions' common cases, made once: they share its caches)."""


def default() -> Snapshotter:
    """The Snapshotter behind ``corosnap.dumps``/``loads`` (its caches are theirs)."""
    return _default


def dumps(
    obj: Any,
    *,
    key: bytes | None = None,
    pickler: Pickler | None = None,
    buffer_callback: BufferCallback | None = None,
    migratable: bool = False,
) -> bytes:
    """Capture a suspended or not-yet-started generator/coroutine/async generator.

    ``key``: sign the blob with HMAC-SHA256 (``loads(..., key=)`` verifies it).
    ``pickler``: the fallback pickler for values corosnap cannot store natively:
    ``"cloudpickle"`` (default), ``"pickle"`` or ``"dill"``.
    ``buffer_callback``: as pickle's (protocol 5): called, once the snapshot is
    encoded, with a ``pickle.PickleBuffer`` of every bytes or bytearray value of
    at least 4 KiB and every memoryview, in order; a false result (e.g.
    ``list.append``'s None) leaves the buffer out of the blob, which then holds
    only its index, and ``loads(..., buffers=)`` must be given those buffers.
    ``migratable``: embed a compact description of each frame's code (local
    names, the suspension point's structural identity), so that
    ``loads(blob, migrate=True)`` can move the frames onto edited code with
    nothing but the blob (docs/evolution.md).
    Raises SnapshotError naming the function, the slot and the type at fault.
    See ``Snapshotter`` for a reusable object holding the options.
    """
    if key is None and pickler is None and type(migratable) is bool:
        snap = _migratable if migratable else _default
    else:  # (a flag that is no bool: the Snapshotter's TypeError names it)
        snap = _default.replace(key=key, pickler=pickler, migratable=migratable)
    if buffer_callback is None:
        return snap.dumps(obj)
    return snap.dumps(obj, buffer_callback=buffer_callback)


def loads(
    data: bytes,
    *,
    key: bytes | None = None,
    safe: bool = False,
    allow: Iterable[str] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    buffers: Iterable[Any] | None = None,
    migrate: bool = False,
    manifests: Any = None,
    migrations: Migrations | None = None,
) -> Any:
    """Rebuild the generator/coroutine/async generator captured in ``data``.

    Only give the default (``safe=False``) mode trusted input: like pickle, it
    can import modules and call the reduce callables the blob names, and the
    fallback pickler can run arbitrary code.  ``safe=True`` refuses pickled
    payloads and any global outside the modules in ``allow``.  ``key``: verify
    the blob's HMAC-SHA256 signature (which covers ``buffers`` too) before
    anything is decoded.  ``max_size``: refuse larger blobs before parsing
    them.  ``buffers``: the out-of-band buffers ``dumps``'s ``buffer_callback``
    set aside, in order (any bytes-like objects; the restored values share
    their memory where the type allows, as pickle's do).

    ``migrate=True``: a frame whose function changed since the snapshot is
    moved onto the new code when a correspondence can be proven (or an
    explicit migration is registered), instead of raising CodeMismatch
    (``NeedsMigration`` says why not); the old code's description comes from
    the blob (``dumps(migratable=True)``) or from ``manifests`` (a
    ``corosnap.migrate.Manifest``, a path to one, or a list of them).
    ``migrations``: the registry of explicit migrations (default:
    ``corosnap.migrate.migrations``).  See docs/evolution.md.
    """
    if (key is None and safe is False and allow == () and max_size == DEFAULT_MAX_SIZE
            and manifests is None and migrations is None and type(migrate) is bool):
        snap = _migrating if migrate else _default
    else:
        snap = _default.replace(key=key, safe=safe, allow=allow, max_size=max_size,
                                migrate=migrate, manifests=manifests, migrations=migrations)
    return snap.loads(data) if buffers is None else snap.loads(data, buffers=buffers)


def dump(obj: Any, file: IO[bytes], *, key: bytes | None = None,
         pickler: Pickler | None = None, buffer_callback: BufferCallback | None = None,
         migratable: bool = False) -> None:
    """``file.write(dumps(obj, key=key, pickler=pickler, buffer_callback=buffer_callback,
    migratable=migratable))``."""
    file.write(dumps(obj, key=key, pickler=pickler, buffer_callback=buffer_callback,
                     migratable=migratable))


def load(file: IO[bytes], *, key: bytes | None = None, safe: bool = False,
         allow: Iterable[str] = (), max_size: int = DEFAULT_MAX_SIZE,
         buffers: Iterable[Any] | None = None, migrate: bool = False, manifests: Any = None,
         migrations: Migrations | None = None) -> Any:
    """``loads(file.read(), key=key, safe=safe, allow=allow, max_size=max_size,
    buffers=buffers, migrate=migrate, manifests=manifests, migrations=migrations)``."""
    return loads(file.read(), key=key, safe=safe, allow=allow, max_size=max_size,
                 buffers=buffers, migrate=migrate, manifests=manifests, migrations=migrations)


if (not TYPE_CHECKING and _Loads is not None and _default._caches.load_root is not None
        and _default._caches.root is not None):
    # On the C engine, ``loads(data)`` and ``dumps(obj)`` with nothing else
    # given are answered in C (snapshot/_csnapshot.c: Loads and Dumps, as
    # _pickle.loads is pickle's); every other call, and whatever the C engine
    # leaves, goes to the functions above, the reference.  update_wrapper
    # gives each that function's name, docstring and signature
    # (inspect.signature follows __wrapped__).
    loads = update_wrapper(
        _Loads(frames=_default._caches.frames_in, code_cache=_default._caches.restore_codes.data,
               max_size=DEFAULT_MAX_SIZE, reference=loads, finish=_default._loaded,
               failure=_default._failed),
        loads)
    dumps = update_wrapper(
        _Dumps(root=_default._caches.root, pid=_default._pid, reference=dumps,
               finish=_default._captured),
        dumps)

__all__ = ["BufferCallback", "Pickler", "Snapshotter", "default", "dump", "dumps", "load",
           "loads"]
