"""No reference leaks: 100,000 dumps/loads rounds keep memory flat."""

from __future__ import annotations

import gc

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
