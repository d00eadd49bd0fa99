"""A strict local emulator of the dyndns2 update protocol (Dyn "Perform Update", No-IP).

The protocol as Dyn's and No-IP's integration pages describe it:

- `GET /nic/update?hostname=h1,h2&myip=IP` with HTTP Basic authentication and a User-Agent that
  names the client. Dyn wants company, device/program and version ("Company - Device - 1.1"),
  No-IP "Company NameOfProgram/Version contact". Dyn permits POST but discourages it and may stop
  accepting it; anything other than `/nic/update` must not be accessed at all.
- `hostname`: up to 20 comma-separated names. Every name gets the same update.
- `myip`: optional; without it the service uses the address the request came from. No-IP also
  takes `myipv6` and answers with both addresses, comma separated, when both are given; this fake
  accepts `myip` as one IPv4 and/or one IPv6 address (comma separated) plus `myipv6`. Dyn ignores
  a malformed `myip` and falls back to the peer address; so does the fake, noting a violation.
- The answer is text/plain, one line per hostname in request order: `good IP` (changed),
  `nochg IP` (already so; repeating it gets the host blocked), `nohost` (no such host in the
  account), `notfqdn` (not a fully-qualified name; once if no name was given), `!yours` (exists,
  other account), `abuse` (host blocked). Codes about the account or the system come once for the
  whole request: `badauth`, `badagent` (agent missing/refused or method not permitted),
  `!donator` (paid-only option, such as `offline`), `numhost` (more than 20 names), `badsys`
  (unknown `system`), `dnserr` and `911` (provider trouble; No-IP asks for 30 minutes' wait).
- Bad credentials: No-IP answers HTTP 401 with `WWW-Authenticate` and the body `badauth`; other
  dyndns2 services answer 200 `badauth`. `badauth_status` chooses; 401 is the default.
  No-IP ends lines with CRLF; `line_ending` chooses.

Any other code a provider might use (e.g. `!active`) can be forced per host or per request.

Dual stack — what a request that names one family does to the other (`family_rule`):

- "replace" (Dyn): the request's addresses replace the host's: an IPv4-only update deletes the
  AAAA and an IPv6-only one the A; both go together as `myip=IPv4,IPv6`. Sources: OpenWrt
  packages issue #8360 (github.com/openwrt/packages/issues/8360: "Updating with just the IPV4
  address removes the AAAA record … they both must be included in a comma separated list with
  the myip parameter") and Dyn's "Perform Update" page (help.dyn.com/remote-access-api/
  perform-update/: "Use commas to separate multiple IP addresses in the myip field").
- "keep" (default; No-IP, Strato, Variomedia as far as documented): a family not named is left
  as it was. Variomedia documents `myip=127.0.0.1,::1` for hosts with both records
  (dyndns.variomedia.de); Strato is dyndns2 with `myip=IPv4,IPv6` as Synology's Strato script
  sends it (github.com/schmidhorst/synology-ddns-IPv6, Strato46.php); No-IP updates A and AAAA
  "individually or dual-stacked" and takes IPv6 "through IPv4 systems" (noip.com/integrate/
  request): `myipv6=` beside `myip=`, as this emulator read that page when it was written (the
  stored copy is cut before the parameter table).
- "dynu": Dynu takes `myip` and `myipv6` (its IP Update Protocol page,
  dynu.com/DynamicDNS/IP-Update-Protocol; the URL form `…/nic/update?hostname=…&myip=…&myipv6=…`
  as quoted in github.com/dstapp/docker-ddns/issues/46). A family not named is filled from the
  connection's address when the request came over that family, and `no` leaves it untouched:
  the rule as issue 12 reports it, and the reason public Dynu clients send `myipv6=no` (and
  `myip=no` to update IPv6 alone). The stored copy of Dynu's page does not show its parameter
  table, so this rule is the one least directly sourced here.
- Dyn documents the comma list for its `/v3/update` URL with an Updater Client Key; the preset
  keeps the `/nic/update` URL the same page gives for username and password, with the same list.

Agent refusals (`agent_refusal`): Dyn's return codes (help.dyn.com/return-codes/; its table as
reproduced at pierschel.com/en/software-blog/11-user-manuals/33-dyndns-returncodes-en) list
`badagent`, and `good 127.0.0.1`, which "indicates good update only when 127.0.0.1 address is
requested"; otherwise the request was ignored because the agent does not follow the
specifications. Both leave every record as it was. Dyn calls every failed update fatal: the
client must stop until the user acts. `badsys` (a `system` other than dyndns, statdns,
custom) is one of them.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ._server import FakeServer, RecordedRequest, Response, not_found, text

PATH = "/nic/update"
MAX_HOSTS = 20
KNOWN_PARAMETERS = frozenset(
    {"hostname", "myip", "myipv6", "wildcard", "mx", "backmx", "offline", "system"}
)
SYSTEMS = frozenset({"dyndns", "statdns", "custom"})
GENERIC_AGENTS = (
    "python-httpx/",
    "python-requests/",
    "python-urllib/",
    "aiohttp/",
    "go-http-client/",
    "curl/",
    "wget/",
    "mozilla/",
)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PRODUCT = re.compile(r"^[A-Za-z][\w.+-]*/[\w.+-]*\d[\w.+-]*$")
_DYN_AGENT = re.compile(r"^\S.* - \S.* - \S*\d\S*$")
_CONTACT = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+|https?://\S+")


@dataclass
class Host:
    """One hostname's record and what happened to it.

    `attempts` counts its owner's requests that named it and got past authentication, agent and
    request-wide checks; `changes` counts `good` answers; `nochg` counts `nochg` since the last.
    """

    owner: str
    ipv4: str | None = None
    ipv6: str | None = None
    blocked: bool = False
    attempts: int = 0
    changes: int = 0
    nochg: int = 0


def is_fqdn(name: str) -> bool:
    """At least two DNS labels of letters, digits and inner hyphens; 253 characters at most."""
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_LABEL.match(x) for x in labels)


def agent_problem(
    agent: str | None, *, refused: Iterable[str] = GENERIC_AGENTS, contact: bool = False
) -> str | None:
    """Why this User-Agent would be answered `badagent`, or None if it is acceptable."""
    if agent is None or not agent.strip():
        return "no User-Agent"
    if agent.lower().startswith(tuple(p.lower() for p in refused)):
        return f"generic User-Agent {agent!r} does not identify the client"
    if not (_DYN_AGENT.match(agent) or any(_PRODUCT.match(t) for t in agent.split())):
        return f"User-Agent {agent!r} names no program and version"
    if contact and not _CONTACT.search(agent):
        return f"User-Agent {agent!r} gives no maintainer contact"
    return None


class Dyndns2Server(FakeServer):
    """The dyndns2 `/nic/update` endpoint.

    `users` maps user name to password; `hosts` maps hostname to its current address ("IPv4",
    "IPv6", "IPv4,IPv6" or None), all owned by `owner` (default: the first user). `add_host()`
    adds hosts owned by anyone, which is how `!yours` is provoked.

    Knobs, besides those of `FakeServer`:
    `block(host)` (answers `abuse`), `set_answer(host, code)` (that line for that host),
    `answer_each` (that line for every host), `answer_once` (that single code for the request,
    e.g. "911"), `badauth_status`, `allow_post`, `require_contact`, `refused_agents`,
    `donators` (users allowed `offline`), `nochg_limit` (block a host after that many `nochg`),
    `line_ending`, `realm`.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        hosts: Mapping[str, str | None] | None = None,
        *,
        owner: str | None = None,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        if not users:
            raise ValueError("a dyndns2 service needs at least one user")
        self.users = dict(users)
        self.answer_once: str | None = None
        self.answer_each: str | None = None
        self.badauth_status: int = 401
        self.allow_post: bool = False
        self.require_contact: bool = False
        self.refused_agents: tuple[str, ...] = GENERIC_AGENTS
        self.donators: set[str] = set()
        self.nochg_limit: int | None = None
        self.line_ending: str = "\r\n"
        self.realm: str = "dyndns2 update"
        self.family_rule: str = "keep"  # "keep" | "replace" (Dyn) | "dynu", see above
        self.agent_refusal: str = "badagent"  # or "good 127.0.0.1" (Dyn, see above)
        self._state = threading.Lock()
        self._hosts: dict[str, Host] = {}
        self._answers: dict[str, str] = {}
        default_owner = owner if owner is not None else next(iter(self.users))
        for name, address in (hosts or {}).items():
            self.add_host(name, address, owner=default_owner)

    @property
    def update_url(self) -> str:
        return self.url + PATH

    # -- state, for tests ------------------------------------------------------------------------

    def add_host(self, name: str, address: str | None = None, *, owner: str | None = None) -> None:
        ipv4, ipv6 = _split_addresses(address) if address else (None, None)
        record = Host(owner=owner if owner is not None else next(iter(self.users)))
        record.ipv4, record.ipv6 = ipv4, ipv6
        with self._state:
            self._hosts[name.lower()] = record

    def record(self, name: str) -> Host:
        """A copy of the host's current record (KeyError if unknown)."""
        with self._state:
            return replace(self._hosts[name.lower()])

    def attempts(self, name: str) -> int:
        return self.record(name).attempts

    def block(self, name: str, blocked: bool = True) -> None:
        with self._state:
            self._hosts[name.lower()].blocked = blocked

    def set_answer(self, name: str, code: str | None) -> None:
        """Answer `code` (any line, e.g. "dnserr" or "!active") for this host; None undoes."""
        with self._state:
            if code is None:
                self._answers.pop(name.lower(), None)
            else:
                self._answers[name.lower()] = code

    # -- the protocol ----------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != PATH:
            self.violation(f"request for {request.path!r}; only {PATH} may be accessed")
            return not_found()
        if request.auth_malformed:
            self.violation("Authorization header is not valid Basic credentials")
        if request.user is None:
            return self._challenge(401)
        if self.users.get(request.user) != request.password:
            if self.badauth_status == 401:
                return self._challenge(401)
            return self._lines(["badauth"], status=self.badauth_status)
        if request.method != "GET" and not (request.method == "POST" and self.allow_post):
            self.violation(f"{request.method} {PATH}; updates are GET requests")
            return self._lines(["badagent"])
        problem = agent_problem(
            request.header("User-Agent"), refused=self.refused_agents, contact=self.require_contact
        )
        if problem:
            self.violation(problem)
            if self.agent_refusal == "badagent":
                return self._lines(["badagent"])
            count = len([n for n in request.query.get("hostname", "").split(",") if n])
            return self._lines([self.agent_refusal] * max(count, 1))
        for name in request.query:
            if name not in KNOWN_PARAMETERS:
                self.violation(f"undocumented parameter {name!r}")
        if self.answer_once is not None:
            return self._lines([self.answer_once])
        system = request.query.get("system")
        if system is not None and system not in SYSTEMS:
            return self._lines(["badsys"])
        if "offline" in request.query and request.user not in self.donators:
            return self._lines(["!donator"])
        names = [n for n in request.query.get("hostname", "").split(",") if n]
        if not names:
            return self._lines(["notfqdn"])
        if len(names) > MAX_HOSTS:
            return self._lines(["numhost"])
        ipv4, ipv6 = self._addresses(request)
        return self._lines([self._update(n, request.user, ipv4, ipv6) for n in names])

    def _addresses(self, request: RecordedRequest) -> tuple[str | None, str | None]:
        if self.family_rule == "dynu":
            return self._dynu_addresses(request)
        ipv4 = ipv6 = None
        given = False
        myip = request.query.get("myip")
        if myip:
            try:
                ipv4, ipv6 = _split_addresses(myip)
                given = True
            except ValueError as error:
                self.violation(f"myip={myip!r}: {error}; the peer address is used instead")
        myipv6 = request.query.get("myipv6")
        if myipv6:
            try:
                address = ipaddress.ip_address(myipv6)
                if address.version != 6:
                    raise ValueError("not an IPv6 address")
                ipv6, given = str(address), True
            except ValueError as error:
                self.violation(f"myipv6={myipv6!r}: {error}")
        if given:
            return ipv4, ipv6
        peer = ipaddress.ip_address(self.peer(request))
        return (str(peer), None) if peer.version == 4 else (None, str(peer))

    def _dynu_addresses(self, request: RecordedRequest) -> tuple[str | None, str | None]:
        """Dynu: `myip` / `myipv6` each an address or `no`; one not given comes from the
        connection when it came over that family. None = leave that record alone."""
        peer = ipaddress.ip_address(self.peer(request))
        out: list[str | None] = []
        for key, version in (("myip", 4), ("myipv6", 6)):
            value = request.query.get(key)
            if value == "no":
                out.append(None)
            elif value is None or value == "":
                out.append(str(peer) if peer.version == version else None)
            else:
                try:
                    address = ipaddress.ip_address(value)
                    if address.version != version:
                        raise ValueError(f"not an IPv{version} address")
                    out.append(str(address))
                except ValueError as error:
                    self.violation(f"{key}={value!r}: {error}")
                    out.append(None)
        return out[0], out[1]

    def _update(self, name: str, user: str, ipv4: str | None, ipv6: str | None) -> str:
        key = name.lower()
        with self._state:
            record = self._hosts.get(key)
            if record is not None and record.owner == user:
                record.attempts += 1
            if not is_fqdn(name):
                return "notfqdn"
            if key in self._answers:
                return self._answers[key]
            if self.answer_each is not None:
                return self.answer_each
            if record is None:
                return "nohost"
            if record.owner != user:
                return "!yours"
            if record.blocked:
                return "abuse"
            shown = ",".join(a for a in (ipv4, ipv6) if a)
            changed = (ipv4 is not None and ipv4 != record.ipv4) or (
                ipv6 is not None and ipv6 != record.ipv6
            )
            if self.family_rule == "replace":  # Dyn: what the request names is all there is
                changed = changed or (ipv4, ipv6) != (record.ipv4, record.ipv6)
            if changed:
                replace_all = self.family_rule == "replace"
                record.ipv4 = ipv4 if ipv4 is not None or replace_all else record.ipv4
                record.ipv6 = ipv6 if ipv6 is not None or replace_all else record.ipv6
                record.changes += 1
                record.nochg = 0
                return f"good {shown}"
            record.nochg += 1
            if self.nochg_limit is not None and record.nochg >= self.nochg_limit:
                record.blocked = True
            return f"nochg {shown}"

    def _lines(self, lines: list[str], status: int = 200) -> Response:
        return text(status, "".join(line + self.line_ending for line in lines))

    def _challenge(self, status: int) -> Response:
        return text(
            status,
            "badauth" + self.line_ending,
            headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'},
        )


def _split_addresses(value: str) -> tuple[str | None, str | None]:
    """One IPv4 and/or one IPv6 address, comma separated, normalised; ValueError otherwise."""
    ipv4 = ipv6 = None
    for part in value.split(","):
        address = ipaddress.ip_address(part)
        if address.version == 4:
            if ipv4 is not None:
                raise ValueError("more than one IPv4 address")
            ipv4 = str(address)
        else:
            if ipv6 is not None:
                raise ValueError("more than one IPv6 address")
            ipv6 = str(address)
    return ipv4, ipv6
