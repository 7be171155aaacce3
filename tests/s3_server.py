"""A real S3 API on loopback (moto's server mode), for ledgers at ``s3://`` URLs.

The tap (in this process or a child) reaches it through the standard AWS variables, so the
code under test is the same as against a real bucket. Credentials are moto's dummy ones.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

S3_ENV_NAMES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port; yields the environment that points at it."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 (heavy; only S3 tests need it)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "moto-testing",
        "AWS_SECRET_ACCESS_KEY": "moto-testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_env() -> Iterator[dict[str, str]]:
    """The server's environment, also set in this process (fsspec reads it on first use)."""
    with s3_server() as env:
        old = {name: os.environ.get(name) for name in S3_ENV_NAMES}
        os.environ.update(env)
        try:
            yield env
        finally:
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def new_bucket(env: dict[str, str]) -> str:
    """A fresh, empty bucket; its ``s3://`` URL."""
    import fsspec  # noqa: PLC0415

    name = f"tap-ashby-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    fs.mkdir(name)
    return f"s3://{name}"
