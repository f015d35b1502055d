"""The manifests the scheduler keeps in its store, so its runs survive deploys.

Rules of this file: it writes and reads ``manifest/...`` records only, and
knows nothing of runs.  The first time this process checkpoints a workflow
whose code version (fingerprint) it has not recorded, it writes the
description of that version (``corosnap.migrate.Manifest`` entries: local
names, suspension points' identities) for every function in the workflow's
``await`` chain, once per code version and store, compare-and-set on "must
not exist" so concurrent workers do not overwrite each other.  When a later
deploy changed a workflow, ``loads(migrate=True)`` finds the old version's
description here (``StoreManifests``) and migrates the run with no flag.

Store layout::

    manifest/<module>/<function qualname>/<fingerprint, 16 hex digits>
        {"corosnap_manifest_entry": 1, "python": "3.11",
         "entry": <a manifest's code entry, see corosnap.snapshot._manifest>}

One record per code object (code nested in a function has its own
fingerprint and its ``path``).  Records are small (a few hundred bytes) and
written once; they are never deleted by the scheduler (a run suspended on a
version may outlive every process that ran it).  A record that cannot be
written (the store is unavailable) does not fail the checkpoint: it is
tried again at the next checkpoint of that version.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from typing import Any

from .._errors import CorruptSnapshot, SnapshotError
from ..bytecode import describe, fingerprint
from ..bytecode._locate import _find_path, _root_function
from ..snapshot._migrate import SignatureSource
from ..snapshot._signature import CodeSig, code_from_json, code_sig, code_to_json, nested_codes
from ..stores import Conflict, Store, StoreError

log = logging.getLogger("corosnap.scheduler")

PREFIX = "manifest/"
FORMAT = 1
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def manifest_key(module: str, qualname: str, fp: int) -> str:
    return f"{PREFIX}{module}/{qualname}/{fp:016x}"


class StoreManifests(SignatureSource):
    """Old code descriptions read from a store's ``manifest/`` records."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, CodeSig | None] = {}

    def lookup(self, module: str, qualname: str, path: tuple[int, ...],
               fp: int) -> CodeSig | None:
        key = manifest_key(module, qualname, fp)
        if key in self._cache:
            return self._cache[key]
        found = None
        record = self.store.get(key)
        if record is not None:
            try:
                obj = json.loads(record.blob)
            except ValueError:
                raise CorruptSnapshot(f"store record {key!r} is not valid JSON") from None
            if type(obj) is not dict or obj.get("corosnap_manifest_entry") != FORMAT:
                raise CorruptSnapshot(f"store record {key!r} is not a manifest entry")
            if obj.get("python") == PY:
                found, _path = code_from_json(obj.get("entry"))
        self._cache[key] = found
        return found


class ManifestRecorder:
    """Writes the manifest records of the code versions a scheduler checkpoints."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._done: set[tuple[str, str, int]] = set()
        self._codes: dict[int, types.CodeType] = {}  # id -> code, of codes already handled

    def remember(self, obj: Any) -> None:
        """Record every function version in ``obj``'s ``await`` chain (once each)."""
        for _ in range(10_000):
            # Coroutines and generators by type (this runs at every
            # checkpoint; a getattr that misses costs an exception), anything
            # else that looks like one by its attributes.
            t = type(obj)
            if t is types.CoroutineType:
                code, following = obj.cr_code, obj.cr_await
            elif t is types.GeneratorType:
                code, following = obj.gi_code, obj.gi_yieldfrom
            elif obj is None:
                return
            else:
                code = getattr(obj, "cr_code", None) or getattr(obj, "gi_code", None)
                if code is None:
                    return
                following = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
            if self._codes.get(id(code)) is not code:
                self._codes[id(code)] = code
                self._record(code, obj)
            obj = following

    def _record(self, code: types.CodeType, obj: Any) -> None:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        module = frame.f_globals.get("__name__") if frame is not None else None
        if not isinstance(module, str):
            return
        try:
            ref = describe(code, module)
        except SnapshotError:
            return  # dumps refuses it anyway, saying why
        fn = _root_function(ref.module, ref.qualname)
        if fn is None:
            return
        root = fn.__code__
        for c in [root, *nested_codes(root)]:
            fp = fingerprint(c)
            done = (ref.module, ref.qualname, fp)
            if done in self._done:
                continue
            path = () if c is root else (_find_path(root, c) or ())
            sig = code_sig(c, ref if c is root else type(ref)(ref.module, ref.qualname, path),
                           None if c is root else root, None, text=True)
            body = json.dumps({"corosnap_manifest_entry": FORMAT, "python": PY,
                               "entry": code_to_json(sig, path)},
                              sort_keys=True).encode()
            try:
                self.store.put(manifest_key(ref.module, ref.qualname, fp), body,
                               expected_version=0)
            except Conflict:
                pass  # recorded before, by this or another worker
            except StoreError as exc:
                # Not recorded (the store is down, or the write's outcome is
                # unknown): the checkpoint does not depend on it, and the
                # next checkpoint of this version tries again.
                log.warning("could not record the manifest of %s.%s (%016x): %r",
                            ref.module, c.co_qualname, fp, exc)
                self._codes.pop(id(code), None)
                continue
            self._done.add(done)
