"""Safe mode and bound methods (blob tag 21): a frame suspended inside a
``with`` block holds the bound ``__exit__`` (on the stack up to CPython 3.13),
and code caches bound methods in locals (``append = out.append``).  Safe mode
accepts a bound method whose function comes from an allowed module (or is a
method of a builtin data type), with its object decoded by the same rules.

The context manager and generators live in this module on purpose: the tests
allow exactly this module.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

import corosnap
from corosnap.codec._tags import T_METHOD

ALLOW = (__name__,)
LOG: list[Any] = []
TAG_METHOD = msgpack.ExtType(0, bytes([T_METHOD]))


class Opened:
    """An open()-like context manager."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def __enter__(self) -> Opened:
        LOG.append(("enter", self.name))
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        self.closed = True
        LOG.append(("exit", self.name, et.__name__ if et else None))
        return False

    def read(self) -> str:
        return f"data of {self.name}"

    @classmethod
    def named(cls, name: str) -> Opened:
        return cls(name)


class Encoder(json.JSONEncoder):
    """An allowed class whose methods come from a module that is not allowed."""


def reads(name):
    with Opened(name) as f:
        got = yield f.read()
        yield got
    yield "after"


def holds(value):
    got = yield value
    yield got


def _suspended(gen, steps=1):
    for _ in range(steps):
        next(gen)
    return corosnap.dumps(gen)


def held(blob: bytes, **kwargs: Any) -> Any:
    """The value a restored ``holds`` generator holds."""
    gen = corosnap.loads(blob, **kwargs)  # kept alive: 3.13.0 crashes reading
    return gen.gi_frame.f_locals["value"]  # f_locals of a dead generator's frame


def test_with_block_resumes_in_safe_mode_and_runs_exit():
    blob = _suspended(reads("a.txt"))
    LOG.clear()
    g = corosnap.loads(blob, safe=True, allow=ALLOW)
    assert g.send("x") == "x"
    assert g.send(None) == "after"
    assert LOG == [("exit", "a.txt", None)]


def test_with_block_in_safe_mode_exits_with_the_thrown_exception():
    blob = _suspended(reads("b.txt"))
    LOG.clear()
    g = corosnap.loads(blob, safe=True, allow=ALLOW)
    with pytest.raises(KeyError):
        g.throw(KeyError("k"))
    assert LOG == [("exit", "b.txt", "KeyError")]


def test_bound_methods_keep_their_object():
    f = Opened("c.txt")
    blob = _suspended(holds((f, f.read, Opened.named, [].append)))
    obj, read, named, append = held(blob, safe=True, allow=ALLOW)
    assert read.__self__ is obj and read() == "data of c.txt"
    assert named.__self__ is Opened and named("d").name == "d"
    append(5)
    assert append.__self__ == [5]


def test_c_methods_of_classes_bound_and_unbound():
    # 3.11's LOAD_METHOD leaves the unbound ``list.append`` on the stack in
    # ``out.append((yield))``; ``dict.fromkeys`` / ``date.fromordinal`` are C
    # class methods bound to their class.
    import datetime

    blob = _suspended(holds((list.append, dict.fromkeys, datetime.date.fromordinal)))
    with pytest.raises(corosnap.UnsafeSnapshot, match=r"datetime\.date"):
        held(blob, safe=True, allow=ALLOW)
    append, fromkeys, fromordinal = held(blob, safe=True, allow=(*ALLOW, "datetime"))
    assert append is list.append and fromkeys("ab") == {"a": None, "b": None}
    assert fromordinal(1) == datetime.date(1, 1, 1)


def test_bound_method_is_stored_by_name_not_through_getattr():
    tree = msgpack.unpackb(_suspended(holds(Opened("e").read)), strict_map_key=False)
    assert tree[5][0] == TAG_METHOD and tree[5][2] == "read", tree[5]


def test_bound_method_of_a_class_not_allowed_is_refused_naming_it():
    import fractions

    blob = _suspended(holds(fractions.Fraction(1, 3).limit_denominator))
    assert held(blob)(1) == 0  # fine in the default mode
    with pytest.raises(corosnap.UnsafeSnapshot, match="fractions.Fraction"):
        corosnap.loads(blob, safe=True, allow=ALLOW)


def test_method_inherited_from_a_module_not_allowed_is_refused_naming_it():
    blob = _suspended(holds(Encoder().encode))
    assert held(blob)([1]) == "[1]"
    with pytest.raises(corosnap.UnsafeSnapshot,
                       match=r"method json\.encoder\.JSONEncoder\.encode of a Encoder"):
        corosnap.loads(blob, safe=True, allow=ALLOW)
    assert held(blob, safe=True, allow=(*ALLOW, "json"))([2]) == "[2]"


def test_format_methods_of_str_are_refused():
    blob = _suspended(holds("{0.__class__}".format))
    with pytest.raises(corosnap.UnsafeSnapshot, match="str.format"):
        corosnap.loads(blob, safe=True, allow=ALLOW)
    assert held(_suspended(holds(", ".join)), safe=True, allow=ALLOW)(["a", "b"]) == "a, b"


def _forged(obj_field: Any, name: Any) -> bytes:
    tree = msgpack.unpackb(_suspended(holds(None)), strict_map_key=False)
    tree[5] = [TAG_METHOD, obj_field, name]
    return msgpack.packb(tree, use_bin_type=True)


@pytest.mark.parametrize("name", ["missing", "name", "__dict__", "__eq__", "__class__"])
def test_forged_method_names_are_refused(name):
    # Only plain functions, method descriptors of C types and classmethods are
    # bound; an attribute, a slot wrapper or a missing name is no method.
    opened = [msgpack.ExtType(0, bytes([12])), [msgpack.ExtType(0, bytes([6])), __name__, "Opened"],
              [], {"name": "x", "closed": False}]
    for safe in (False, True):
        with pytest.raises(corosnap.CorruptSnapshot, match="not one"):
            corosnap.loads(_forged(opened, name), safe=safe, allow=ALLOW)


def test_object_getattribute_cannot_be_bound_in_safe_mode():
    # object.__getattribute__ is a slot wrapper (no method); list's
    # __getattribute__ is one too.  Neither becomes a getattr gadget.
    for name in ("__getattribute__", "__reduce_ex__", "__setattr__"):
        with pytest.raises(corosnap.RestoreError):
            corosnap.loads(_forged([1, 2], name), safe=True, allow=ALLOW)


def test_builtin_held_as_a_value_is_refused_with_an_accurate_message():
    tree = msgpack.unpackb(_suspended(holds(None)), strict_map_key=False)
    tree[5] = [msgpack.ExtType(0, bytes([6])), "builtins", "eval"]
    with pytest.raises(corosnap.UnsafeSnapshot, match="builtin .* held as a value") as info:
        corosnap.loads(msgpack.packb(tree, use_bin_type=True), safe=True,
                       allow=(*ALLOW, "builtins"))
    assert "reached through a class" not in str(info.value)
    tree[5] = [msgpack.ExtType(0, bytes([6])), __name__, "Opened.__getattribute__"]
    with pytest.raises(corosnap.UnsafeSnapshot, match="reached through a class"):
        corosnap.loads(msgpack.packb(tree, use_bin_type=True), safe=True, allow=ALLOW)
