"""deSEC: the dynDNS IP Update API at update.dedyn.io, one GET per address family.

What deSEC's documentation (desec.readthedocs.io: dyndns/update-api, rate-limits) says, and what
follows from it:

- Authentication by HTTP Basic with a domain name as user and the token secret as password (the
  method deSEC prefers); the token never travels in the URL. A failure is HTTP 401 (`badauth`).
- `hostname` lists the names to update, comma-separated, all under one domain of the account;
  the update is atomic. A name deSEC cannot place is 404 (`nohost`); a request it cannot accept
  (names of two domains, no name and several domains, a malformed value) is 400.
- A family whose parameters are absent is taken from the connection address, or its record is
  *deleted*; deSEC therefore recommends giving both families every time and `preserve` for the
  one not meant. The IPv4 update sends `myipv4=ADDR&myipv6=preserve`, the IPv6 update the mirror.
- Success is 200 with the body `good`. Updates are throttled per domain (2 in 2 minutes, which
  leaves room for one IPv4 and one IPv6 update); a throttled request gets 429 with
  `Retry-After`, which becomes the least wait. deSEC's terms ask for updates only when something
  changed, so there is no keepalive by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ddnsagent import http
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, HTTPFailure, TransientError
from ddnsagent.names import is_name
from ddnsagent.providers.base import MAX_WAIT, Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, redact, register_basic_auth
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "desec"
KEYS = "hostnames, token|token_file|token_env, url"

DEFAULT_URL = "https://update.dedyn.io/"
DEFAULT_THROTTLE_WAIT = 120.0  # the dyndns rate window, when the answer names no wait
_SECONDS_IN_BODY = re.compile(r"available in (\d+) seconds?")


@dataclass(frozen=True)
class Settings(Common):
    hostnames: tuple[str, ...]
    token: Secret
    url: str


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False, keepalive=0.0)
    names = [h.strip().lower().rstrip(".") for h in t.str_list("hostnames")]
    if not names:
        raise t.error("hostnames", "is empty", 'list at least one, e.g. ["myhome.dedyn.io"]')
    for name in names:
        if not is_name(name):
            raise t.error("hostnames", f"{name!r} is not a fully qualified host name")
    url = t.url("url", DEFAULT_URL, insecure_http=common["insecure_http"])
    if url.split("?")[0].endswith((".ico", ".png")):
        raise t.error("url", f"{url!r}: deSEC does not serve updates on paths ending .ico/.png")
    token = t.secret("token")
    assert token is not None
    return Settings(**common, hostnames=tuple(dict.fromkeys(names)), token=token, url=url)


def body_wait(body: str) -> float:
    """The wait a throttled answer's body names, for when it has no usable `Retry-After`."""
    found = _SECONDS_IN_BODY.search(body)
    return min(max(float(found.group(1)), 1.0), MAX_WAIT) if found else DEFAULT_THROTTLE_WAIT


def judge(
    status: int,
    body: str,
    hostnames: tuple[str, ...] | list[str],
    wait: str | None,
    location: str | None = None,
) -> str:
    """The meaning of one answer; pure, so it is tested on plain strings.

    `wait` is the answer's Retry-After header, if any.
    """
    text = redact(" ".join(body.split()))[:160]
    names = ",".join(hostnames)
    if status == 403:
        refused = f"deSEC does not allow dynamic updates for {names} (HTTP 403)"
        fix = "check hostnames, or ask deSEC support"
    else:
        refused = f"badauth: deSEC refused the token (HTTP {status}: {text!r})"
        fix = "check token: it must be a deSEC token secret, not the account password"
    http_verdict(
        status,
        "deSEC",
        fix,
        refused=refused,
        detail=repr(text) if text else "",
        retry_after_header=wait,
        location=location,
        throttle_wait=body_wait(body),
    )
    if status == 200:
        if text.split()[:1] == ["good"]:
            return f"{names}: good"
        raise TransientError(f"deSEC answered 200 without `good`: {text!r}")
    if status == 404:
        raise FatalAnswer(
            f"nohost: deSEC has no domain for {names} in this account (HTTP 404)",
            "check hostnames",
        )
    if status == 400:
        raise FatalAnswer(
            f"deSEC refused the request (HTTP 400): {text!r}",
            "check hostnames: all must be under one domain; use one [[provider]] per domain",
        )
    raise FatalAnswer(f"deSEC answered HTTP {status}", "check url")


def _params(hostnames: tuple[str, ...], family: int, address: IPAddress) -> dict[str, str]:
    mine, other = ("myipv4", "myipv6") if family == 4 else ("myipv6", "myipv4")
    return {"hostname": ",".join(hostnames), mine: str(address), other: "preserve"}


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        query = "&".join(f"{k}={v}" for k, v in _params(s.hostnames, family, address).items())
        return f"GET {s.url}?{query} as {s.hostnames[0]} (Basic, token)"

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        s = self.settings
        token = s.token.reveal()
        user = s.hostnames[0]
        register_basic_auth(user, token)
        try:
            answer = await http.fetch(
                client,
                "GET",
                s.url,
                params=_params(s.hostnames, family, address),
                auth=(user, token),
            )
        except HTTPFailure as exc:
            raise TransientError(redact(str(exc))) from None
        return judge(
            answer.status,
            answer.body,
            s.hostnames,
            answer.headers.get("retry-after"),
            answer.headers.get("location"),
        )


_: type[Provider] = Client
