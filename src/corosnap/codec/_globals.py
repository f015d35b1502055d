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


_verified: dict[int, tuple[Any, tuple[str, str]]] = {}


def global_name(obj: Any) -> tuple[str, str] | None:
    """(module, qualname) if that name resolves back to ``obj`` itself, else None.

    Only positive answers are cached (keyed by id, holding the object): an
    object reachable as a module attribute lives as long as its module, while
    caching the many short-lived objects that have no such name (closures,
    lambdas, bound methods) would grow without bound.
    """
    hit = _verified.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    try:
        if resolve_name(module, qualname) is not obj:
            return None
    except Exception:
        return None
    name = (module, qualname)
    _verified[id(obj)] = (obj, name)
    return name


_DESCRIPTORS = (
    types.WrapperDescriptorType, types.MethodDescriptorType, types.ClassMethodDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType, types.MethodWrapperType,
    types.MethodType, types.BuiltinMethodType,
)
"""Attributes a qualified name reaches through an allowed class that are really
someone else's code (``object.__getattribute__``, ``type.__subclasses__``)."""


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
            raise UnsafeSnapshot(f"safe mode refused {module}.{qualname}: a "
                                 f"{type(obj).__name__} reached through a class")
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
