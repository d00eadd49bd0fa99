"""ddnsagent.http: the verifying TLS context is built on the first https request, once per
process, and never for a plain-http target (issue 15; RESULTS.md §1b measured ~30 ms for it)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import pytest
import trustme

from ddnsagent import http
from ddnsagent.errors import HTTPFailure
from tests.fakes.dyndns2 import Dyndns2Server


@pytest.fixture
def fresh_context() -> Iterator[None]:
    """Forget a context an earlier test in this process built, and do so again afterwards."""
    http._tls_context.cache_clear()
    yield
    http._tls_context.cache_clear()


async def get(url: str) -> int:
    async with http.client(4, 5.0) as client:
        return (await http.fetch(client, "GET", url)).status


def test_plain_http_builds_no_tls_context(fresh_context: None) -> None:
    with Dyndns2Server({"me": "pw"}, {}) as server:
        assert server.update_url.startswith("http://")
        assert asyncio.run(get(server.update_url)) == 401  # answered, without credentials
        assert asyncio.run(get(server.update_url)) == 401
    assert http._tls_context.cache_info().currsize == 0


def test_https_builds_the_context_once(fresh_context: None) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    with Dyndns2Server({"me": "pw"}, {}, ssl_context=server_ctx) as server:
        assert server.update_url.startswith("https://")
        for _ in range(2):  # the test CA is not trusted: the verifying context refuses it
            with pytest.raises(HTTPFailure, match="CERTIFICATE_VERIFY_FAILED"):
                asyncio.run(get(server.update_url))
    info = http._tls_context.cache_info()
    assert (info.currsize, info.misses, info.hits) == (1, 1, 1)
