"""Global references: objects named by module and qualified name.

Functions, classes, builtins and modules are stored by name, never by value,
when their name leads back to the very same object.  A small table of
*well-known* globals (the builtins iterators and the reduce helpers of the
standard library) gets one-byte ids, since they appear in almost every
snapshot; its order is part of the format, so only append to it.

Safe mode: ``check_allowed`` refuses any module outside the caller's
``allow`` list (a name allows the module and its submodules).  The well-known
table is vetted to be harmless and is always allowed.
"""

from __future__ import annotations

import builtins
import copyreg
import functools
import importlib
import sys
import types
from typing import Any

from .._errors import CorruptSnapshot, RestoreError, UnsafeSnapshot
from .._weak import IdentityCache

WELLKNOWN: tuple[Any, ...] = (
    builtins.iter,
    builtins.enumerate,
    builtins.zip,
    builtins.reversed,
    builtins.map,
    builtins.filter,
    builtins.getattr,
    copyreg.__newobj__,  # type: ignore[attr-defined]
    copyreg.__newobj_ex__,  # type: ignore[attr-defined]
    copyreg._reconstructor,  # type: ignore[attr-defined]
    builtins.object,
    builtins.range,
    functools.partial,
    builtins.slice,
    builtins.list,
    builtins.dict,
    builtins.set,
    builtins.frozenset,
    builtins.tuple,
    builtins.bytearray,
    builtins.int,
    builtins.str,
    builtins.float,
    builtins.complex,
    builtins.bool,
    builtins.bytes,
    type(None),
)
WELLKNOWN_INDEX = {id(obj): i for i, obj in enumerate(WELLKNOWN)}

SAFE_CALLABLES = frozenset(
    id(obj) for obj in (builtins.iter, builtins.enumerate, builtins.zip, builtins.reversed,
                        builtins.range, builtins.slice, functools.partial, builtins.object)
)
"""Well-known callables safe mode lets a blob call.  ``getattr``, ``map`` and
``filter`` are left out on purpose: chained through the reduce protocol they
reach any attribute (``f.__globals__['__builtins__'].eval``) or call anything."""

NEVER_CALLED = frozenset(
    id(obj) for obj in (builtins.list, builtins.tuple, builtins.set, builtins.frozenset,
                        builtins.dict, builtins.bytes, builtins.bytearray, builtins.str,
                        builtins.int, builtins.float, builtins.complex, builtins.bool)
)
"""Builtin types corosnap stores natively, so no blob it writes calls them; a blob
that does (``tuple(range(10**12))``) is refused in every mode."""


class NotAClassWalk(AttributeError):
    """A qualified name that steps through something other than a class."""


def resolve_name(module: str, qualname: str) -> Any:
    """Import ``module`` and walk ``qualname``; AttributeError/ImportError propagate."""
    mod = sys.modules.get(module)
    if mod is None:
        mod = importlib.import_module(module)
    obj: Any = mod
    for i, part in enumerate(qualname.split(".")):
        if i and not isinstance(obj, type):
            # A qualified name only ever walks through classes; anything else
            # (another module, a dict such as __builtins__) is a way out.
            raise NotAClassWalk(f"{module}.{qualname} walks through a non-class")
        obj = getattr(obj, part)
    return obj


_verified: IdentityCache[tuple[str, str]] = IdentityCache()


def global_name(obj: Any) -> tuple[str, str] | None:
    """(module, qualname) if that name resolves back to ``obj`` itself, else None.

    Only positive answers are cached, by identity and weakly (an object that
    cannot be weakly referenced is looked up every time): caching the many
    short-lived objects that have no such name (closures, lambdas, bound
    methods) would grow without bound, and holding the named ones would keep
    a dropped module's functions and classes alive.
    """
    hit = _verified.get(obj)
    if hit is not None:
        return hit
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    try:
        if resolve_name(module, qualname) is not obj:
            return None
    except Exception:
        return None
    return _verified.put(obj, (module, qualname))


_DESCRIPTORS = (
    types.WrapperDescriptorType, types.MethodDescriptorType, types.ClassMethodDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType, types.MethodWrapperType,
    types.MethodType, types.BuiltinMethodType,
)
"""Attributes a qualified name reaches through an allowed class that are really
someone else's code (``object.__getattribute__``, ``type.__subclasses__``)."""


_MRO = type.__dict__["__mro__"].__get__
_TYPE_DICT = type.__dict__["__dict__"].__get__


def _static_lookup(cls: Any, name: str) -> Any:
    """``name`` in the dicts along ``cls``'s MRO, as ``getattr`` finds a method,
    without running any code (no ``__getattr__``, metaclass or descriptor)."""
    for klass in _MRO(cls):
        d = _TYPE_DICT(klass)
        if name in d:
            return d[name]
    return None


def resolve_method(obj: Any, name: str) -> tuple[Any, Any]:
    """The method a blob's tag 21 ``[obj, name]`` stands for, and the function
    or method descriptor it is made of.

    Found by ``name`` on a type's MRO, never on ``obj`` itself, in one of these
    shapes only: a plain Python function of ``type(obj)`` or a method
    descriptor of a C type (bound to ``obj``: ``f.read``, ``[].append``); when
    ``obj`` is a class, a ``classmethod`` or C class method of it (bound to
    it: ``Cls.make``, ``date.fromordinal``) or a C method descriptor of it,
    unbound (``list.append``, which 3.11's ``LOAD_METHOD`` leaves on the
    stack).  The encoder uses tag 21 only when this gives back the very object
    it holds.  LookupError otherwise.
    """
    attr = _static_lookup(type(obj), name)
    if type(attr) is types.FunctionType:
        return types.MethodType(attr, obj), attr
    if type(attr) is types.MethodDescriptorType:
        return attr.__get__(obj), attr
    try:
        attr = _static_lookup(obj, name)  # TypeError: obj is not a class
    except TypeError:
        attr = None
    if type(attr) is classmethod and type(attr.__func__) is types.FunctionType:
        return types.MethodType(attr.__func__, obj), attr.__func__
    if type(attr) is types.ClassMethodDescriptorType:
        return attr.__get__(None, obj), attr
    if type(attr) is types.MethodDescriptorType:
        return attr, attr
    raise LookupError(f"{type(obj).__qualname__} has no method {name!r} to bind")


_C_METHODS = (types.MethodDescriptorType, types.ClassMethodDescriptorType)


SAFE_METHOD_OWNERS = frozenset(
    id(t) for t in (list, dict, set, frozenset, bytearray, bytes, str, tuple, int, float,
                    complex, bool)
)
"""Builtin types whose C methods safe mode binds to an object of the blob
(``append = result.append``): their objects are plain data the blob can
build anyway.  ``str.format`` and ``format_map`` are left out: a format
string walks attributes (``"{0.__globals__}"``)."""
_UNSAFE_METHOD_NAMES = frozenset({"format", "format_map"})


def check_method_allowed(obj: Any, name: str, func: Any, allow: tuple[str, ...]) -> None:
    """Safe mode gate for a method (tag 21): its function must come from an
    allowed module, or be a C method of a builtin data type above or of a C
    type of an allowed module.  ``obj`` itself was decoded by the same rules."""
    if type(func) in _C_METHODS:
        owner = func.__objclass__
        if (id(owner) in SAFE_METHOD_OWNERS and name not in _UNSAFE_METHOD_NAMES) or (
                id(owner) not in SAFE_METHOD_OWNERS
                and module_allowed(getattr(owner, "__module__", "") or "", allow)):
            return
        where = f"{getattr(owner, '__module__', '?')}.{owner.__qualname__}.{name}"
        if id(owner) in SAFE_METHOD_OWNERS:
            raise UnsafeSnapshot(f"safe mode refused the method {where}: a format "
                                 "string can walk the attributes of its arguments")
    else:
        module = func.__module__
        if isinstance(module, str) and module_allowed(module, allow):
            return
        where = f"{module}.{func.__qualname__}"
    raise UnsafeSnapshot(
        f"safe mode refused the method {where} of a {type(obj).__qualname__} object: "
        f"not a function of a module in allow={allow!r}"
    )


HARMLESS_CALLABLES = SAFE_CALLABLES | frozenset(
    id(obj) for obj in (builtins.int, builtins.str, builtins.float, builtins.complex,
                        builtins.bool, type(None))
)
"""Well-known globals an iterator of a safe-mode blob may call on its items
(``map(str, xs)``, ``filter(bool, xs)``): the safe callables (lazy: ``iter``,
``zip``...) and constructors of scalars.  Not ``getattr``, ``map``, ``filter``
or the ``copyreg`` helpers: called on items the blob chooses, they walk
attributes, call anything or build instances of any class.  Not ``list``,
``tuple``, ``set``, ``dict``, ``bytes`` and the like either: they consume an
item that may be an iterator, and an iterator consuming, in C, iterators the
blob chose can recurse without bound (``map(tuple, iter([m, m, ...]))`` with
``m`` that very map)."""


def check_callable_allowed(func: Any, allow: tuple[str, ...], holder: str,
                           _depth: int = 0) -> None:
    """Safe mode gate for a function a restored iterator will call on each
    item (map's, filter's, a key or predicate function): UnsafeSnapshot unless
    it is None, a harmless well-known callable, a function or class of an
    allowed module (or a callable instance of one), a method safe mode lets a
    blob hold (a function of an allowed module, a C method of a builtin data
    type but ``str.format``), or a ``functools.partial`` of one of these."""
    if func is None or id(func) in HARMLESS_CALLABLES:
        return
    t = type(func)
    ok = False
    if t is types.FunctionType or isinstance(func, type):
        ok = module_allowed(getattr(func, "__module__", "") or "", allow)
    elif t is types.MethodType:
        return check_callable_allowed(func.__func__, allow, holder, _depth + 1)
    elif t is functools.partial and _depth < 16:
        return check_callable_allowed(func.func, allow, holder, _depth + 1)
    elif t in (types.BuiltinMethodType, types.MethodDescriptorType,
               types.ClassMethodDescriptorType):
        bound = getattr(func, "__self__", None)
        owner = getattr(func, "__objclass__", None) or (
            bound if isinstance(bound, type) else type(bound))
        name = getattr(func, "__name__", "")
        if owner is types.ModuleType or bound is None:
            ok = module_allowed(getattr(func, "__module__", "") or "", allow)
        elif id(owner) in SAFE_METHOD_OWNERS:
            ok = name not in _UNSAFE_METHOD_NAMES
        else:
            ok = module_allowed(getattr(owner, "__module__", "") or "", allow)
    elif t.__module__ != "builtins":
        ok = module_allowed(t.__module__, allow)  # an instance whose class is allowed
    if not ok:
        raise UnsafeSnapshot(
            f"safe mode refused {holder} calling {func!r}: an iterator calls its function "
            f"on every item, and this one is not a function of a module in allow={allow!r} "
            "nor a harmless builtin"
        )


def module_allowed(module: str, allow: tuple[str, ...]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allow)


def check_allowed(module: str, qualname: str, allow: tuple[str, ...], what: str) -> None:
    """Safe mode gate for a global reference (raises UnsafeSnapshot)."""
    if not module_allowed(module, allow):
        raise UnsafeSnapshot(
            f"safe mode refused {what} {module}.{qualname}: module {module!r} is not in "
            f"allow={allow!r}"
        )


def load_global(module: str, qualname: str, safe: bool, allow: tuple[str, ...]) -> Any:
    """Resolve a global reference from a blob, honouring safe mode."""
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise CorruptSnapshot("global reference with a non-string name")
    if safe:
        check_allowed(module, qualname, allow, "global")
    try:
        obj = resolve_name(module, qualname)
    except NotAClassWalk as exc:
        if safe:
            raise UnsafeSnapshot(f"safe mode refused {module}.{qualname}: {exc}") from None
        raise RestoreError(f"cannot resolve global {module}.{qualname}: {exc}") from None
    except Exception as exc:
        raise RestoreError(f"cannot resolve global {module}.{qualname}: {exc!r}") from exc
    if safe:
        if isinstance(obj, _DESCRIPTORS) and id(obj) not in SAFE_CALLABLES:
            if "." in qualname:
                why = f"a {type(obj).__name__} reached through a class"
            else:
                # A builtin function held as a value: a blob could put one
                # (eval) where the code calls what it finds.
                why = (f"a builtin {type(obj).__name__} held as a value (safe mode holds "
                       "builtins only from its vetted set: iter, enumerate, zip, reversed, "
                       "range, slice, functools.partial)")
            raise UnsafeSnapshot(f"safe mode refused {module}.{qualname}: {why}")
        if isinstance(obj, types.ModuleType) and not module_allowed(obj.__name__, allow):
            raise UnsafeSnapshot(f"safe mode refused {module}.{qualname}: it is the module "
                                 f"{obj.__name__}, not in allow={allow!r}")
        owner = getattr(obj, "__module__", None)
        if isinstance(owner, str) and owner != module and not module_allowed(owner, allow):
            raise UnsafeSnapshot(
                f"safe mode refused {module}.{qualname}: it is {owner}.{qualname.split('.')[-1]}"
                f", imported from a module not in allow={allow!r}"
            )
    return obj
