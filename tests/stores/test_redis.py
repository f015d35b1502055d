"""RedisStore against a real redis-server that the test session starts.

The conformance suite, then what is specific to Redis: the key layout, a
client passed in, the durability the server must provide (refused, or warned
about when it cannot be checked), and what happens when the connection or
the server goes away.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corosnap.stores import (
    DurabilityWarning,
    OutcomeUnknown,
    Record,
    Store,
    StoreError,
    StoreUnavailable,
)
from corosnap.testing import StoreConformance

from ..proxy import CuttingProxy
from ..servers import RedisServer, free_port, start_redis, stop_redis


def namespace_for(tmp_path: Path) -> str:
    return "t-" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16]


def admin(server: RedisServer) -> Any:
    import redis

    return redis.Redis.from_url(server.url)


class TestRedisStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def make_store(self, tmp_path: Path) -> Store:
        from corosnap.stores import RedisStore

        return RedisStore(self.server.url, namespace=namespace_for(tmp_path))


@pytest.fixture
def rs(redis_server: RedisServer) -> RedisServer:
    return redis_server


@pytest.fixture
def config(rs: RedisServer) -> Iterator[Any]:
    """An admin client; every server setting the test changes is put back afterwards."""
    client = admin(rs)
    saved = {
        name: client.config_get(name)[name]
        for name in ("appendonly", "appendfsync", "maxmemory-policy")
    }
    yield client
    for name, value in saved.items():
        client.config_set(name, value)
    client.close()


def test_layout_is_a_hash_per_record_and_a_sorted_key_index(
    rs: RedisServer, tmp_path: Path
) -> None:
    from corosnap.stores import RedisStore

    ns = namespace_for(tmp_path)
    with RedisStore(rs.url, namespace=ns) as store:
        store.put("run/1", b"\x00blob\xff")
        store.put("run/1", b"second")
        store.put("é", b"x")
    client = admin(rs)
    assert client.hgetall(f"{ns}:r:run/1") == {b"v": b"2", b"b": b"second"}
    assert client.zrange(f"{ns}:i", 0, -1) == [b"run/1", "é".encode()]
    assert sorted(client.scan_iter(match=f"{ns}:*")) == sorted(
        [f"{ns}:r:run/1".encode(), f"{ns}:r:é".encode(), f"{ns}:i".encode()]
    )


def test_namespaces_are_validated_and_separate(rs: RedisServer, tmp_path: Path) -> None:
    from corosnap.stores import RedisStore

    for bad in ("", "a:b", "x" * 201, "sp ace", 3):
        with pytest.raises(ValueError, match="namespace"):
            RedisStore(rs.url, namespace=bad)  # type: ignore[arg-type]
    ns = namespace_for(tmp_path)
    with RedisStore(rs.url, namespace=ns) as one, RedisStore(rs.url, namespace=ns + "-2") as two:
        one.put("k", b"1")
        assert two.get("k") is None
        assert list(two.keys()) == []


def test_a_client_passed_in_is_used_and_left_open(rs: RedisServer, tmp_path: Path) -> None:
    """Even one that decodes replies and retries commands: the store sends its own, once."""
    import redis
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    from corosnap.stores import RedisStore

    client = redis.Redis.from_url(rs.url, decode_responses=True, retry=Retry(ConstantBackoff(0), 5))
    store = RedisStore(client, namespace=namespace_for(tmp_path))
    blob = bytes(range(256))
    assert store.put("k", blob) == 1
    assert store.get("k") == Record(blob, 1)
    assert list(store.keys()) == ["k"]
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("k")
    assert client.ping() is True  # still open
    client.close()


def test_a_flushed_script_cache_is_refilled(rs: RedisServer, tmp_path: Path) -> None:
    from corosnap.stores import RedisStore

    with RedisStore(rs.url, namespace=namespace_for(tmp_path)) as store:
        store.put("k", b"1")
        admin(rs).script_flush()
        assert store.put("k", b"2", expected_version=1) == 2
        admin(rs).script_flush()
        store.delete("k", expected_version=2)
        assert store.get("k") is None


# -- durability -----------------------------------------------------------------


def test_the_test_server_provides_fsync_durability(rs: RedisServer, tmp_path: Path) -> None:
    from corosnap.stores import RedisStore

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RedisStore(rs.url, namespace=namespace_for(tmp_path)) as store:
            assert store.durability == "fsync"
            assert store.server_settings["appendfsync"] == "always"


def test_fsync_durability_is_refused_without_the_append_only_file(
    rs: RedisServer, config: Any, tmp_path: Path
) -> None:
    from corosnap.stores import RedisStore

    config.config_set("appendonly", "no")
    ns = namespace_for(tmp_path)
    for durability in ("fsync", "everysec"):
        with pytest.raises(StoreError, match="appendonly no") as info:
            RedisStore(rs.url, namespace=ns, durability=durability)  # type: ignore[arg-type]
        assert "CONFIG SET appendonly yes" in str(info.value)
        assert "durability=" in str(info.value)
    with RedisStore(rs.url, namespace=ns, durability="none") as store:
        store.put("k", b"v")  # what the caller chose


def test_fsync_durability_is_refused_with_appendfsync_everysec(
    rs: RedisServer, config: Any, tmp_path: Path
) -> None:
    from corosnap.stores import RedisStore

    config.config_set("appendfsync", "everysec")
    ns = namespace_for(tmp_path)
    with pytest.raises(StoreError, match="appendfsync everysec"):
        RedisStore(rs.url, namespace=ns)
    RedisStore(rs.url, namespace=ns, durability="everysec").close()
    config.config_set("appendfsync", "no")
    with pytest.raises(StoreError, match="appendfsync no"):
        RedisStore(rs.url, namespace=ns, durability="everysec")
    RedisStore(rs.url, namespace=ns, durability="none").close()


def test_an_evicting_server_is_refused(rs: RedisServer, config: Any, tmp_path: Path) -> None:
    from corosnap.stores import RedisStore

    config.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(StoreError, match="allkeys-lru"):
        RedisStore(rs.url, namespace=namespace_for(tmp_path))
    config.config_set("maxmemory-policy", "volatile-lru")  # never evicts keys without a TTL
    RedisStore(rs.url, namespace=namespace_for(tmp_path)).close()


def test_a_server_hiding_its_config_gets_a_loud_warning(
    rs: RedisServer, config: Any, tmp_path: Path
) -> None:
    """A user not allowed to run CONFIG (as on managed Redis services): the store warns."""
    from corosnap.stores import RedisStore

    user = "noconfig-" + namespace_for(tmp_path)
    config.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-config"]
    )
    url = f"redis://{user}:secret@127.0.0.1:{rs.port}/0"
    try:
        with pytest.warns(DurabilityWarning, match="cannot check") as caught:
            RedisStore(url, namespace=namespace_for(tmp_path)).close()
        assert "appendfsync always" in str(caught[0].message)
        # The append-only file is visible through INFO: if it is off, refuse.
        config.config_set("appendonly", "no")
        with pytest.raises(StoreError, match="aof_enabled:0"):
            RedisStore(url, namespace=namespace_for(tmp_path))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            RedisStore(url, namespace=namespace_for(tmp_path), durability="none").close()
    finally:
        config.acl_deluser(user)


# -- losing the connection ------------------------------------------------------


@pytest.mark.parametrize("expected", [None, 0, 1])
def test_a_put_whose_answer_is_lost_raises_outcome_unknown_and_is_not_resent(
    rs: RedisServer, tmp_path: Path, expected: int | None
) -> None:
    from corosnap.stores import RedisStore

    ns = namespace_for(tmp_path)
    with RedisStore(rs.url, namespace=ns) as direct, CuttingProxy(rs.port) as proxy:
        if expected == 1:
            direct.put("k", b"before")
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", namespace=ns)
        proxy.cut_next_answer()
        with pytest.raises(OutcomeUnknown) as info:
            store.put("k", b"landed", expected_version=expected)
        assert proxy.cuts == 1
        error = info.value
        assert (error.operation, error.key, error.expected_version) == ("put", "k", expected)
        assert "may or may not" in str(error)
        landed = 2 if expected == 1 else 1
        assert direct.get("k") == Record(b"landed", landed)  # applied exactly once
        assert store.get("k") == Record(b"landed", landed)  # and the store carries on
        store.close()


def test_a_delete_whose_answer_is_lost_raises_outcome_unknown(
    rs: RedisServer, tmp_path: Path
) -> None:
    from corosnap.stores import RedisStore

    ns = namespace_for(tmp_path)
    with RedisStore(rs.url, namespace=ns) as direct, CuttingProxy(rs.port) as proxy:
        direct.put("k", b"x")
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", namespace=ns)
        proxy.cut_next_answer()
        with pytest.raises(OutcomeUnknown) as info:
            store.delete("k")
        assert info.value.operation == "delete"
        assert direct.get("k") is None
        store.close()


def test_a_read_whose_answer_is_lost_is_store_unavailable(rs: RedisServer, tmp_path: Path) -> None:
    from corosnap.stores import RedisStore

    ns = namespace_for(tmp_path)
    with RedisStore(rs.url, namespace=ns) as direct, CuttingProxy(rs.port) as proxy:
        direct.put("k", b"x")
        store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", namespace=ns)
        for operation in ("get", "keys"):
            proxy.cut_next_answer()
            with pytest.raises(StoreUnavailable) as info:
                store.get("k") if operation == "get" else store.keys()
            assert info.value.operation == operation
        assert store.get("k") == Record(b"x", 1)
        store.close()


def test_a_put_in_flight_when_the_server_is_killed_is_outcome_unknown(tmp_path: Path) -> None:
    """SIGKILL a private redis-server while it holds our put (CLIENT PAUSE), then restart it."""
    import redis

    from corosnap.stores import RedisStore

    server = start_redis()
    try:
        store = RedisStore(server.url, namespace="kill")
        store.put("k", b"v1")
        redis.Redis.from_url(server.url).client_pause(10_000, all=False)  # holds writes
        outcome: list[BaseException | int] = []

        def put() -> None:
            try:
                outcome.append(store.put("k", b"v2", expected_version=1))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=put)
        thread.start()
        _wait_for_blocked_client(server)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], OutcomeUnknown), outcome
        server.proc.wait()
        server.start()  # same directory: the append-only file is replayed
        # The store's pooled connection died with the server; the next call
        # reconnects.  While Redis loads its file it answers LOADING, which the
        # store reports as StoreUnavailable (nothing ran): try again.
        deadline = time.monotonic() + 30
        while True:
            try:
                record = store.get("k")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "redis-server did not finish loading"
                time.sleep(0.01)
        assert record == Record(b"v1", 1)  # the held put never ran, and was not resent
        assert store.put("k", b"v2", expected_version=1) == 2
        store.close()
    finally:
        stop_redis(server)


def test_no_server_listening_is_store_unavailable() -> None:
    from corosnap.stores import RedisStore

    with pytest.raises(StoreUnavailable) as info:
        RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=2)
    assert "nothing was sent" in str(info.value)


def _wait_for_blocked_client(server: RedisServer) -> None:
    client = admin(server)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if int(client.info("clients").get("blocked_clients", 0)) > 0:
            return
        time.sleep(0.01)
    raise AssertionError("the put was never held by CLIENT PAUSE")
