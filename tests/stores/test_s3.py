"""S3Store against moto's S3 server, which the test session starts in a child process.

The conformance suite, then what is specific to S3: the object names (an
order-preserving escape, hashed names for keys too long for S3), the version
kept inside each object so that equal contents never make versions
ambiguous, botocore's retries, and lost answers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corosnap.stores import (
    MAX_KEY_BYTES,
    Conflict,
    OutcomeUnknown,
    Record,
    Store,
    StoreError,
    StoreUnavailable,
)
from corosnap.testing import StoreConformance

from ..proxy import CuttingProxy
from ..servers import S3_CREDENTIALS, S3Server, free_port, start_s3


def prefix_for(tmp_path: Path) -> str:
    return "t-" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16]


def client_for(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, config=Config(**config), **S3_CREDENTIALS)


class TestS3Store(StoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, s3_server: S3Server) -> None:
        self.server = s3_server

    def make_store(self, tmp_path: Path) -> Store:
        from corosnap.stores import S3Store

        return S3Store(self.server.bucket, prefix_for(tmp_path), self.server.client())


@pytest.fixture
def s3(s3_server: S3Server) -> S3Server:
    return s3_server


def _objects(s3: S3Server, prefix: str) -> list[str]:
    response = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return [entry["Key"] for entry in response.get("Contents", ())]


# -- object names -------------------------------------------------------------

keys_strategy = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12
)


@given(keys_strategy, keys_strategy)
@settings(max_examples=400, deadline=None)
def test_escaping_preserves_order_and_prefixes_and_round_trips(a: str, b: str) -> None:
    from corosnap.stores._s3 import escape_key, unescape_key

    ea, eb = escape_key(a).encode(), escape_key(b).encode()
    assert (a < b) == (ea < eb)  # S3 lists by UTF-8 bytes; keys sort by code point
    assert a.startswith(b) == ea.startswith(eb)
    assert unescape_key(escape_key(a)) == a
    assert not {".", ".."} & set(escape_key(a).split("/"))
    assert all(ord(c) > 0x2E and c not in "\x7e\x7f" or c in "!~" for c in escape_key(a))


def test_object_names_bodies_and_metadata(s3: S3Server, tmp_path: Path) -> None:
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    with S3Store(s3.bucket, prefix, s3.client()) as store:
        store.put("run/1.json", b"blob")
        store.put("run/1.json", b"blob2")
    assert _objects(s3, prefix) == [f"{prefix}/r/run/1!2Ejson"]
    obj = s3.client().get_object(Bucket=s3.bucket, Key=f"{prefix}/r/run/1!2Ejson")
    assert obj["Metadata"] == {"corosnap-version": "2"}
    body = obj["Body"].read()
    assert body == b"CSNS3\x00\x00\x01" + (2).to_bytes(8, "big") + (10).to_bytes(4, "big") + (
        b"run/1.json" + b"blob2"
    )


def test_keys_too_long_for_an_object_name_are_hashed_and_listed_in_order(
    s3: S3Server, tmp_path: Path
) -> None:
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    long_dots = "." * 400  # escapes to 1200 characters
    long_plain = "x" * MAX_KEY_BYTES  # fits MAX_KEY_BYTES, not beside the prefix
    fits = "y" * (1024 - len(prefix) - 3)
    keys = ["a", long_dots, long_plain, "x", fits, "xa", "y"]
    with S3Store(s3.bucket, prefix, s3.client()) as store:
        for i, key in enumerate(keys):
            store.put(key, b"%d" % i)
        names = _objects(s3, prefix)
        hashed = {
            f"{prefix}/h/{hashlib.sha256(k.encode()).hexdigest()}" for k in (long_dots, long_plain)
        }
        assert hashed <= set(names) and len(names) == len(keys)
        assert f"{prefix}/r/{fits}" in names
        assert list(store.keys()) == sorted(keys)
        assert list(store.keys("x")) == sorted(k for k in keys if k.startswith("x"))
        assert list(store.keys(".")) == [long_dots]
        assert store.get(long_plain) == Record(b"2", 1)
        store.delete(long_dots, expected_version=1)
        assert list(store.keys(".")) == []


def test_an_object_that_is_not_a_record_is_refused_by_name(s3: S3Server, tmp_path: Path) -> None:
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/r/k", Body=b"not a record at all")
    with S3Store(s3.bucket, prefix, s3.client()) as store:
        with pytest.raises(StoreError, match="not a corosnap record"):
            store.get("k")


# -- versions are unambiguous -------------------------------------------------------


def test_equal_blobs_at_different_versions_are_different_objects(
    s3: S3Server, tmp_path: Path
) -> None:
    """An ETag is a hash of the content: the version inside the object keeps them apart."""
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    with (
        S3Store(s3.bucket, prefix, s3.client()) as stale,
        S3Store(s3.bucket, prefix, s3.client()) as other,
    ):
        stale.put("k", b"same")
        assert stale.get("k") == Record(b"same", 1)  # `stale` remembers version 1's ETag
        etags = {s3.client().head_object(Bucket=s3.bucket, Key=f"{prefix}/r/k")["ETag"]}
        other.put("k", b"same", expected_version=1)
        other.put("k", b"same", expected_version=2)
        etags.add(s3.client().head_object(Bucket=s3.bucket, Key=f"{prefix}/r/k")["ETag"])
        assert len(etags) == 2
        # Same blob as version 1, but version 3: the stale writer's ETag no longer matches.
        with pytest.raises(Conflict) as info:
            stale.put("k", b"lost", expected_version=1)
        assert (info.value.expected, info.value.actual) == (1, 3)
        assert other.get("k") == Record(b"same", 3)


def test_a_remembered_etag_that_went_stale_is_looked_up_again(s3: S3Server, tmp_path: Path) -> None:
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    with (
        S3Store(s3.bucket, prefix, s3.client()) as one,
        S3Store(s3.bucket, prefix, s3.client()) as two,
    ):
        one.put("k", b"a")
        two.delete("k")
        two.put("k", b"b")  # version 1 again, different content
        assert one.put("k", b"c", expected_version=1) == 2  # the record *is* at version 1
        assert one.put("k", b"d") == 3  # an unconditional put after a stale ETag
        two.put("k", b"e")
        assert one.put("k", b"f") == 5
        assert two.get("k") == Record(b"f", 5)


# -- the store and its client ---------------------------------------------------


def test_a_client_passed_in_is_left_open(s3: S3Server, tmp_path: Path) -> None:
    from corosnap.stores import S3Store

    client = s3.client()
    store = S3Store(s3.bucket, prefix_for(tmp_path), client)
    store.put("k", b"v")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("k")
    assert client.list_objects_v2(Bucket=s3.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_missing_bucket_is_refused_at_open(s3: S3Server) -> None:
    from corosnap.stores import S3Store

    with pytest.raises(StoreError, match="'no-such-bucket' cannot be used"):
        S3Store("no-such-bucket", "", s3.client())


# -- losing the connection ------------------------------------------------------


@pytest.mark.parametrize("expected", [None, 0, 1])
@pytest.mark.parametrize("attempts", [1, 3], ids=["no-retries", "botocore-retries"])
def test_a_put_whose_answer_is_lost_raises_outcome_unknown(
    s3: S3Server, tmp_path: Path, expected: int | None, attempts: int
) -> None:
    """With retries, botocore resends the put, which then fails its condition against our
    own landed write: that must be OutcomeUnknown, never a Conflict."""
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    with S3Store(s3.bucket, prefix, s3.client()) as direct, CuttingProxy(s3.port) as proxy:
        if expected == 1:
            direct.put("k", b"before")
        client = client_for(
            f"http://127.0.0.1:{proxy.port}",
            retries={"total_max_attempts": attempts, "mode": "standard"},
        )
        store = S3Store(s3.bucket, prefix, client)
        store.get("k")  # remember the ETag, so the put is a single request
        proxy.cut_next_answer()
        with pytest.raises(OutcomeUnknown) as info:
            store.put("k", b"landed", expected_version=expected)
        assert proxy.cuts == 1
        error = info.value
        assert (error.operation, error.key, error.expected_version) == ("put", "k", expected)
        landed = 2 if expected == 1 else 1
        assert direct.get("k") == Record(b"landed", landed)  # applied exactly once
        assert store.get("k") == Record(b"landed", landed)
        store.close()


def test_a_delete_whose_answer_is_lost_raises_outcome_unknown(s3: S3Server, tmp_path: Path) -> None:
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    with S3Store(s3.bucket, prefix, s3.client()) as direct, CuttingProxy(s3.port) as proxy:
        direct.put("k", b"x")
        store = S3Store(s3.bucket, prefix, client_for(f"http://127.0.0.1:{proxy.port}"))
        store.get("k")
        proxy.cut_next_answer()
        with pytest.raises(OutcomeUnknown):
            store.delete("k", expected_version=1)
        assert direct.get("k") is None
        store.close()


def test_a_read_whose_answer_is_lost_is_store_unavailable(s3: S3Server, tmp_path: Path) -> None:
    from corosnap.stores import S3Store

    prefix = prefix_for(tmp_path)
    with S3Store(s3.bucket, prefix, s3.client()) as direct, CuttingProxy(s3.port) as proxy:
        direct.put("k", b"x")
        client = client_for(f"http://127.0.0.1:{proxy.port}", retries={"total_max_attempts": 1})
        store = S3Store(s3.bucket, prefix, client)
        proxy.cut_next_answer()
        with pytest.raises(StoreUnavailable) as info:
            store.get("k")
        assert info.value.operation == "get"
        assert store.get("k") == Record(b"x", 1)
        store.close()


def test_no_server_is_store_unavailable_for_reads_and_writes(s3: S3Server, tmp_path: Path) -> None:
    """Every attempt failed to connect: nothing was sent, even with botocore's retries."""
    from corosnap.stores import S3Store

    with CuttingProxy(s3.port) as proxy:
        client = client_for(
            f"http://127.0.0.1:{proxy.port}",
            retries={"total_max_attempts": 3, "mode": "standard"},
            connect_timeout=2,
        )
        store = S3Store(s3.bucket, prefix_for(tmp_path), client)
        store.get("k")  # remembers that "k" does not exist
        proxy.close()  # nothing listens on the port any more
        for call in (
            lambda: store.put("k", b"v", expected_version=0),
            lambda: store.get("k"),
            lambda: store.keys(),
        ):
            with pytest.raises(StoreUnavailable):
                call()
        store.close()
    with pytest.raises(StoreUnavailable):
        S3Store(s3.bucket, "", client_for(f"http://127.0.0.1:{free_port()}"))


def test_a_put_in_flight_when_the_server_is_killed_is_outcome_unknown(tmp_path: Path) -> None:
    """SIGSTOP a private moto server, send a put, SIGKILL the server."""
    from corosnap.stores import S3Store

    server = start_s3()
    try:
        store = S3Store(server.bucket, "kill", server.client())
        store.put("k", b"v1")
        os.kill(server.proc.pid, signal.SIGSTOP)
        outcome: list[BaseException | int] = []

        def put() -> None:
            try:
                outcome.append(store.put("k", b"v2", expected_version=1))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=put)
        thread.start()
        time.sleep(0.5)  # the request is sent into the stopped server's socket
        assert thread.is_alive() and not outcome
        os.kill(server.proc.pid, signal.SIGKILL)
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], OutcomeUnknown), outcome
        store.close()
    finally:
        server.stop()
