"""Differential property tests: a split run must equal an uninterrupted one.

For a random module (``_gensrc``) and each ``k`` from 0 to the number of yields
of ``main(*args)``: drive ``k`` steps, ``corosnap.dumps``, ``corosnap.loads``
(in this process, or in the session's worker process) and drive to the end.
The yields, the outcome (return value or exception) and the side effects in
``LOG`` must be exactly those of an uninterrupted run.

Example counts: 150 per flavour in-process, 60 cross-process, 100 for the
well-formedness checks of the generator itself.  ``COROSNAP_HYPOTHESIS_EXAMPLES=N``
scales them all so that the cross-process tests run ``N`` examples (in-process
ones 2.5 N).  Hypothesis prints the failing module source (``note``) and ``k``;
``python tests/_reduce.py failing.py`` shrinks such a source further by
deleting statements.  ``COROSNAP_GENSRC_AVOID`` (see ``_gensrc.KNOWN_ISSUES``)
chooses which known core failures the strategy steers around.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

import _driver
import _gensrc
from _driver import Trace

MAX_YIELDS = 60  # examples with more yields are skipped: every k costs a dumps/loads

_NO_CORE = _driver.core_unavailable()
requires_core = pytest.mark.skipif(_NO_CORE is not None, reason=_NO_CORE or "")


def _examples(default: int) -> int:
    """``default`` (tuned for 60 cross-process examples), scaled by the env var."""
    env = os.environ.get("COROSNAP_HYPOTHESIS_EXAMPLES")
    if not env:
        return default
    return max(1, round(default * int(env) / 60))


def _settings(default: int) -> settings:
    return settings(
        max_examples=_examples(default),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


KINDS = pytest.mark.parametrize("kind", ["gen", "coro"])

# A generated coroutine may create a helper coroutine and then raise before
# awaiting it; that happens in the uninterrupted run just the same.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")


def _describe(gm: _gensrc.GenModule) -> str:
    return f"# module {gm.name}, main{gm.args}\n{gm.source}"


def _mismatch(k: int, want: Trace, got: Trace) -> str:
    return (
        f"split at k={k} differs from the uninterrupted run\n"
        f"uninterrupted:\n{want.describe()}\nsplit:\n{got.describe()}"
    )


def _check_all_k(
    gm: _gensrc.GenModule,
    module: ModuleType,
    split: Callable[[ModuleType, str, object, int], Trace],
) -> None:
    note(_describe(gm))
    want = _driver.run_uninterrupted(module, gm.entry, gm.args)
    assume(len(want.yields) <= MAX_YIELDS)
    for k in range(len(want.yields) + 1):
        try:
            got = split(module, gm.entry, gm.args, k)
        except Exception:
            note(f"failed at k={k} (snapshot after {k} yields)")
            raise
        if got != want:
            note(f"failed at k={k}")
            raise AssertionError(_mismatch(k, want, got))


# ---------------------------------------------------------------------------
# the generator of programs itself (needs no core)
# ---------------------------------------------------------------------------


@KINDS
def test_generated_modules_are_well_formed(kind: str, load_generated: Callable) -> None:
    """Every generated module compiles, terminates, only fails on purpose, and is deterministic."""

    @_settings(100)
    @given(gm=_gensrc.modules(kind))
    def check(gm: _gensrc.GenModule) -> None:
        note(_describe(gm))
        compile(gm.source, gm.name, "exec")
        module = load_generated(gm)
        first = _driver.run_uninterrupted(module, gm.entry, gm.args)
        assert first.outcome is not None
        assert first.outcome.startswith(("return ", "raise ValueError(")), first.outcome
        again = _driver.run_uninterrupted(module, gm.entry, gm.args)
        assert again == first

    check()


def test_an_edit_never_goes_between_an_if_and_its_elif() -> None:
    """Every edit site keeps an if/elif/else chain whole: a statement put
    before an ``elif`` would end the ``if`` (a SyntaxError, met once)."""
    source = ("def f(x):\n    if x < 0:\n        pass\n    elif x < 1:\n        pass\n"
              "    else:\n        pass\n    yield x\n")
    lines = source.split("\n")
    for first, last, col in _gensrc._statement_sites(source):
        for at in (first - 1, last):
            edited = lines[:at] + [" " * col + "pass"] + lines[at:]
            compile("\n".join(edited), "edited", "exec")


@KINDS
def test_generated_modules_run_the_same_in_the_worker(
    kind: str, load_generated: Callable, worker, gen_dir: str
) -> None:
    """The reference trace does not depend on the process (hash seed, import order)."""

    @_settings(30)
    @given(gm=_gensrc.modules(kind))
    def check(gm: _gensrc.GenModule) -> None:
        note(_describe(gm))
        module = load_generated(gm)
        here = _driver.run_uninterrupted(module, gm.entry, gm.args)
        there = worker.run(gen_dir, gm.name, gm.entry, gm.args)
        assert there == here

    check()


# ---------------------------------------------------------------------------
# split runs (need the core)
# ---------------------------------------------------------------------------


@requires_core
@KINDS
def test_split_same_process(kind: str, load_generated: Callable) -> None:
    """dumps after k yields, loads in this process: the trace is unchanged, for every k."""

    @_settings(150)
    @given(gm=_gensrc.modules(kind))
    def check(gm: _gensrc.GenModule) -> None:
        _check_all_k(gm, load_generated(gm), _driver.run_split_local)

    check()


@requires_core
@KINDS
def test_split_cross_process(kind: str, load_generated: Callable, worker) -> None:
    """dumps after k yields, loads in the worker process: the trace is unchanged, for every k."""

    def split(module: ModuleType, fn: str, args: object, k: int) -> Trace:
        return _driver.run_split(module, fn, args, k, worker)

    @_settings(60)
    @given(gm=_gensrc.modules(kind))
    def check(gm: _gensrc.GenModule) -> None:
        _check_all_k(gm, load_generated(gm), split)

    check()


# ---------------------------------------------------------------------------
# minimal reproductions of failures the differential tests found in the core.
# FIXED ones are regression tests; KNOWN_FAILURES are xfail until fixed (the
# strategy steers around those while they are in _gensrc.KNOWN_ISSUES).
# ---------------------------------------------------------------------------

FIXED = {
    # A yield inside the argument list of a call on a module-level object: the
    # global list on the value stack came back as a copy, so LOG.append after
    # the restore appended to a detached list (LOG == [] instead of ['2'] at k=1).
    "global_on_stack": (
        "gen",
        "LOG = []\n\n\ndef main(p0, p1):\n    LOG.append((yield))\n    return len(LOG)\n",
    ),
    # A finished helper generator still held in a local: dumps raised
    # SnapshotError("... has finished or was closed: there is nothing to resume") at k=2.
    "finished_in_local": (
        "gen",
        "LOG = []\n\n\ndef helper():\n    yield 1\n\n\n"
        "def main(p0, p1):\n    g = helper()\n    yield from g\n    yield 2\n",
    ),
    # An exception passing through `async with` whose __aexit__ awaits: the
    # suspended __aexit__ frame holds a traceback in `tb`; dumps raised
    # SnapshotError("... local 'tb': cannot serialize traceback") at k=1.
    "traceback_in_local": (
        "coro",
        "LOG = []\n\n\nclass Val:\n    def __init__(self, v):\n        self.v = v\n\n"
        "    def __await__(self):\n        return (yield self.v)\n\n\n"
        "class ACM:\n    async def __aenter__(self):\n        return self\n\n"
        "    async def __aexit__(self, et, ev, tb):\n        await Val('aexit')\n"
        "        return False\n\n\n"
        "async def main(p0, p1):\n    try:\n        async with ACM():\n"
        "            raise ValueError(1)\n    except ValueError as e:\n        return e.args\n",
    ),
    # A str holding a lone surrogate (what os.fsdecode/surrogateescape produce)
    # in a local: dumps raised a bare UnicodeEncodeError from msgpack at k=1.
    "surrogate_str": (
        "gen",
        "LOG = []\n\n\ndef main(p0, p1):\n    s = '\\udc80'\n    yield 1\n    return s\n",
    ),
    # The __context__ (and __cause__) of an exception was None after a restore.
    # Uninterrupted LOG: ["ValueError('v')", 'True'], split at k=1: ['None', 'False'].
    "exc_chain": (
        "gen",
        "LOG = []\n\n\ndef main(p0, p1):\n    try:\n        raise ValueError('v')\n"
        "    except ValueError as e:\n        try:\n            raise KeyError('k') from e\n"
        "        except KeyError as k:\n            yield 1\n"
        "            LOG.append(repr(k.__cause__))\n"
        "            LOG.append(k.__context__ is e)\n",
    ),
    # A dict iterator restored with its own copy of the dict: the change made to
    # d in the loop body after the restore is not seen by the loop.
    # Uninterrupted yields [1, 20], split at k=1: [1, 2].
    "dict_iter_identity": (
        "gen",
        "LOG = []\n\n\ndef main(p0, p1):\n    d = {'p': 1, 'q': 2}\n"
        "    for k, v in d.items():\n        yield v\n        d['q'] = 20\n",
    ),
    # A dict view (d.keys(), .values(), .items()) held in a local restores
    # detached from the dict: keys added after the restore are not seen.
    # Uninterrupted returns ['p', 'q'], split at k=1 returns ['p'].
    "dict_view_identity": (
        "gen",
        "LOG = []\n\n\ndef main(p0, p1):\n    d = {'p': 1}\n    ks = d.keys()\n"
        "    yield 1\n    d['q'] = 2\n    return list(ks)\n",
    ),
}

KNOWN_FAILURES = {
    # Like global_on_stack (fixed), but the list is a global of *another* module:
    # ``other.LIST.append((yield))`` still restores the list as a copy.
    # Uninterrupted returns [2], split at k=1 returns [].
    "foreign_global_on_stack": (
        "gen",
        "import _xp_funcs\n\nLOG = []\n\n\ndef main(p0, p1):\n"
        "    _xp_funcs.LOG.clear()\n    _xp_funcs.LOG.append((yield))\n"
        "    out = list(_xp_funcs.LOG)\n    _xp_funcs.LOG.clear()\n    return out\n",
    ),
}


def _check_source_all_k(
    kind: str, source: str, where: str, load_generated: Callable, worker
) -> None:
    gm = _gensrc.GenModule(source=source, kind=kind, args=(0, 0))
    if where == "same_process":
        split = _driver.run_split_local
    else:

        def split(module: ModuleType, fn: str, args: object, k: int) -> Trace:
            return _driver.run_split(module, fn, args, k, worker)

    module = load_generated(gm)
    want = _driver.run_uninterrupted(module, gm.entry, gm.args)
    for k in range(len(want.yields) + 1):
        got = split(module, gm.entry, gm.args, k)
        assert got == want, _mismatch(k, want, got)


WHERE = pytest.mark.parametrize("where", ["same_process", "cross_process"])


@requires_core
@pytest.mark.parametrize("issue", sorted(FIXED))
@WHERE
def test_fixed_failure_stays_fixed(
    issue: str, where: str, load_generated: Callable, worker
) -> None:
    kind, source = FIXED[issue]
    _check_source_all_k(kind, source, where, load_generated, worker)


@requires_core
@pytest.mark.xfail(strict=False, reason="known core failure, see KNOWN_FAILURES")
@pytest.mark.parametrize("issue", sorted(KNOWN_FAILURES))
@WHERE
def test_known_failure(issue: str, where: str, load_generated: Callable, worker) -> None:
    kind, source = KNOWN_FAILURES[issue]
    _check_source_all_k(kind, source, where, load_generated, worker)


# ---------------------------------------------------------------------------
# migration mode: snapshot the old program at every suspension, migrate it to
# a behaviour-preserving edit of itself in the worker, and finish there.
# ---------------------------------------------------------------------------


def _migration_pair(gm: _gensrc.GenModule, new_source: str, root: str) -> tuple[str, str, str]:
    """Write the old and the new source under one module name, in two directories
    (this process imports the old one, the worker the new one)."""
    import hashlib

    name = "corosnap_mig_" + hashlib.sha256((gm.source + "\0" + new_source).encode()
                                            ).hexdigest()[:16]
    old_dir, new_dir = os.path.join(root, "old"), os.path.join(root, "new")
    os.makedirs(old_dir, exist_ok=True)
    os.makedirs(new_dir, exist_ok=True)
    _driver.write_module(old_dir, gm.source, name)
    _driver.write_module(new_dir, new_source, name)
    return name, old_dir, new_dir


@requires_core
@KINDS
def test_migrate_to_an_edited_program_cross_process(kind: str, worker, gen_dir: str) -> None:
    """dumps(migratable=True) after k yields of the old program, loads(migrate=True)
    in the worker on a behaviour-preserving edit of it: the trace is the
    uninterrupted old run's, for every k (no migration may be refused)."""
    import corosnap
    from corosnap.bytecode import fingerprint

    changed = [0, 0]  # examples whose entry point's code changed, examples

    @_settings(40)
    @given(gm=_gensrc.modules(kind), data=st.data())
    def check(gm: _gensrc.GenModule, data: st.DataObject) -> None:
        new_source = data.draw(_gensrc.edited(gm.source), label="edited")
        note(_describe(gm))
        note(f"# the edited version\n{new_source}")
        name, old_dir, new_dir = _migration_pair(gm, new_source, gen_dir)
        module = _driver.import_from(old_dir, name)
        new_main = next(c for c in compile(new_source, name, "exec").co_consts
                        if getattr(c, "co_name", None) == gm.entry)
        changed[0] += fingerprint(new_main) != fingerprint(getattr(module, gm.entry).__code__)
        changed[1] += 1
        want = _driver.run_uninterrupted(module, gm.entry, gm.args)
        assume(len(want.yields) <= MAX_YIELDS)
        for k in range(len(want.yields) + 1):
            obj, first = _driver.run_first_part(module, gm.entry, gm.args, k)
            blob = corosnap.dumps(obj, migratable=True)
            first.log = [repr(x) for x in _driver.module_log(module)]
            _driver.discard(obj, module)
            got = first + worker.resume(new_dir, name, blob, k, migrate=True)
            if got != want:
                note(f"failed at k={k}")
                raise AssertionError(_mismatch(k, want, got))

    check()
    # The edits must really change the code the frames run most of the time.
    assert changed[0] * 4 >= changed[1], changed
