"""Manifests: the descriptions of one version of a module's code, kept beside the blobs.

What lives here: ``Manifest``, a set of code signatures (``_signature.CodeSig``)
keyed by module, importable function and fingerprint, built from a live module
(``Manifest.of_module``) and written as JSON (``corosnap manifest mymodule >
v1.json``), so that snapshots taken on that version can migrate later without
carrying the description themselves (``loads(blob, migrate=True,
manifests=...)``; the scheduler keeps one record per code version in its
store).  A manifest read from JSON is untrusted input: every field is checked
(``_signature.code_from_json``), and whatever it says, a migrated frame still
passes every check of a normal restore.

JSON layout::

    {"corosnap_manifest": 1, "python": "3.11",
     "modules": {"billing": {"billing": {"9f3c2a1b4d5e6f70": {<code entry>}, ...},
                             "Report.render": {...}}}}

One entry per code object, under the importable function it belongs to (code
nested in a function, an inner generator or a generator expression, is
listed under that function with its ``path`` of ``co_consts`` indexes), keyed
by the code's own fingerprint as 16 hex digits; the entry's fields are those
of ``_signature.code_to_json``.  Only code of the running CPython minor
version can be described: bytecode differs between versions.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import types
from collections.abc import Iterable, Iterator
from typing import Any

from .._errors import CorruptSnapshot, SnapshotError
from ..bytecode import CodeRef, describe, fingerprint
from ..bytecode._locate import _find_path, _root_function
from ._migrate import SignatureSource
from ._signature import CodeSig, code_from_json, code_sig, code_to_json, nested_codes

FORMAT = 1
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
MAX_ENTRIES = 1 << 20


class Manifest(SignatureSource):
    """Descriptions of code versions, by (module, function, fingerprint)."""

    def __init__(self) -> None:
        # (module, root qualname, fingerprint) -> [(path, signature), ...]
        self._codes: dict[tuple[str, str, int], list[tuple[tuple[int, ...], CodeSig]]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._codes.values())

    def add(self, module: str, qualname: str, path: tuple[int, ...], fp: int,
            sig: CodeSig) -> None:
        entries = self._codes.setdefault((module, qualname, fp), [])
        if all(p != path for p, _ in entries):
            entries.append((path, sig))

    def update(self, other: Manifest) -> Manifest:
        """Add every entry of ``other`` (manifests of several versions combine)."""
        for (module, qualname, fp), entries in other._codes.items():
            for path, sig in entries:
                self.add(module, qualname, path, fp, sig)
        return self

    def lookup(self, module: str, qualname: str, path: tuple[int, ...],
               fp: int) -> CodeSig | None:
        entries = self._codes.get((module, qualname, fp))
        if not entries:
            return None
        for p, sig in entries:
            if p == path:
                return sig
        return entries[0][1]  # the same code (same fingerprint) at another path

    def entries(self) -> Iterator[tuple[str, str, tuple[int, ...], int, CodeSig]]:
        for (module, qualname, fp), items in sorted(self._codes.items()):
            for path, sig in items:
                yield module, qualname, path, fp, sig

    # -- building -------------------------------------------------------------------
    @classmethod
    def of_module(cls, module: types.ModuleType | str) -> Manifest:
        """Describe every function of ``module`` (imported if given by name)
        that snapshots can name: module-level functions and methods of
        module-level classes, with all the code nested in them."""
        if isinstance(module, str):
            module = importlib.import_module(module)
        out = cls()
        out.add_module(module)
        return out

    def add_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        for fn in _functions(module):
            try:
                ref = describe(fn.__code__, name)
            except SnapshotError:
                continue  # not reachable by name: no snapshot can refer to it
            if ref.path:
                continue
            self.add_function(ref, fn.__code__)

    def add_function(self, ref: CodeRef, root: types.CodeType) -> None:
        self.add(ref.module, ref.qualname, (), fingerprint(root),
                 code_sig(root, ref, None, None, text=True))
        for code in nested_codes(root):
            path = _find_path(root, code)
            if path is None:  # pragma: no cover - nested_codes walks the same consts
                continue
            sub = CodeRef(ref.module, ref.qualname, path)
            self.add(ref.module, ref.qualname, path, fingerprint(code),
                     code_sig(code, sub, root, None, text=True))

    # -- JSON -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        modules: dict[str, dict[str, dict[str, Any]]] = {}
        for module, qualname, path, fp, sig in self.entries():
            by_fp = modules.setdefault(module, {}).setdefault(qualname, {})
            key = f"{fp:016x}"
            if key in by_fp:
                continue
            by_fp[key] = code_to_json(sig, path)
        return {"corosnap_manifest": FORMAT, "python": PY, "modules": modules}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, obj: Any) -> Manifest:
        """Read a manifest's JSON object (checked field by field)."""
        if type(obj) is not dict or obj.get("corosnap_manifest") != FORMAT:
            raise CorruptSnapshot("not a corosnap manifest (format 1)")
        if obj.get("python") != PY:
            raise CorruptSnapshot(
                f"the manifest describes CPython {obj.get('python')!r} bytecode, this is "
                f"CPython {PY}: snapshots and manifests only apply to one minor version")
        modules = obj.get("modules")
        if type(modules) is not dict:
            raise CorruptSnapshot("malformed manifest: 'modules' must be an object")
        out = cls()
        count = 0
        for module, functions in modules.items():
            if type(module) is not str or type(functions) is not dict:
                raise CorruptSnapshot("malformed manifest: modules map names to objects")
            for qualname, versions in functions.items():
                if type(qualname) is not str or type(versions) is not dict:
                    raise CorruptSnapshot("malformed manifest: functions map names to objects")
                for fp_s, entry in versions.items():
                    count += 1
                    if count > MAX_ENTRIES:
                        raise CorruptSnapshot("manifest has too many entries")
                    try:
                        fp = int(fp_s, 16)
                    except (TypeError, ValueError):
                        raise CorruptSnapshot(
                            f"malformed manifest: {fp_s!r} is not a hex fingerprint") from None
                    if not 0 <= fp < 1 << 64:
                        raise CorruptSnapshot("malformed manifest: fingerprint out of range")
                    sig, path = code_from_json(entry)
                    out.add(module, qualname, path, fp, sig)
        return out

    @classmethod
    def loads(cls, text: str | bytes) -> Manifest:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CorruptSnapshot(f"manifest is not valid JSON: {exc}") from None
        return cls.from_json(obj)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest file (``corosnap manifest mymodule > v1.json``)."""
        with open(path, "rb") as f:
            return cls.loads(f.read())


def _functions(module: types.ModuleType) -> Iterator[types.FunctionType]:
    """Functions defined in ``module``: at module level and in its classes."""
    seen: set[int] = set()
    todo: list[Any] = list(vars(module).values())
    classes: set[int] = set()
    while todo:
        obj = todo.pop()
        if isinstance(obj, type):
            if id(obj) in classes or obj.__module__ != module.__name__:
                continue
            classes.add(id(obj))
            todo.extend(vars(obj).values())
            continue
        for fn in _unwrapped(obj):
            if id(fn) in seen or fn.__module__ != module.__name__:
                continue
            seen.add(id(fn))
            if _root_function(module.__name__, fn.__code__.co_qualname) is fn:
                yield fn


def _unwrapped(obj: Any) -> Iterable[types.FunctionType]:
    out: list[types.FunctionType] = []
    for _ in range(32):
        if isinstance(obj, (staticmethod, classmethod, types.MethodType)):
            obj = obj.__func__
            continue
        if isinstance(obj, property):
            out.extend(_unwrapped(obj.fget))
            return out
        if isinstance(obj, types.FunctionType):
            out.append(obj)
        wrapped = getattr(obj, "__wrapped__", None) if obj is not None else None
        if wrapped is None or not (inspect.isfunction(obj) or isinstance(obj, types.FunctionType)):
            break
        obj = wrapped
    return out


class Manifests(SignatureSource):
    """Several signature sources, asked in order."""

    def __init__(self, sources: list[SignatureSource]) -> None:
        self.sources = sources

    def lookup(self, module: str, qualname: str, path: tuple[int, ...],
               fp: int) -> CodeSig | None:
        for s in self.sources:
            found = s.lookup(module, qualname, path, fp)
            if found is not None:
                return found
        return None


def as_source(manifests: Any) -> SignatureSource | None:
    """``loads(manifests=...)``: a Manifest or other SignatureSource, a path to a
    manifest file, a manifest's JSON object, or a list of these."""
    if manifests is None:
        return None
    if isinstance(manifests, SignatureSource):
        return manifests
    if isinstance(manifests, (str, os.PathLike)):
        return Manifest.load(manifests)
    if isinstance(manifests, dict):
        return Manifest.from_json(manifests)
    if isinstance(manifests, (list, tuple)):
        sources = [as_source(m) for m in manifests]
        return Manifests([s for s in sources if s is not None])
    raise TypeError(f"manifests= takes a Manifest, a path, a manifest's JSON object or a list "
                    f"of them, not {type(manifests).__name__}")
