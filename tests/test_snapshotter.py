"""Snapshotter: the object that owns the options and the caches."""

from __future__ import annotations

import io
import threading

import pytest

import corosnap
import samples
from corosnap.snapshot._api import default


def _counter(n: int = 10, steps: int = 2):
    g = samples.counter(n)
    for _ in range(steps):
        next(g)
    return g


def test_options_are_kept_and_the_key_never_shown() -> None:
    snap = corosnap.Snapshotter(pickler="pickle", key=b"secret", safe=True, allow=["myapp"],
                                max_size=1000)
    assert (snap.pickler, snap.key, snap.safe, snap.allow, snap.max_size) == (
        "pickle", b"secret", True, ("myapp",), 1000)
    assert "secret" not in repr(snap) and "key=<set>" in repr(snap)


@pytest.mark.parametrize("options, error, match", [
    ({"pickler": "marshal"}, ValueError, "pickler must be one of"),
    ({"key": "text"}, TypeError, "key must be bytes"),
    ({"allow": "myapp"}, TypeError, "not a single str"),
    ({"allow": ["myapp", 3]}, TypeError, "allow must hold module names"),
    ({"max_size": -1}, TypeError, "max_size"),
])
def test_bad_options_are_refused_naming_the_option(options, error, match) -> None:
    with pytest.raises(error, match=match):
        corosnap.Snapshotter(**options)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        corosnap.Snapshotter("pickle")  # type: ignore[misc]


def test_a_signed_round_trip_through_an_instance() -> None:
    snap = corosnap.Snapshotter(key=b"k1")
    g = _counter()
    blob = snap.dumps(g)
    assert next(snap.loads(blob)) == 2
    with pytest.raises(corosnap.SignatureError):
        corosnap.Snapshotter(key=b"k2").loads(blob)
    with pytest.raises(corosnap.SignatureError):
        corosnap.loads(corosnap.dumps(g), key=b"k1")  # unsigned, but a key was given
    assert next(corosnap.loads(blob, key=b"k1")) == 2  # module function, same options


def test_dump_and_load_take_the_options_as_keywords() -> None:
    buf = io.BytesIO()
    corosnap.dump(_counter(), buf, key=b"k", pickler="pickle")
    buf.seek(0)
    assert next(corosnap.load(buf, key=b"k", max_size=10_000)) == 2
    buf = io.BytesIO()
    corosnap.Snapshotter().dump(_counter(), buf)
    buf.seek(0)
    assert next(corosnap.Snapshotter().load(buf)) == 2


def test_max_size_refuses_before_parsing() -> None:
    blob = corosnap.dumps(_counter())
    with pytest.raises(corosnap.LimitExceeded, match="max_size"):
        corosnap.Snapshotter(max_size=len(blob) - 1).loads(blob)
    with pytest.raises(corosnap.LimitExceeded, match="max_size"):
        corosnap.loads(blob, max_size=len(blob) - 1)


def test_safe_mode_on_an_instance() -> None:
    g = samples.holds(lambda: 1)  # a lambda: only the fallback pickler stores it
    next(g)
    blob = corosnap.dumps(g)
    with pytest.raises(corosnap.UnsafeSnapshot):
        corosnap.Snapshotter(safe=True, allow=("samples",)).loads(blob)


def test_replace_changes_options_and_shares_the_caches() -> None:
    snap = corosnap.Snapshotter(key=b"k")
    other = snap.replace(safe=True, allow=("samples",))
    assert (other.key, other.safe, other.allow) == (b"k", True, ("samples",))
    assert other._caches is snap._caches
    with pytest.raises(TypeError, match="unknown option"):
        snap.replace(migrate=True)
    assert snap.replace() is not snap


def test_the_module_functions_use_the_default_instance_and_its_caches() -> None:
    g = _counter()
    corosnap.loads(corosnap.dumps(g)).close()
    caches = default()._caches
    assert caches.capture_codes.get(samples.counter.__code__) is not None
    assert any(key[:2] == ("samples", "counter") for key in caches.restore_codes.data)
    # options given to a module function use the same caches
    signed = corosnap.dumps(g, key=b"k")
    corosnap.loads(signed, key=b"k").close()
    assert default()._caches is caches


def test_one_instance_serves_many_threads() -> None:
    snap = corosnap.Snapshotter()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n in range(200):
                g = _counter(n + 5)
                assert next(snap.loads(snap.dumps(g))) == 2
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
