"""DuckDNS: one GET to `/update` with the account token in the query string.

What DuckDNS's HTTP API specification (www.duckdns.org/spec.jsp) says, and what follows from it:

- `domains` is a comma-separated list of sub-names; the `.duckdns.org` part may be left out.
- `ip` takes the address to publish; without it DuckDNS guesses an IPv4 address from the
  connection. `ipv6` takes an IPv6 address and, when given, turns that guess off — so the IPv4
  update sends `ip=` and the IPv6 update sends `ipv6=` alone, and neither touches the other record.
- A good answer is `OK`; with `verbose=true` it goes on with the IPv4 and IPv6 addresses and
  `UPDATED` or `NOCHANGE`. Every refusal is the bare `KO` (a wrong token or a domain that is not
  in the account): retrying cannot fix it, so the target stops.

DuckDNS's FAQ says the service is not reachable over IPv6 (its AWS load balancers are IPv4-only).
The address to publish is a parameter, so the IPv6 update does not need an IPv6 connection: it
goes out on a client that may use either family, instead of the IPv6-bound one the agent gives.

The token travels in the URL: `Secret.reveal()` registers it with the log redactor and
`register_query_value` adds its percent-encoded form, both before the request exists. Messages
never contain it and `describe()` shows `***`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ddnsagent import http
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, HTTPFailure, TransientError
from ddnsagent.names import is_label
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, redact, register_query_value
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "duckdns"
KEYS = "domains, token|token_file|token_env, url"

DEFAULT_URL = "https://www.duckdns.org/update"
DEFAULT_TIMEOUT = 10.0
SUFFIX = ".duckdns.org"
TOKEN_FIX = "check token and that every name in domains belongs to this DuckDNS account"


@dataclass(frozen=True)
class Settings(Common):
    domains: tuple[str, ...]
    token: Secret
    url: str


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False, keepalive=0.0)
    domains = [_subname(t, name) for name in t.str_list("domains")]
    if not domains:
        raise t.error("domains", "is empty", 'list at least one, e.g. ["myhome"]')
    token = t.secret("token")
    assert token is not None
    return Settings(
        **common,
        domains=tuple(dict.fromkeys(domains)),
        token=token,
        url=t.url("url", DEFAULT_URL, insecure_http=common["insecure_http"]),
    )


def _subname(t: Table, name: str) -> str:
    """`myhome` from `myhome` or `myhome.duckdns.org`; anything else is refused."""
    sub = name.strip().lower().removesuffix(SUFFIX)
    if not is_label(sub):
        raise t.error(
            "domains",
            f"{name!r} is not a DuckDNS name",
            'write the name under duckdns.org, e.g. "myhome" or "myhome.duckdns.org"',
        )
    return sub


def judge(
    status: int,
    body: str,
    domains: tuple[str, ...] | list[str],
    retry_after: str | None = None,
    location: str | None = None,
) -> str:
    """The meaning of one answer; pure, so it is tested on plain strings."""
    names = ",".join(domains)
    http_verdict(status, "DuckDNS", TOKEN_FIX, retry_after_header=retry_after, location=location)
    if status != 200:
        raise FatalAnswer(f"DuckDNS answered HTTP {status}", "check url")
    lines = [line.strip() for line in body.strip().splitlines()]
    first = lines[0] if lines else ""
    if first == "KO":
        raise FatalAnswer(
            "DuckDNS answered KO: it refused the token or one of the domains", TOKEN_FIX
        )
    if first != "OK":
        shown = redact(" | ".join(lines))[:120]
        raise TransientError(f"unexpected answer from DuckDNS {shown!r}")
    outcome = lines[3] if len(lines) >= 4 else ""
    if outcome == "UPDATED":
        return f"{names}: updated"
    if outcome == "NOCHANGE":
        return f"{names}: no change"
    return f"{names}: OK"


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        key = "ip" if family == 4 else "ipv6"
        names = ",".join(s.domains)
        return f"GET {s.url}?domains={names}&token=***&{key}={address}&verbose=true"

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        s = self.settings
        token = s.token.reveal()
        register_query_value(token)
        params = {
            "domains": ",".join(s.domains),
            "token": token,
            "ip" if family == 4 else "ipv6": str(address),
            "verbose": "true",
        }
        try:
            if family == 4:
                answer = await http.fetch(client, "GET", s.url, params=params)
            else:
                seconds = client.timeout.read or DEFAULT_TIMEOUT
                agent = client.headers.get("User-Agent")
                async with http.client(None, seconds, user_agent=agent) as either_family:
                    answer = await http.fetch(either_family, "GET", s.url, params=params)
        except HTTPFailure as exc:
            raise TransientError(redact(str(exc))) from None
        return judge(
            answer.status,
            answer.body,
            s.domains,
            answer.headers.get("retry-after"),
            answer.headers.get("location"),
        )


_: type[Provider] = Client
