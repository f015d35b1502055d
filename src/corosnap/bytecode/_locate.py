"""Naming code objects so another process can find them again.

A code object is named by ``CodeRef(module, qualname, path)``: ``module`` and
``qualname`` name an importable function (the *root*), and ``path`` is the
sequence of ``co_consts`` indices that leads from the root's code to the
target, for code that has no importable name of its own (inner functions,
lambdas and generator expressions defined inside the root).

``describe`` (capture side) proves the name works before a snapshot is made:
resolving it must give back the very same code object, so a snapshot that could
never be restored is refused at ``dumps`` time with a message that says why.
``locate`` (restore side) imports the module, walks the qualname (unwrapping
staticmethod, classmethod, bound methods and ``functools.wraps`` chains) and
follows the path.  Neither runs user code except the module import itself.

One code object is not in its function's constants: ``types.coroutine``
applied to a generator function swaps in a copy of its code with
``CO_ITERABLE_COROUTINE`` added (``code.replace(co_flags=...)``, CPython
3.11-3.15).  For a module-level function that copy is the function's
``__code__``, found by name as usual; for one defined inside another
function it exists only on the function object the enclosing call made.  So
``describe`` also accepts, at the end of a path, a constant whose such copy
equals the target, and ``types_coroutine_copy`` rebuilds that copy on the
restore side, where the fingerprint in the blob (it covers the flags)
decides which of the two the snapshot was taken from.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import weakref
from dataclasses import dataclass
from typing import Any

from .._errors import CodeMismatch, SnapshotError
from .._weak import IdentityCache, ModuleCache


@dataclass(frozen=True, slots=True)
class CodeRef:
    """An importable name for a code object (see the module docstring)."""

    module: str
    qualname: str
    path: tuple[int, ...] = ()

    def __str__(self) -> str:
        tail = "".join(f"[{i}]" for i in self.path)
        return f"{self.module}.{self.qualname}{tail}"


def _root_qualname(qualname: str) -> str:
    cut = qualname.find(".<locals>")
    return qualname if cut < 0 else qualname[:cut]


def _candidates(obj: Any) -> list[types.FunctionType]:
    """The functions an attribute may stand for, outermost first."""
    out: list[types.FunctionType] = []
    for _ in range(64):
        if isinstance(obj, (staticmethod, classmethod, types.MethodType)):
            obj = obj.__func__
            continue
        if isinstance(obj, property):
            obj = obj.fget
            continue
        if isinstance(obj, types.FunctionType):
            out.append(obj)
        wrapped = getattr(obj, "__wrapped__", None) if obj is not None else None
        if wrapped is None:
            break
        obj = wrapped
    return out


def _resolve(module: types.ModuleType, qualname: str) -> Any:
    obj: Any = module
    for i, part in enumerate(qualname.split(".")):
        if i and not isinstance(obj, type):
            raise AttributeError(f"{qualname} walks through a non-class")
        namespace = getattr(obj, "__dict__", None)
        if isinstance(obj, type) and namespace is not None and part in namespace:
            obj = namespace[part]  # the raw staticmethod/classmethod, not a bound method
        else:
            obj = getattr(obj, part)
    return obj


_COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE
_copies: weakref.WeakKeyDictionary[types.CodeType, types.CodeType] = weakref.WeakKeyDictionary()


def types_coroutine_copy(code: types.CodeType) -> types.CodeType | None:
    """The code ``types.coroutine`` gives a generator function defined with
    ``code`` (a copy with CO_ITERABLE_COROUTINE added, cached: one per code),
    or None where it keeps the code as it is (not a generator's code, or a
    coroutine's already)."""
    flags = code.co_flags
    if flags & _COROUTINE_FLAGS or not flags & inspect.CO_GENERATOR:
        return None
    copy = _copies.get(code)
    if copy is None:
        copy = _copies[code] = code.replace(co_flags=flags | inspect.CO_ITERABLE_COROUTINE)
    return copy


def _is_copy_of(const: types.CodeType, target: types.CodeType) -> bool:
    """Whether ``target`` is ``types.coroutine``'s copy of ``const``."""
    if (const.co_flags | inspect.CO_ITERABLE_COROUTINE != target.co_flags
            or const.co_qualname != target.co_qualname or const.co_code != target.co_code):
        return False
    return types_coroutine_copy(const) == target


def _find_path(root: types.CodeType, target: types.CodeType) -> tuple[int, ...] | None:
    for i, const in enumerate(root.co_consts):
        if isinstance(const, types.CodeType):
            if const is target or (target.co_flags & inspect.CO_ITERABLE_COROUTINE
                                   and _is_copy_of(const, target)):
                return (i,)
            sub = _find_path(const, target)
            if sub is not None:
                return (i, *sub)
    return None


def _root_function(module_name: str, qualname: str) -> types.FunctionType | None:
    module = sys.modules.get(module_name)
    if module is None:
        return None
    try:
        obj = _resolve(module, qualname)
    except AttributeError:
        return None
    for fn in _candidates(obj):
        if fn.__code__.co_qualname == qualname:
            return fn
    return None


_describe_cache: IdentityCache[CodeRef] = IdentityCache()
"""code -> its CodeRef, holding the code weakly."""


def describe(code: types.CodeType, module_name: str | None) -> CodeRef:
    """Name ``code`` (whose frame globals say ``__name__ == module_name``).

    Raises SnapshotError when the name would not lead back to this code.
    """
    hit = _describe_cache.get(code)
    if hit is not None:
        return hit
    where = f"{code.co_qualname}() (module {module_name!r})"
    if not isinstance(module_name, str):
        raise SnapshotError(f"{where}: its globals have no __name__, so it cannot be imported")
    root_name = _root_qualname(code.co_qualname)
    root = _root_function(module_name, root_name)
    if root is None:
        raise SnapshotError(
            f"{where}: cannot be found again by import as {module_name}.{root_name}; "
            "corosnap restores code by module and qualified name, so the function (or the "
            "function it is defined in) must be reachable as a module attribute"
        )
    if root.__code__ is code:
        ref = CodeRef(module_name, root_name)
    else:
        path = _find_path(root.__code__, code)
        if path is None:
            raise SnapshotError(
                f"{where}: its code is not among the code objects of {module_name}.{root_name} "
                "(was the module reloaded, the function redefined, or a function's __code__ "
                "replaced?)"
            )
        ref = CodeRef(module_name, root_name, path)
    return _describe_cache.put(code, ref)


_locate_cache: ModuleCache[tuple[Any, types.CodeType, dict[str, Any]]] = ModuleCache()
"""CodeRef -> (module, code, globals) found for it, dropped when the module goes
(the module is held by a weak reference: the tuple's first item is its ``ref``)."""


def locate(ref: CodeRef) -> tuple[types.CodeType, dict[str, Any]]:
    """Find the code named by ``ref`` and the globals it runs with.

    Raises CodeMismatch (naming the function) when the module, the function or
    the nested code is not there.
    """
    hit = _locate_cache.get(ref)
    if hit is not None and sys.modules.get(ref.module) is hit[0]():
        return hit[1], hit[2]
    try:
        module = sys.modules.get(ref.module) or importlib.import_module(ref.module)
    except Exception as exc:
        raise CodeMismatch(f"{ref}: cannot import module {ref.module!r}: {exc!r}") from exc
    root = _root_function(ref.module, ref.qualname)
    if root is None:
        raise CodeMismatch(f"{ref}: module {ref.module!r} has no function {ref.qualname!r}")
    code = root.__code__
    for depth, index in enumerate(ref.path):
        consts = code.co_consts
        if not (0 <= index < len(consts)) or not isinstance(consts[index], types.CodeType):
            raise CodeMismatch(
                f"{ref}: nested code #{depth} of {ref.module}.{ref.qualname} is not there "
                "(the function's code changed)"
            )
        code = consts[index]
    module_ref = _locate_cache.ref(module)
    if module_ref is not None:
        _locate_cache.put(module, ref, (module_ref, code, root.__globals__))
    return code, root.__globals__
