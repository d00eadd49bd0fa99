"""dynv6: the Update API, one GET to `/api/update` per zone and address family.

What dynv6's API page (dynv6.com/docs/apis) says, and what follows from it:

- `zone` names the zone (`hostname` is an accepted alias) and `token` is an HTTP token for it;
  both are mandatory, and the token travels in the query string.
- `ipv4` sets the zone's A record, `ipv6` its AAAA record; a parameter that is absent leaves its
  record unchanged, so one request per family touches only that family. An `ipv6` value with a
  prefix length (`2001:db8::7/64`) also updates the zone's IPv6 prefix, which dynv6 uses for the
  zone's other AAAA records: `ipv6_prefix_length` turns that on.
- The page does not list the answers. dynv6's operator advised client authors to read the HTTP
  status and not the text (chriv/dynephant#1), so the status decides, read the usual HTTP way
  (the mapping is ours, not dynv6's): 200 is done (the text, e.g.
  `addresses updated` or `addresses unchanged`, is only shown), 401/403 is a refused token, 404 an
  unknown zone, 400 a refused value — all need the user — and 429 or 5xx mean "later".

The token is masked in logs as it is and as it looks percent-encoded in a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ddnsagent import http
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, HTTPFailure, TransientError
from ddnsagent.names import is_name
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, redact, register_query_value
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "dynv6"
KEYS = "zones, token|token_file|token_env, ipv6_prefix_length, url"

DEFAULT_URL = "https://dynv6.com/api/update"


@dataclass(frozen=True)
class Settings(Common):
    zones: tuple[str, ...]
    token: Secret
    ipv6_prefix_length: int  # 0: publish the address only, leave the zone's prefix alone
    url: str


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False, keepalive=0.0)
    zones = [z.strip().lower().rstrip(".") for z in t.str_list("zones")]
    if not zones:
        raise t.error("zones", "is empty", 'list at least one, e.g. ["myhome.dynv6.net"]')
    for zone in zones:
        if not is_name(zone):
            raise t.error("zones", f"{zone!r} is not a zone name", 'e.g. "myhome.dynv6.net"')
    token = t.secret("token")
    assert token is not None
    length = t.integer("ipv6_prefix_length", 0, minimum=0)
    if length > 128:
        raise t.error("ipv6_prefix_length", f"found {length}, must be at most 128")
    return Settings(
        **common,
        zones=tuple(dict.fromkeys(zones)),
        token=token,
        ipv6_prefix_length=length,
        url=t.url("url", DEFAULT_URL, insecure_http=common["insecure_http"]),
    )


def judge(
    status: int, body: str, zone: str, wait: str | None = None, location: str | None = None
) -> str:
    """The meaning of one answer for `zone`; pure, so it is tested on plain strings.

    `wait` is the answer's Retry-After header, if any.
    """
    text = redact(" ".join(body.split()))[:120]
    http_verdict(
        status,
        "dynv6",
        "check token: it must be a dynv6 HTTP token valid for this zone",
        refused=f"dynv6 refused the token for {zone} (HTTP {status})",
        retry_after_header=wait,
        location=location,
    )
    if status == 200:
        return f"{zone}: {text or 'done'}"
    if status == 404:
        raise FatalAnswer(f"dynv6 does not know the zone {zone} (HTTP 404)", "check zones")
    if status == 400:
        raise FatalAnswer(
            f"dynv6 refused the request for {zone} (HTTP 400): {text!r}",
            "check zones and ipv6_prefix_length",
        )
    raise FatalAnswer(f"dynv6 answered HTTP {status}", "check url")


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _value(self, family: int, address: IPAddress) -> tuple[str, str]:
        if family == 4:
            return "ipv4", str(address)
        length = self.settings.ipv6_prefix_length
        return "ipv6", f"{address}/{length}" if length else str(address)

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        key, value = self._value(family, address)
        return "; ".join(f"GET {s.url}?zone={z}&token=***&{key}={value}" for z in s.zones)

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        s = self.settings
        token = s.token.reveal()
        register_query_value(token)
        key, value = self._value(family, address)
        results = []
        for zone in s.zones:
            params = {"zone": zone, "token": token, key: value}
            try:
                answer = await http.fetch(client, "GET", s.url, params=params)
            except HTTPFailure as exc:
                raise TransientError(redact(str(exc))) from None
            results.append(
                judge(
                    answer.status,
                    answer.body,
                    zone,
                    answer.headers.get("retry-after"),
                    answer.headers.get("location"),
                )
            )
        return "; ".join(results)


_: type[Provider] = Client
