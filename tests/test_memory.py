"""No reference leaks: 100,000 dumps/loads rounds keep memory flat."""

from __future__ import annotations

import dataclasses
import gc
import sys

import corosnap
import samples


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def one_round() -> None:
    c = samples.top(1)
    c.send(None)
    c2 = corosnap.loads(corosnap.dumps(c))
    c.close()
    c2.close()
    g = samples.closure_gen()
    next(g)
    g2 = corosnap.loads(corosnap.dumps(g))
    next(g2)


def _blocks_grown(one_round, rounds: int) -> int:
    """How many more blocks the interpreter has allocated after `rounds` calls
    of one_round than before them (after 2,000 calls that warm the caches)."""
    for _ in range(2_000):
        one_round()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(rounds):
        one_round()
    gc.collect()
    return sys.getallocatedblocks() - before


def test_100k_rounds_keep_rss_flat():
    for _ in range(5_000):  # warm caches and allocator pools
        one_round()
    gc.collect()
    before = rss_bytes()
    for _ in range(50_000):  # each round is two dumps/loads pairs: 100,000 in all
        one_round()
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"



def test_100k_value_round_trips_leak_nothing():
    # The value codec's C paths (records, shapes, sets, tuples, reduces with
    # state, followers, sequence iterators, the blob parser) and its
    # refusals, 100,000 loads: the interpreter's count of allocated blocks
    # must not grow with them.
    import datetime
    import decimal
    import functools

    def holder(v):
        yield v

    value = {
        "records": [{"id": i, "name": f"n{i}", "tags": ("a", i), "seen": {i, -i}}
                    for i in range(10)],
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5), "price": decimal.Decimal("1.25"),
        "numbers": enumerate([1, 2, 3]), "walk": iter([1, 2, 3]),
        "call": functools.partial(max, 1), "frozen": frozenset({1, 2}), "big": 2**70,
        "state": samples.__dict__.get("Point", int),
    }
    g = holder(value)
    next(g)
    blob = corosnap.dumps(g)
    # Refused by the C decoder itself: a constructor that fails (the error
    # wrapped with its cause) and a back-reference past the memo; and by the
    # parse (a truncated blob).
    import msgpack
    from msgpack import ExtType

    marked = holder("marker")
    next(marked)
    tree = msgpack.unpackb(corosnap.dumps(marked), strict_map_key=False)
    spot = tree.index("marker")
    tree[spot] = [ExtType(0, bytes([11])), [ExtType(0, bytes([6])), "fractions", "Fraction"],
                  ["x"]]
    bad = msgpack.packb(tree, use_bin_type=True)
    tree[spot] = [{"a": 1}, ExtType(1, (999).to_bytes(4, "big"))]
    dangling = msgpack.packb(tree, use_bin_type=True)
    truncated = blob[:-3]

    def refused(data: bytes) -> None:
        try:
            corosnap.loads(data)
        except corosnap.CorosnapError:
            pass

    def one_round() -> None:
        corosnap.loads(blob)
        corosnap.loads(corosnap.dumps(g))
        refused(bad)
        refused(dangling)
        refused(truncated)

    for data, expected in ((bad, corosnap.RestoreError), (dangling, corosnap.CorruptSnapshot),
                           (truncated, corosnap.CorruptSnapshot)):
        try:
            corosnap.loads(data)
        except expected:
            pass
        else:
            raise AssertionError(f"{data!r} loaded")
    grown = _blocks_grown(one_round, 20_000)  # five loads per round: 100,000 in all
    assert grown < 2_000, f"{grown} more allocated blocks after 100,000 loads"


@dataclasses.dataclass
class _Request:
    kind: str
    arg: object


def test_100k_plain_slot_loads_leak_nothing():
    # The slots the C restore decodes without a Decoder (codec dec_plain): a
    # list two names share, a tuple of plain items, a bytearray, an int list,
    # a for loop over a list and dataclass instances (one with a
    # back-reference in its state, one whose state is a shape reference, which
    # the Decoder then makes), and the ones it declines and the Decoder
    # refuses (a back-reference past the memo, a malformed int list), 100,000
    # loads: the interpreter's count of allocated blocks must not grow.
    import msgpack
    from msgpack import ExtType

    def plain_slots(items):
        alias = items
        pair = (1, "x", None)
        raw = bytearray(b"xy")
        ints = list(range(40))
        first = _Request("price", alias)  # a state holding a back-reference
        second = _Request("stock", 3)  # a state written as the first one's shape
        for item in items:
            yield alias, pair, raw, ints, item, first, second

    g = plain_slots(["apple", "pear", "fig"])
    next(g)
    blob = corosnap.dumps(g)

    def marker():
        value = "marker"
        yield value

    m = marker()
    next(m)
    tree = msgpack.unpackb(corosnap.dumps(m), strict_map_key=False)
    spot = tree.index("marker")
    tree[spot] = ExtType(1, (999).to_bytes(4, "big"))
    dangling = msgpack.packb(tree, use_bin_type=True)
    tree[spot] = ExtType(9, bytes([3, 1, 2, 3]))
    malformed = msgpack.packb(tree, use_bin_type=True)

    def one_round() -> None:
        corosnap.loads(blob).close()
        for data in (dangling, malformed):
            try:
                corosnap.loads(data)
            except corosnap.CorruptSnapshot:
                pass
            else:
                raise AssertionError(f"{data!r} loaded")

    grown = _blocks_grown(one_round, 33_400)  # three loads per round: 100,000 in all
    assert grown < 2_000, f"{grown} more allocated blocks after 100,000 loads"
