"""Without an extra installed, its store says which extra to install; nothing else breaks."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("psycopg", "PostgresStore", "PostgresStore('postgresql://x@127.0.0.1/db')", "postgres"),
    ("redis", "RedisStore", "RedisStore('redis://127.0.0.1:1/0')", "redis"),
    ("botocore", "S3Store", "S3Store('bucket')", "s3"),
]


@pytest.mark.parametrize(("library", "name", "call", "extra"), CASES)
def test_a_store_without_its_library_names_the_extra(
    library: str, name: str, call: str, extra: str
) -> None:
    # sys.modules[name] = None makes `import name` raise ImportError, as if absent.
    program = f"""
import sys
sys.modules[{library!r}] = None
import corosnap, corosnap.stores
from corosnap.stores import MemoryStore, {name}
MemoryStore().put("k", b"v")
try:
    corosnap.stores.{call}
except ImportError as exc:
    print("ImportError:", exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert f"pip install 'corosnap[{extra}]'" in out, out


def test_importing_the_stores_imports_no_client_library() -> None:
    program = """
import sys
import corosnap.stores
names = ("psycopg", "psycopg_pool", "redis", "boto3", "botocore")
print(sorted(m for m in names if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[]"
