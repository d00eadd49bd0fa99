"""A strict local emulator of DuckDNS's HTTP update API (`GET /update`).

The API as DuckDNS's specification page (www.duckdns.org/spec.jsp) describes it:

- `GET /update?domains=D&token=T[&ip=A][&ipv6=A6][&verbose=true][&clear=true]`.
- `domains`: required, a comma-separated list of sub-names; `.duckdns.org` may be left out.
- `token`: required, the account token.
- `ip`: optional, an IPv4 or an IPv6 address. When neither `ip` nor `ipv6` is given, DuckDNS
  detects the address from the connection, which only works for IPv4.
- `ipv6`: optional, an IPv6 address; when given, the detection for `ip` is not used.
- `clear=true`: ignore every address and clear both records.
- A good answer is `OK`, a bad one `KO`. With `verbose=true` a good answer has four lines: `OK`,
  the current IPv4 address (may be blank), the current IPv6 address (may be blank), and `UPDATED`
  or `NOCHANGE`.

What the page leaves open, and what the fake chooses: every refusal (missing or unknown token,
a domain outside the token's account, an address that does not parse) is `KO` with status 200
and changes nothing; the fake also notes a violation for a malformed request the client should
never send. The page documents no throttling; `throttle = True` answers 429 as a stand-in for
whatever the service might do. The "no-parameter" path form (`/update/DOMAIN/TOKEN`) for very
basic routers is not emulated: any path but `/update` is a violation.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ._server import FakeServer, RecordedRequest, Response, method_not_allowed, not_found, text

PATH = "/update"
SUFFIX = ".duckdns.org"
PARAMETERS = frozenset({"domains", "token", "ip", "ipv6", "verbose", "clear"})


@dataclass
class Domain:
    """One sub-name's records and how often they changed."""

    owner: str  # the token that may update it
    ipv4: str | None = None
    ipv6: str | None = None
    changes: int = 0


class DuckDNSServer(FakeServer):
    """DuckDNS's `/update` endpoint.

    `accounts` maps a token to the sub-names (without `.duckdns.org`) of its account.
    Knobs, besides those of `FakeServer`: `throttle` (answer 429, no change).
    """

    def __init__(
        self,
        accounts: Mapping[str, Iterable[str]],
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.throttle: bool = False
        self._state = threading.Lock()
        self._domains: dict[str, Domain] = {}
        for token, names in accounts.items():
            for name in names:
                self._domains[_subname(name)] = Domain(owner=token)

    @property
    def update_url(self) -> str:
        return self.url + PATH

    def domain(self, name: str) -> Domain:
        """A copy of the domain's current state (KeyError if unknown)."""
        with self._state:
            return replace(self._domains[_subname(name)])

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != PATH:
            self.violation(f"request for {request.path!r}; updates go to {PATH}")
            return not_found()
        if request.method != "GET":
            self.violation(f"{request.method} {PATH}; the update is a GET")
            return method_not_allowed("GET")
        for name in request.query:
            if name not in PARAMETERS:
                self.violation(f"undocumented parameter {name!r}")
        if self.throttle:
            return text(429, "Too Many Requests\n", headers={"Retry-After": "60"})
        query = request.query
        token = query.get("token", "")
        names = [_subname(n) for n in query.get("domains", "").split(",") if n.strip()]
        if not token or not names:
            self.violation("domains and token are both required")
            return _ko()
        verbose = query.get("verbose", "").lower() == "true"
        if query.get("verbose", "true").lower() != "true":
            self.violation(f"verbose={query['verbose']!r}; the page only knows verbose=true")
        with self._state:
            records = [self._domains.get(n) for n in names]
            if any(r is None or r.owner != token for r in records):
                return _ko()
            wanted = self._wanted(request)
            if wanted is None:
                return _ko()
            ipv4, ipv6 = wanted
            changed = False
            for record in records:
                assert record is not None
                new4 = record.ipv4 if ipv4 is _KEEP else ipv4
                new6 = record.ipv6 if ipv6 is _KEEP else ipv6
                if (new4, new6) != (record.ipv4, record.ipv6):
                    record.ipv4, record.ipv6 = new4, new6  # type: ignore[assignment]
                    record.changes += 1
                    changed = True
            shown = records[0]
            assert shown is not None
        if not verbose:
            return text(200, "OK")
        outcome = "UPDATED" if changed else "NOCHANGE"
        return text(200, f"OK\n{shown.ipv4 or ''}\n{shown.ipv6 or ''}\n{outcome}")

    def _wanted(self, request: RecordedRequest) -> tuple[object, object] | None:
        """The new (IPv4, IPv6) values, `_KEEP` for untouched; None if a value is refused."""
        query = request.query
        if query.get("clear", "").lower() == "true":
            return None, None
        ipv4: object = _KEEP
        ipv6: object = _KEEP
        if query.get("ip"):
            address = _parse(query["ip"])
            if address is None:
                self.violation(f"ip={query['ip']!r} is not an address")
                return None
            if address.version == 4:
                ipv4 = str(address)
            else:
                ipv6 = str(address)
        if query.get("ipv6"):
            address = _parse(query["ipv6"])
            if address is None or address.version != 6:
                self.violation(f"ipv6={query['ipv6']!r} is not an IPv6 address")
                return None
            ipv6 = str(address)
        if ipv4 is _KEEP and ipv6 is _KEEP:
            peer = _parse(self.peer(request))
            if peer is not None and peer.version == 4:
                ipv4 = str(peer)
        return ipv4, ipv6


_KEEP = object()


def _ko() -> Response:
    return text(200, "KO")


def _subname(name: str) -> str:
    return name.strip().lower().removesuffix(SUFFIX)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
