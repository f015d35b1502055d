"""Finding the code a blob's frame names, without importing anything.

What lives here: ``CodeFinder``, which turns a coderef (module, qualname,
nested path, fingerprint) into the code object, so the inspector can name a
frame's slots, tell locals from stack entries and show the source line.  A
blob may be hostile, so by default nothing here imports a module or runs its
code.  In order:

1. ``loaded``: the module is already in ``sys.modules`` (a benchmark harness
   inspecting its own blobs).  The qualified name is walked through the
   module's and classes' ``__dict__`` only (no ``getattr``: no module
   ``__getattr__``, descriptor or metaclass runs), unwrapping staticmethod,
   classmethod, property and ``__wrapped__`` chains as restore does.
2. ``source``: the module's source file is found the way the import system
   would find it (``sys.meta_path`` finders asked for a spec, a package's
   submodules searched in its ``submodule_search_locations``), but the
   parent packages are *not* imported (``importlib.util.find_spec`` would
   import them), and the file is only compiled, never executed.  Every code
   object of the module whose ``co_qualname`` is the one named is a
   candidate.
3. ``import``: only when the caller passes ``resolve=True``: the module is
   imported, as ``loads`` would (``corosnap.bytecode.locate``).

A candidate counts only if its fingerprint is the one in the blob, so the
names shown are those of the very code the frame was captured from (and a
frame whose code changed since is reported as such: ``loads`` would refuse
it with CodeMismatch).  Bytecode differs between CPython minor versions, so
code is looked for only when the blob's version is the running one.
What must never leak out: an exception.  Whatever goes wrong is a note.
"""

from __future__ import annotations

import importlib.util
import linecache
import sys
import types
from dataclasses import dataclass
from typing import Any

from ..bytecode import CodeRef, fingerprint, locate, types_coroutine_copy

MAX_SOURCE = 16 * 1024 * 1024
"""Source files larger than this are not compiled."""


@dataclass(frozen=True)
class Found:
    code: types.CodeType
    how: str  # "loaded", "source" or "import"
    lines: tuple[str, ...] | None  # the source text when compiled here

    def line(self, offset: int) -> tuple[int | None, str | None]:
        """The line number and text of resume offset ``offset`` (code units;
        -1, a created frame: the ``def`` line)."""
        lineno: int | None = self.code.co_firstlineno
        if offset >= 0:
            # co_positions() yields one entry per code unit, caches included.
            for i, pos in enumerate(self.code.co_positions()):
                if i == offset:
                    lineno = pos[0]
                    break
        if lineno is None:
            return None, None
        if self.lines is not None:
            text = self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""
        else:
            text = linecache.getline(self.code.co_filename, lineno)
        return lineno, text.strip() or None


_CLASS_DICT = vars(type)["__dict__"].__get__
_MODULE_DICT = vars(types.ModuleType)["__dict__"].__get__


def _walk_dict(namespace: Any, part: str) -> Any:
    """``namespace.__dict__[part]`` for a module or class, read through the C
    descriptors themselves (a metaclass or module subclass could override
    ``__dict__`` or ``__getattribute__``: nothing of theirs runs)."""
    kind = type(namespace)  # not isinstance: it would read __class__
    if issubclass(kind, types.ModuleType):
        d = _MODULE_DICT(namespace)
    elif issubclass(kind, type):
        d = _CLASS_DICT(namespace)
    else:
        return None
    if type(d) is not dict and type(d) is not types.MappingProxyType:
        return None
    value = d.get(part)  # a str key: the lookup runs no user code
    return value


def _functions(obj: Any) -> list[types.FunctionType]:
    """The functions a class or module attribute stands for (no code runs:
    only builtin types' own attributes and instance ``__dict__``s are read)."""
    out: list[types.FunctionType] = []
    for _ in range(64):
        t = type(obj)
        if t is staticmethod or t is classmethod:
            obj = obj.__func__
            continue
        if t is property:
            obj = obj.fget
            continue
        if t is types.FunctionType:
            out.append(obj)
            obj = obj.__dict__.get("__wrapped__")
            continue
        break
    return out


def _nested(code: types.CodeType, path: tuple[int, ...]) -> types.CodeType | None:
    for index in path:
        consts = code.co_consts
        if not 0 <= index < len(consts) or type(consts[index]) is not types.CodeType:
            return None
        code = consts[index]
    return code


def _match(code: types.CodeType, fp: int, path: tuple[int, ...]) -> types.CodeType | None:
    """``code``, or the copy ``types.coroutine`` makes of nested generator code
    (``bytecode._locate``), whichever has the fingerprint ``fp``."""
    if fingerprint(code) == fp:
        return code
    copy = types_coroutine_copy(code) if path else None
    return copy if copy is not None and fingerprint(copy) == fp else None


def _all_codes(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    work = [code]
    while work:
        for c in work.pop().co_consts:
            if type(c) is types.CodeType:
                out.append(c)
                work.append(c)
    return out


def find_source(module: str, extra: tuple[str, ...]) -> str | None:
    """The path of ``module``'s ``.py`` file, found without importing anything."""
    search: list[str] | None = [*extra, *sys.path] if extra else None
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            try:
                spec = find_spec(name, search)
            except Exception:  # noqa: BLE001 - a finder that cannot answer
                spec = None
            if spec is not None:
                break
        if spec is None:
            return None
        if i < len(parts) - 1:
            locations = spec.submodule_search_locations
            if not locations:
                return None
            search = list(locations)
    origin = getattr(spec, "origin", None)
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return None
    return origin


class CodeFinder:
    """Finds and caches code for one inspector (see the module docstring)."""

    def __init__(self, minor: int, find: bool, resolve: bool, path: tuple[str, ...]) -> None:
        self.minor = minor
        self.find_code = find and minor == sys.version_info[1]
        self.resolve = resolve and self.find_code
        self.path = path
        self._compiled: dict[str, tuple[types.CodeType | None, tuple[str, ...] | None, str]] = {}
        self._found: dict[tuple[str, str, tuple[int, ...], int], tuple[Found | None, str]] = {}

    def why_not(self) -> str | None:
        """Why no code is looked for at all, or None."""
        if self.minor != sys.version_info[1]:
            return (f"the blob is from CPython 3.{self.minor} and this is 3.{sys.version_info[1]}: "
                    "bytecode differs between versions, so slots are named by position; "
                    f"run the inspector with CPython 3.{self.minor} to name them")
        return None

    def find(self, module: str, qualname: str, path: tuple[int, ...],
             fp: int) -> tuple[Found | None, str]:
        """``(found, note)``: the code with fingerprint ``fp``, or None and why."""
        key = (module, qualname, path, fp)
        hit = self._found.get(key)
        if hit is None:
            hit = self._found[key] = self._find(module, qualname, path, fp)
        return hit

    def _find(self, module: str, qualname: str, path: tuple[int, ...],
              fp: int) -> tuple[Found | None, str]:
        if not self.find_code:
            return None, ""
        mismatch = ""
        loaded = sys.modules.get(module)
        if loaded is not None and issubclass(type(loaded), types.ModuleType):
            for code in self._from_loaded(loaded, qualname, path):
                match = _match(code, fp, path)
                if match is not None:
                    return Found(match, "loaded", None), ""
                mismatch = "loaded"
        compiled, lines, note = self._compile(module)
        if compiled is not None:
            for root in _all_codes(compiled):
                if root.co_qualname != qualname:
                    continue
                nested = _nested(root, path)
                if nested is None:
                    continue
                match = _match(nested, fp, path)
                if match is not None:
                    return Found(match, "source", lines), ""
                mismatch = mismatch or "source"
            note = f"its source has no function {qualname!r} (with that nested code)"
        if self.resolve:
            try:
                code = locate(CodeRef(module, qualname, path))[0]
            except Exception as exc:  # noqa: BLE001 - any import failure is a note
                note = f"importing it failed: {exc}"
            else:
                match = _match(code, fp, path)
                if match is not None:
                    return Found(match, "import", None), ""
                mismatch = mismatch or "import"
        if mismatch:
            return None, (f"its code has changed since the snapshot (the {mismatch} code has "
                          "another fingerprint): loads would refuse it")
        return None, note

    def _from_loaded(self, module: types.ModuleType, qualname: str,
                     path: tuple[int, ...]) -> list[types.CodeType]:
        obj: Any = module
        for part in qualname.split("."):
            obj = _walk_dict(obj, part)
            if obj is None:
                return []
        out = []
        for fn in _functions(obj):
            code = fn.__code__
            if code.co_qualname == qualname:
                nested = _nested(code, path)
                if nested is not None:
                    out.append(nested)
        return out

    def _compile(self, module: str) -> tuple[types.CodeType | None, tuple[str, ...] | None, str]:
        hit = self._compiled.get(module)
        if hit is None:
            hit = self._compiled[module] = self._compile_uncached(module)
        return hit

    def _compile_uncached(
            self, module: str) -> tuple[types.CodeType | None, tuple[str, ...] | None, str]:
        try:
            origin = find_source(module, self.path)
        except Exception as exc:  # noqa: BLE001 - a broken finder or path entry
            return None, None, f"looking for its source failed: {exc!r}"
        if origin is None:
            return None, None, (f"module {module!r} has no source file on the search path "
                                "(add its directory with --path, or import it with --resolve)")
        try:
            with open(origin, "rb") as f:
                data = f.read(MAX_SOURCE + 1)
            if len(data) > MAX_SOURCE:
                return None, None, f"{origin} is larger than {MAX_SOURCE} bytes"
            source = importlib.util.decode_source(data)
            code = compile(source, origin, "exec", dont_inherit=True, optimize=-1)
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError, MemoryError,
                RecursionError) as exc:
            return None, None, f"compiling {origin} failed: {exc!r}"
        return code, tuple(source.splitlines()), ""


__all__ = ["CodeFinder", "Found", "find_source"]
