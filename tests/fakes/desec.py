"""A strict local emulator of deSEC's dynDNS IP Update API (update.dedyn.io).

The API as deSEC's documentation (desec.readthedocs.io: dyndns/update-api and rate-limits)
describes it:

- A `GET` on any path that does not end in `.ico` or `.png`.
- Authentication, else 401: HTTP Basic with a user name and the token secret (preferred), an
  `Authorization: Token …` header, or — discouraged, because deSEC logs URLs — the `username` and
  `password` query parameters. A Basic user name must be empty, the account's email, or a name
  under one of the account's domains.
- The names to update come from the first of: `hostname` (unless empty or `YES`), `host_id`, the
  Basic user name, the `username` parameter, or the account's only domain. Several names may be
  given, comma-separated; all must be under one domain and are updated atomically. No name and
  several domains is 400; a name under no domain of the account is 404 (`nohost`); names of two
  domains are 400.
- IPv4 comes from the first of `myip`, `myipv4`, `ip` holding IPv4 values, else from an IPv4
  connection, else the A record is deleted; IPv6 likewise from `myipv6`, `ipv6`, `myip`, `ip` or
  an IPv6 connection, else the AAAA record is deleted. A value is one address or a
  comma-separated list; `preserve` keeps the record as it is; an empty value deletes it; an
  address with a prefix length only replaces the network part of the records. deSEC recommends
  giving both families every time; the fake notes a violation when one is missing.
- Success is 200 `good` (text/plain). dynDNS updates are throttled per domain, 2 per 2 minutes in
  a sliding window; a throttled request gets 429, `Retry-After` in seconds and a sentence saying
  when to come back.

The answer texts of failures are those of deSEC's server code (desec-io/desec-stack); only the
status codes are documented.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._server import FakeServer, RecordedRequest, Response, method_not_allowed, not_found, text

DEFAULT_RATE = 2
DEFAULT_WINDOW = 120.0
IPV4_KEYS = ("myip", "myipv4", "ip")
IPV6_KEYS = ("myipv6", "ipv6", "myip", "ip")


@dataclass
class Records:
    """The A and AAAA records of one name, and what happened to them."""

    a: list[str] = field(default_factory=list)
    aaaa: list[str] = field(default_factory=list)
    updates: int = 0
    deletions: int = 0


class Refused(Exception):
    """The answer to a request that is refused before anything changes."""

    def __init__(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        if status == 401:
            self.headers.setdefault("WWW-Authenticate", "Token")


class DesecServer(FakeServer):
    """deSEC's dynDNS update endpoint for one account.

    `domains` are the account's domains, `tokens` its token secrets, `email` its login.
    Knobs, besides those of `FakeServer`: `rate` and `window` (the per-domain throttle;
    `rate = 0` turns it off), `answer_once` (a `(status, body)` for the next request only).
    """

    def __init__(
        self,
        domains: Iterable[str],
        tokens: Iterable[str],
        *,
        email: str = "owner@example.net",
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.domains = [d.lower() for d in domains]
        self.tokens = set(tokens)
        self.email = email
        self.rate: int = DEFAULT_RATE
        self.window: float = DEFAULT_WINDOW
        self.answer_once: tuple[int, str] | None = None
        self._state = threading.Lock()
        self._records: dict[str, Records] = {}
        self._history: dict[str, deque[float]] = {}

    @property
    def update_url(self) -> str:
        return self.url + "/"

    def records(self, name: str) -> Records:
        """The current records of `name` (a copy; empty if never touched)."""
        with self._state:
            r = self._records.get(name.lower(), Records())
            return Records(list(r.a), list(r.aaaa), r.updates, r.deletions)

    def set_records(self, name: str, a: Iterable[str] = (), aaaa: Iterable[str] = ()) -> None:
        with self._state:
            self._records[name.lower()] = Records(list(a), list(aaaa))

    # -- the protocol ----------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        if request.path.endswith((".ico", ".png")):
            self.violation(f"request for {request.path!r}; such paths are not the update API")
            return not_found()
        if request.method != "GET":
            self.violation(f"{request.method} {request.path}; the update is a GET")
            return method_not_allowed("GET")
        if self.answer_once is not None:
            status, body = self.answer_once
            self.answer_once = None
            return text(status, body, content_type="text/plain")
        try:
            basic_user = self._authenticate(request)
            names = self._names(request, basic_user)
            domain = self._domain_of(names)
            self._throttle(domain, request.time)
            a_action = self._action(request, IPV4_KEYS, 4)
            aaaa_action = self._action(request, IPV6_KEYS, 6)
        except Refused as refused:
            return text(
                refused.status, refused.body, content_type="text/plain", headers=refused.headers
            )
        with self._state:
            for name in names:
                record = self._records.setdefault(name, Records())
                record.a = _apply(record.a, a_action)
                record.aaaa = _apply(record.aaaa, aaaa_action)
                record.updates += 1
                if a_action == [] or aaaa_action == []:
                    record.deletions += 1
        return text(200, "good", content_type="text/plain")

    def _authenticate(self, request: RecordedRequest) -> str | None:
        """The Basic user name (None if another method was used); Refused(401) on failure."""
        header = request.header("Authorization") or ""
        if header.split(" ", 1)[0].lower() == "token":
            if header.split(" ", 1)[-1].strip() not in self.tokens:
                raise Refused(401, "Invalid token.")
            return None
        if request.user is not None:
            self._check(request.user, request.password or "")
            return request.user
        if request.auth_malformed:
            self.violation("Authorization header is neither Basic nor Token")
            raise Refused(401, "badauth")
        if "username" not in request.query:
            raise Refused(401, "No username URL parameter provided.")
        if "password" not in request.query:
            raise Refused(401, "No password URL parameter provided.")
        self.violation("the token was sent in the URL, which deSEC strongly discourages")
        self._check(request.query["username"], request.query["password"])
        return None

    def _check(self, user: str, token: str) -> None:
        if token not in self.tokens:
            raise Refused(401, "badauth")
        if user not in ("", self.email) and self._owner(user.lower()) is None:
            raise Refused(401, "badauth")

    def _names(self, request: RecordedRequest, basic_user: str | None) -> list[str]:
        query = request.query
        for key, reserved in (("hostname", ("", "YES")), ("host_id", ())):
            if key in query and query[key] not in reserved:
                return _split(query[key])
        if basic_user and "@" not in basic_user:
            return _split(basic_user)
        if "username" in query:
            return _split(query["username"])
        if len(self.domains) == 1:
            return [self.domains[0]]
        raise Refused(400, "Request does not properly specify domain for update.")

    def _owner(self, name: str) -> str | None:
        """The account's domain that `name` is in (the longest match), if any."""
        matches = [d for d in self.domains if name == d or name.endswith("." + d)]
        return max(matches, key=len) if matches else None

    def _domain_of(self, names: list[str]) -> str:
        owners = {self._owner(n) for n in names}
        if None in owners:
            raise Refused(404, "nohost")
        if len(owners) > 1:
            raise Refused(400, "Cannot update subdomains from more than one domain.")
        (domain,) = owners
        assert domain is not None
        return domain

    def _throttle(self, domain: str, now: float) -> None:
        if self.rate <= 0:
            return
        with self._state:
            history = self._history.setdefault(domain, deque())
            while history and history[0] <= now - self.window:
                history.popleft()
            if len(history) >= self.rate:
                wait = max(1, math.ceil(history[0] + self.window - now))
                raise Refused(
                    429,
                    f"Request was throttled. Expected available in {wait} seconds.",
                    {"Retry-After": str(wait)},
                )
            history.append(now)

    def _action(self, request: RecordedRequest, keys: tuple[str, ...], version: int) -> object:
        """`PRESERVE`, a list of addresses (empty: delete), or a network (replace the prefix).

        The request's time is `time.monotonic()`, the throttle's clock.
        """
        separator = "." if version == 4 else ":"
        present = [k for k in keys if k in request.query]
        if not present:
            self.violation(
                f"no {'/'.join(keys)} parameter: deSEC takes IPv{version} from the connection "
                "or deletes the record; give it, or `preserve`"
            )
        for key in present:
            values = {v.strip() for v in request.query[key].split(",")}
            values = {v for v in values if separator in v or v in ("", "preserve")}
            if not values:
                continue
            if len(values) > 1 and values & {"", "preserve"}:
                raise Refused(400, f'IP parameter "{key}" cannot mix addresses and "preserve".')
            if values == {""}:
                return []
            if values == {"preserve"}:
                return PRESERVE
            if len(values) == 1 and "/" in next(iter(values)):
                try:
                    return ipaddress.ip_network(next(iter(values)), strict=False)
                except ValueError as error:
                    raise Refused(
                        400, f'IP parameter "{key}" is an invalid subnet: {error}'
                    ) from None
            try:
                addresses = [ipaddress.ip_address(v) for v in sorted(values)]
            except ValueError:
                raise Refused(400, f'IP parameter "{key}" holds an invalid address.') from None
            if any(a.version != version for a in addresses):
                raise Refused(400, f'IP parameter "{key}" holds an address of the wrong family.')
            return [str(a) for a in addresses]
        peer = ipaddress.ip_address(self.peer(request))
        return [str(peer)] if peer.version == version else []


PRESERVE = object()


def _split(names: str) -> list[str]:
    return sorted({n.strip().lower() for n in names.split(",") if n.strip()})


def _apply(current: list[str], action: object) -> list[str]:
    if action is PRESERVE:
        return current
    if isinstance(action, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network, host = int(action.network_address), int(action.hostmask)
        return [
            str(ipaddress.ip_address(network | (int(ipaddress.ip_address(a)) & host)))
            for a in current
        ]
    assert isinstance(action, list)
    return list(action)
