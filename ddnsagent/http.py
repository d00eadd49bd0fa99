"""The one place that talks HTTP: family-bound clients and answers read with a size cap.

MyDNS and the echo services learn our address from the connection itself, so a request about
IPv4 must leave over IPv4 and one about IPv6 over IPv6: the transport is bound to the family's
wildcard local address, which makes the connection fail instead of silently using the other family.

httpx (~50 ms, several MiB) is imported when the first client is made, not with this module: the
provider modules import this one to read their settings, and `status` or `check-config` send
nothing. The verifying TLS context (the CA bundle: ~30 ms) is built on the first https request,
once per process; plain-http targets (a loopback test server, a LAN router) never build it.
"""

from __future__ import annotations

import functools
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddnsagent import USER_AGENT
from ddnsagent.errors import HTTPFailure

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    import httpx

MAX_BODY = 64 * 1024


def _before_httpx() -> None:
    """Called before httpx is first imported. Its package imports its own command-line tool
    (`httpx._main`: click, rich, pygments — ~40 ms and ~6 MiB) whenever those happen to be
    installed; we never run that tool, so its import fails here the way httpx expects when they
    are missing (`httpx.main` then only says how to install it)."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: str


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~30 ms each time."""
    _before_httpx()
    import httpx

    return httpx.create_ssl_context()


@functools.cache
def _plain_context() -> ssl.SSLContext:
    """What the plain-http pool is given because httpx's transport insists on a context: a bare
    one (no CA bundle, ~0.1 ms) that no connection ever uses, as that pool sees only http://."""
    _before_httpx()
    import httpx

    return httpx.create_ssl_context(verify=False)


@functools.cache
def _transport_class() -> Callable[[str | None], httpx.AsyncBaseTransport]:
    _before_httpx()
    import httpx

    class Transport(httpx.AsyncBaseTransport):
        """Two connection pools behind one client, made on first use: one for http:// and one
        for https://, so that only an https request builds (or reuses) the TLS context."""

        def __init__(self, local_address: str | None) -> None:
            self._local = local_address
            self._pools: dict[bool, Any] = {}

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            tls = request.url.scheme == "https"
            pool = self._pools.get(tls)
            if pool is None:
                verify = _tls_context() if tls else _plain_context()
                pool = httpx.AsyncHTTPTransport(local_address=self._local, retries=0, verify=verify)
                self._pools[tls] = pool
            return await pool.handle_async_request(request)

        async def aclose(self) -> None:
            for pool in self._pools.values():
                await pool.aclose()

    return Transport


def client(
    family: int | None,
    timeout: float,
    user_agent: str | None = None,
    local_address: str | None = None,
) -> httpx.AsyncClient:
    """A client whose connections use only `family` (4, 6, or None for either), or that leave
    from `local_address` (an address of this host, see `is_local_address`) when it is given,
    calling itself `user_agent` (default: ddnsagent's name, version and project URL).

    Compressed answers are declined so that the size cap bounds memory, not just the wire.
    """
    _before_httpx()
    import httpx

    local = local_address or ({4: "0.0.0.0", 6: "::"}.get(family) if family else None)
    transport = _transport_class()(local)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": user_agent or USER_AGENT, "Accept-Encoding": "identity"},
        follow_redirects=False,
        trust_env=False,
    )


def is_local_address(address: str) -> bool:
    """Whether a socket can leave from `address`: it is assigned to an interface of this host
    (what an `interface:` source reports), not one seen from outside behind NAT."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


async def fetch(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    limit: int = MAX_BODY,
    **kwargs: object,
) -> Answer:
    """One request; the body is read up to `limit` bytes and refused beyond it."""
    import ssl  # already imported by client(), which made `http`

    import httpx  # already imported by client(), which made `http`

    try:
        async with http.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limit:
                    raise HTTPFailure(f"answer larger than {limit} bytes, refused")
                chunks.append(chunk)
            body = b"".join(chunks).decode("utf-8", errors="replace")
            return Answer(response.status_code, response.headers, body)
    except httpx.TimeoutException:
        raise HTTPFailure("timed out") from None
    except httpx.ConnectError as exc:
        raise HTTPFailure(f"cannot connect: {_reason(exc)}") from None
    except httpx.HTTPError as exc:
        raise HTTPFailure(f"{type(exc).__name__}: {_reason(exc)}") from None
    except ssl.SSLError as exc:
        # httpx 0.23 with httpcore 0.16 (Debian 12) lets a failed TLS handshake through
        # unwrapped; newer ones raise ConnectError with it as the cause
        raise HTTPFailure(f"cannot connect: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause, which says what really happened (e.g. certificate verify failed)."""
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = str(inner) or type(inner).__name__
    return text[:200]
