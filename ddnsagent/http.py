"""The one place that talks HTTP: family-bound clients and answers read with a size cap.

MyDNS and the echo services learn our address from the connection itself, so a request about
IPv4 must leave over IPv4 and one about IPv6 over IPv6: the transport is bound to the family's
wildcard local address, which makes the connection fail instead of silently using the other family.
"""

from __future__ import annotations

import functools
import socket
import ssl
from dataclasses import dataclass

import httpx

from ddnsagent import USER_AGENT
from ddnsagent.errors import HTTPFailure

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: str


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~30 ms each time."""
    return httpx.create_ssl_context()


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
    local = local_address or ({4: "0.0.0.0", 6: "::"}.get(family) if family else None)
    transport = httpx.AsyncHTTPTransport(local_address=local, retries=0, verify=_tls_context())
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


def _reason(exc: BaseException) -> str:
    """The innermost cause, which says what really happened (e.g. certificate verify failed)."""
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = str(inner) or type(inner).__name__
    return text[:200]
