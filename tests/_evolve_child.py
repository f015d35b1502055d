"""The new-code side of the evolution corpus: run in a fresh interpreter.

Reads one JSON request from stdin: ``{"dir": ..., "module": ..., "blob": hex,
"manifest": <manifest JSON or null>, "sends": [...], "import": [...]}``.  The
new version of the module is ``<dir>/<module>.py``.  It first asks
``corosnap.migrate.check`` what it would do, then restores the blob with
``loads(migrate=True)`` and drives the generator, coroutine or async generator to its end
(``_evolve.step``; an async generator's end is traced as ``end``),
and prints ``{"verdict": ..., "reason": ..., "trace": [...]}`` or, when the
restore is refused, ``{"verdict": ..., "error": type, "message": ...}``.
Values in the trace are ``repr`` strings.
"""

from __future__ import annotations

import importlib
import json
import sys


def main() -> None:
    req = json.loads(sys.stdin.read())
    sys.path.insert(0, req["dir"])
    import corosnap
    from _evolve import step
    from corosnap.migrate import Manifest, check

    for name in req.get("import", []):
        importlib.import_module(name)
    importlib.import_module(req["module"])  # the new code (and its registered migrations)
    blob = bytes.fromhex(req["blob"])
    manifests = Manifest.from_json(req["manifest"]) if req.get("manifest") else None
    verdict = check(blob, manifests=manifests)
    out: dict = {"verdict": verdict.status, "reason": verdict.reason,
                 "how": sorted({f.how for f in verdict.frames}),
                 "frames": [f"{f.function}: {f.detail}" for f in verdict.frames]}
    try:
        gen = corosnap.loads(blob, migrate=True, manifests=manifests)
    except corosnap.CorosnapError as exc:
        out.update(error=type(exc).__name__, message=str(exc))
        print(json.dumps(out))
        return
    trace = []
    sends = list(req.get("sends", []))
    for _ in range(1000):
        value = sends.pop(0) if sends else None
        try:
            trace.append(repr(step(gen, value)))
        except StopIteration as stop:
            trace.append(f"return {stop.value!r}")
            break
        except StopAsyncIteration:
            trace.append("end")
            break
        except Exception as exc:  # noqa: BLE001 - part of the trace
            trace.append(f"raise {type(exc).__name__}{exc.args!r}")
            break
    out["trace"] = trace
    print(json.dumps(out))


if __name__ == "__main__":
    main()
