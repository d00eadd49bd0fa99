"""`web` and `web:URL`: HTTPS echo services that answer with the address they see."""

from __future__ import annotations

from ddnsagent.address import IPAddress, parse_single
from ddnsagent.errors import DetectError, HTTPFailure

# Independent operators, so that a quorum over them means something.
BUILTIN = {
    4: (
        "https://api.ipify.org/",
        "https://ipv4.icanhazip.com/",
        "https://checkip.amazonaws.com/",
        "https://v4.ident.me/",
    ),
    6: (
        "https://api6.ipify.org/",
        "https://ipv6.icanhazip.com/",
        "https://v6.ident.me/",
    ),
}

MAX_ECHO_BODY = 1024


async def lookup(url: str, family: int, timeout: float) -> IPAddress:
    # httpx costs ~50 ms of start-up, which the configuration (it imports detect for the
    # [detect] section) must not pay; the agent has it loaded already when it gets here.
    from ddnsagent import http  # lazy: httpx costs ~50 ms; only a detection run needs it

    async with http.client(family, timeout) as client:
        try:
            answer = await http.fetch(client, "GET", url, limit=MAX_ECHO_BODY)
        except HTTPFailure as exc:
            raise DetectError(str(exc)) from None
    if answer.status != 200:
        raise DetectError(f"HTTP {answer.status}")
    try:
        return parse_single(answer.body, family)
    except ValueError as exc:
        raise DetectError(f"answered {exc}") from None
