"""A strict local emulator of dynv6's Update API (`GET /api/update`).

The API as dynv6's API page (dynv6.com/docs/apis) describes it:

- `GET /api/update` with `zone` (mandatory; `hostname` and `Hostname` are accepted aliases),
  `token` (mandatory, an HTTP token for the zone) and the optional `ipv4`, `ipv6`, `ipv6prefix`.
- `ipv4`: an IPv4 address in dotted decimal, `auto` (the client's address) or `-` (remove).
- `ipv6`: an IPv6 address, `auto` or `6to4`; with a prefix length (`…/64`) and no `ipv6prefix`,
  the zone's prefix is updated too.
- `ipv6prefix`: a network in CIDR notation, `auto`, `6to4` or `-` (remove).
- A parameter that is empty or absent leaves its value unchanged.

The page does not document the answers; dynv6's operator told client authors to rely on the
HTTP status, not the text. The fake answers 200 `addresses updated` or `addresses unchanged`
(texts users have reported), 401 `invalid authentication token` for an unknown token, 404
`zone not found` for a zone the token may not update, and 400 for a value that does not parse;
only the statuses are meant to be relied on. There is no documented throttling; `throttle = True`
answers 429 with `Retry-After` as a stand-in.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ._server import FakeServer, RecordedRequest, Response, method_not_allowed, not_found, text

PATH = "/api/update"
ZONE_PARAMETERS = ("zone", "hostname", "Hostname")
PARAMETERS = frozenset({*ZONE_PARAMETERS, "token", "ipv4", "ipv6", "ipv6prefix"})


@dataclass
class Zone:
    """One zone's addresses and how often they changed."""

    ipv4: str | None = None
    ipv6: str | None = None
    prefix: str | None = None
    changes: int = 0


class BadValue(ValueError):
    pass


class Dynv6Server(FakeServer):
    """dynv6's `/api/update` endpoint.

    `tokens` maps an HTTP token to the zones it may update. Knobs, besides those of
    `FakeServer`: `throttle` (answer 429 with `Retry-After: retry_after`).
    """

    def __init__(
        self,
        tokens: Mapping[str, Iterable[str]],
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.throttle: bool = False
        self.retry_after: int = 30
        self._state = threading.Lock()
        self._tokens = {token: {z.lower() for z in zones} for token, zones in tokens.items()}
        self._zones = {z: Zone() for zones in self._tokens.values() for z in zones}

    @property
    def update_url(self) -> str:
        return self.url + PATH

    def zone(self, name: str) -> Zone:
        """A copy of the zone's current state (KeyError if unknown)."""
        with self._state:
            return replace(self._zones[name.lower()])

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != PATH:
            self.violation(f"request for {request.path!r}; updates go to {PATH}")
            return not_found()
        if request.method != "GET":
            self.violation(f"{request.method} {PATH}; the update is a GET")
            return method_not_allowed("GET")
        query = request.query
        for name in query:
            if name not in PARAMETERS:
                self.violation(f"undocumented parameter {name!r}")
        given = [p for p in ZONE_PARAMETERS if p in query]
        if len(given) > 1:
            self.violation(f"the zone is given as {' and '.join(given)}")
        zone_name = query.get(given[0], "").lower() if given else ""
        token = query.get("token", "")
        if not zone_name or not token:
            self.violation("zone and token are both mandatory")
        if self.throttle:
            return text(
                429, "rate limit exceeded\n", headers={"Retry-After": str(self.retry_after)}
            )
        if token not in self._tokens:
            return text(401, "invalid authentication token\n")
        if zone_name not in self._tokens[token]:
            return text(404, "zone not found\n")
        try:
            changes = self._changes(request)
        except BadValue as error:
            self.violation(str(error))
            return text(400, f"{error}\n")
        with self._state:
            zone = self._zones[zone_name]
            before = replace(zone)
            for key, value in changes.items():
                setattr(zone, key, value)
            changed = (zone.ipv4, zone.ipv6, zone.prefix) != (
                before.ipv4,
                before.ipv6,
                before.prefix,
            )
            if changed:
                zone.changes += 1
        return text(200, "addresses updated" if changed else "addresses unchanged")

    def _changes(self, request: RecordedRequest) -> dict[str, str | None]:
        query = request.query
        peer = ipaddress.ip_address(self.peer(request))
        changes: dict[str, str | None] = {}
        ipv4 = query.get("ipv4", "")
        if ipv4 == "-":
            changes["ipv4"] = None
        elif ipv4 == "auto":
            if peer.version != 4:
                raise BadValue("ipv4=auto over an IPv6 connection")
            changes["ipv4"] = str(peer)
        elif ipv4:
            changes["ipv4"] = str(_address(ipv4, 4, "ipv4"))
        ipv6 = query.get("ipv6", "")
        if ipv6 == "auto":
            if peer.version != 6:
                raise BadValue("ipv6=auto over an IPv4 connection")
            changes["ipv6"] = str(peer)
        elif ipv6 == "6to4":
            raise BadValue("ipv6=6to4 is not emulated")
        elif ipv6:
            address, _, length = ipv6.partition("/")
            changes["ipv6"] = str(_address(address, 6, "ipv6"))
            if length and "ipv6prefix" not in query:
                changes["prefix"] = str(_network(ipv6, "ipv6"))
        prefix = query.get("ipv6prefix", "")
        if prefix == "-":
            changes["prefix"] = None
        elif prefix in ("auto", "6to4"):
            raise BadValue(f"ipv6prefix={prefix} is not emulated")
        elif prefix:
            changes["prefix"] = str(_network(prefix, "ipv6prefix"))
        return changes


def _address(value: str, version: int, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise BadValue(f"{name}={value!r} is not an address") from None
    if address.version != version:
        raise BadValue(f"{name}={value!r} is not an IPv{version} address")
    return address


def _network(value: str, name: str) -> ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise BadValue(f"{name}={value!r} is not a network in CIDR notation") from None
    if not isinstance(network, ipaddress.IPv6Network):
        raise BadValue(f"{name}={value!r} is not an IPv6 network")
    return network
