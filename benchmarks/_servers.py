"""Servers for the benchmarks of the server-backed stores.

``running(kinds)`` starts a throw-away PostgreSQL cluster, redis-server and
moto S3 server, the same way the test suite does (``tests/servers.py``:
initdb/pg_ctl in a temporary directory on a free port, as the ``postgres``
user when run as root; redis-server with ``appendfsync always``; moto in a
child process), yields them, and stops them.  A server given by address
(``postgres=DSN``, ``redis=URL``) is used as it is instead.

``store_factories(servers)`` turns them into ``name -> factory(tag)``
entries for the stores' benchmark; ``tag`` isolates one measurement's data
(a schema, namespace or prefix).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import servers as test_servers  # noqa: E402

KINDS = ("postgres", "redis", "s3")


@dataclass
class Servers:
    postgres_dsn: str | None = None
    redis_url: str | None = None
    redis_ours: bool = False  # started here, so its settings may be changed
    s3: Any = None  # a tests/servers.py S3Server: endpoint, bucket, client()


@contextlib.contextmanager
def running(
    kinds: tuple[str, ...] = KINDS, *, postgres: str | None = None, redis: str | None = None
) -> Iterator[Servers]:
    found = Servers(postgres_dsn=postgres, redis_url=redis)
    with contextlib.ExitStack() as stack:
        if "postgres" in kinds and postgres is None:
            pg = test_servers.start_postgres()
            stack.callback(test_servers.stop_postgres, pg)
            found.postgres_dsn = pg.dsn
        if "redis" in kinds and redis is None:
            rs = test_servers.start_redis()
            stack.callback(test_servers.stop_redis, rs)
            found.redis_url = rs.url
            found.redis_ours = True
        if "s3" in kinds:
            s3 = test_servers.start_s3()
            stack.callback(s3.stop)
            found.s3 = s3
        yield found


def store_factories(found: Servers) -> dict[str, Callable[[str], Any]]:
    """Benchmark rows for the servers in ``found``: name -> factory(tag) -> store."""
    from corosnap.stores import PostgresStore, RedisStore, S3Store

    rows: dict[str, Callable[[str], Any]] = {}
    if found.postgres_dsn is not None:
        dsn = found.postgres_dsn
        rows["PostgresStore"] = lambda tag: PostgresStore(dsn, schema=f"bench_{tag}")
        rows["PostgresStore(durable=False)"] = lambda tag: PostgresStore(
            dsn, schema=f"bench_{tag}", durable=False
        )
    if found.redis_url is not None and found.redis_ours:
        url = found.redis_url
        rows["RedisStore (appendfsync always)"] = lambda tag: _redis(url, tag, "always")
        rows["RedisStore (appendfsync everysec)"] = lambda tag: _redis(url, tag, "everysec")
    elif found.redis_url is not None:
        url = found.redis_url
        rows["RedisStore (server as configured)"] = lambda tag: RedisStore(
            url, namespace=f"bench-{tag}", durability="none"
        )
    if found.s3 is not None:
        s3 = found.s3
        rows["S3Store (moto server)"] = lambda tag: S3Store(s3.bucket, f"bench-{tag}", s3.client())
    return rows


def _redis(url: str, tag: str, appendfsync: str) -> Any:
    """A RedisStore on a server switched to ``appendfsync`` (the store checks it)."""
    import redis

    from corosnap.stores import RedisStore

    admin = redis.Redis.from_url(url)
    admin.config_set("appendfsync", appendfsync)
    admin.close()
    durability = "fsync" if appendfsync == "always" else "everysec"
    return RedisStore(url, namespace=f"bench-{tag}", durability=durability)
