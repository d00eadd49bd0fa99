"""The dyndns2 update protocol (Dyn, No-IP, Dynu and many compatible services).

One GET per batch of hostnames: `?hostname=h1,h2&myip=IP` with Basic auth; the body has one
answer per hostname, in order. Answers about the account or our client stop the target for good
(until its configuration changes or `ddnsagent reset`); an answer line that refuses one hostname
(`nohost`, `!yours`, …) stops that name alone and the others go on. `911` and `dnserr` mean the
service is in trouble and asks for at least 30 minutes of quiet.

With IPv4 and IPv6 both on, what one request carries is the service's own rule (`dual_stack`):
Dyn replaces both records with what a request names, so an IPv4-only update deletes the AAAA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import parse_qsl, urlsplit

from ddnsagent import http
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, HTTPFailure, TransientError
from ddnsagent.providers.base import Common, Provider, http_verdict, read_common
from ddnsagent.secrets import Secret, register_basic_auth
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "dyndns2"
KEYS = "server|preset, hostnames, username, password|password_file|password_env, dual_stack"

MAX_HOSTS_PER_REQUEST = 20  # the protocol's `numhost` limit
PARALLEL_REQUESTS = 4  # batches of one provider in flight at once

# How one request carries both families (tests/fakes/dyndns2.py cites each service's page):
#   separate  one family per request, `myip=ADDRESS` (what every dyndns2 server understands)
#   combined  `myip=IPv4,IPv6` (Dyn, Strato, Variomedia)
#   myipv6    `myip=IPv4&myipv6=IPv6` (No-IP)
#   dynu      `myip=IPv4|no&myipv6=IPv6|no`: Dynu fills a missing one from the connection
DUAL_STACK = ("separate", "combined", "myipv6", "dynu")
DEFAULT_DUAL_STACK = "separate"  # a server that knows no comma list would refuse `v4,v6`

# Each service's own update documentation gives the URL; a query in `server` is sent with every
# update (OVH asks for `system=dyndns`). After 911, No-IP wants 30 minutes (the default), Dynu 10.
PRESETS: dict[str, dict[str, object]] = {
    "noip": {
        "server": "https://dynupdate.no-ip.com/nic/update",
        "keepalive": 25 * 86400.0,
        "dual_stack": "myipv6",
    },
    "dynu": {"server": "https://api.dynu.com/nic/update", "wait_911": 600.0, "dual_stack": "dynu"},
    "dyndns": {"server": "https://members.dyndns.org/nic/update", "dual_stack": "combined"},
    "ovh": {"server": "https://www.ovh.com/nic/update?system=dyndns", "ipv4_only": True},
    "strato": {"server": "https://dyndns.strato.com/nic/update", "dual_stack": "combined"},
    "variomedia": {"server": "https://dyndns.variomedia.de/nic/update", "dual_stack": "combined"},
}

# Codes about the account, our client or the request: given once, they stop the whole target.
FATAL = {
    "badauth": "the username or password is wrong",
    "!donator": "the service wants a paid account for this request",
    "numhost": "too many hostnames in one request",
    "badagent": "the service refused our client",
    "badsys": "the service does not know the `system` of the request",
}
# Codes about one hostname: its line in the answer says which; that name alone is stopped.
NAME_FATAL = {
    "notfqdn": "not a fully qualified domain name",
    "nohost": "no such hostname in this account",
    "abuse": "the service blocked the hostname for abuse",
    "!yours": "the hostname belongs to another account",
    "!active": "the hostname is not active",
}
FIXES = {
    "badauth": "check username and password",
    "badagent": "set `user_agent` to name this program, its version and your contact",
    "badsys": "check the `system=` in server",
    "nohost": "check hostnames",
    "notfqdn": "check hostnames",
    "!yours": "check hostnames and username",
    "abuse": "unblock the hostname on the provider's site",
    "!active": "activate the hostname on the provider's site",
}
OK = ("good", "nochg")
WAIT = ("911", "dnserr")
# Dyn's return codes: `good 127.0.0.1` is a success only when 127.0.0.1 was asked for; otherwise
# the request was ignored because the service does not accept our client.
IGNORED = "127.0.0.1"
DEFAULT_WAIT_911 = 1800.0


@dataclass(frozen=True)
class Settings(Common):
    server: str
    hostnames: tuple[str, ...]
    username: str
    password: Secret
    wait_911: float
    dual_stack: str

    LATER_KEYS: ClassVar[dict[str, object]] = {
        **Common.LATER_KEYS,
        "dual_stack": DEFAULT_DUAL_STACK,
    }


def from_table(t: Table) -> Settings:
    preset_name = t.string("preset", None, choices=PRESETS)
    preset = PRESETS.get(preset_name or "", {})
    keepalive = float(preset.get("keepalive", 0.0))  # type: ignore[arg-type]
    common = read_common(t, ipv4=True, ipv6=False, keepalive=keepalive)
    for key in ("server", "dual_stack"):
        if preset and t.has(key):
            raise t.error(key, f"conflicts with preset = {preset_name!r}", "keep only one")
    if preset.get("ipv4_only") and common["ipv6"]:
        raise t.error("ipv6", f"preset {preset_name!r} updates IPv4 only", "set ipv6 = false")
    if "server" in preset:
        server = str(preset["server"])
    else:
        server = t.url("server", insecure_http=common["insecure_http"])
    dual_stack = str(
        preset.get("dual_stack", DEFAULT_DUAL_STACK)
        if preset
        else t.string("dual_stack", DEFAULT_DUAL_STACK, choices=("separate", "combined"))
    )
    hostnames = t.str_list("hostnames")
    if not hostnames:
        raise t.error("hostnames", "is empty", 'list at least one, e.g. ["home.example.net"]')
    for h in hostnames:
        if "." not in h or "," in h or " " in h:
            raise t.error("hostnames", f"{h!r} is not a fully qualified host name")
    password = t.secret("password")
    assert password is not None
    return Settings(
        **common,
        server=server,
        hostnames=tuple(hostnames),
        username=t.string("username"),
        password=password,
        wait_911=max(float(preset.get("wait_911", DEFAULT_WAIT_911)), 0.0),  # type: ignore[arg-type]
        dual_stack=dual_stack,
    )


@dataclass
class Answered:
    """One batch's answer: the message, and the names refused one by one (name → reason, fix)."""

    message: str
    stops: dict[str, tuple[str, str]] = field(default_factory=dict)


def judge_batch(
    status: int,
    body: str,
    hostnames: list[str],
    wait_911: float,
    retry_after: str | None = None,
    location: str | None = None,
    sent: tuple[str, ...] = (),
) -> Answered:
    """The meaning of one answer for `hostnames` (the addresses `sent`); pure, so it is tested
    on plain strings.

    Some services send their refusal codes with a 4xx status (No-IP: 401 `badauth`), so the
    body's code words the message whatever the status. Lines come back in request order (Dyn's
    return codes), so a line that refuses a name stops that name alone."""
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    codes = [line.split()[0] for line in lines]
    words = {**FATAL, **NAME_FATAL}
    known = next((c for c in codes if c in words), "badauth" if status == 401 else None)
    refused = f"{known}: {words[known]} (HTTP {status})" if known else None
    fix = FIXES.get(known or "badauth", "see the provider's site")
    http_verdict(
        status,
        "the service",
        fix,
        refused=refused,
        retry_after_header=retry_after,
        location=location,
    )
    if status != 200:
        if refused:
            raise FatalAnswer(refused, fix)
        raise FatalAnswer(f"HTTP {status} from the update URL", "check server")
    if not lines:
        raise TransientError("empty answer")
    for code in codes:
        if code in FATAL:
            raise FatalAnswer(f"{code}: {FATAL[code]}", FIXES.get(code, "see the provider's site"))
    for code in codes:
        if code in WAIT:
            raise TransientError(f"{code}: the service has a problem", min_wait=wait_911)
    for line in lines:
        parts = line.split()
        if parts[0] == "good" and parts[1:2] == [IGNORED] and IGNORED not in sent:
            raise FatalAnswer(
                f"`{line}`: the service ignored the update; Dyn answers so to a client it does "
                "not accept, and nothing was changed",
                "set `user_agent` to name this program, its version and your contact, or ask "
                "the service why it refuses the client",
            )
    if len(codes) == 1 and len(hostnames) > 1:
        if codes[0] in NAME_FATAL:  # one answer for many names cannot say which one it means
            code = codes[0]
            raise FatalAnswer(
                f"{code}: {NAME_FATAL[code]} (one answer for {len(hostnames)} hostnames)",
                FIXES.get(code, "see the provider's site"),
            )
        if codes[0] in OK:
            codes = codes * len(hostnames)  # some services answer once for the whole batch
    if len(codes) != len(hostnames) or any(c not in OK and c not in NAME_FATAL for c in codes):
        shown = " | ".join(lines)[:120]
        raise TransientError(f"unexpected answer {shown!r}")
    stops: dict[str, tuple[str, str]] = {}
    said = []
    for host, code in zip(hostnames, codes, strict=True):
        if code in NAME_FATAL:
            fix_one = FIXES.get(code, "see the provider's site")
            stops[host] = (f"{code}: {NAME_FATAL[code]}", f"{fix_one} ({host})")
            said.append(f"{host}: {code} — STOPPED, {NAME_FATAL[code]}")
        else:
            said.append(f"{host}: {code}")
    return Answered(", ".join(said), stops)


def judge(
    status: int,
    body: str,
    hostnames: list[str],
    wait_911: float,
    retry_after: str | None = None,
    location: str | None = None,
) -> str:
    """`judge_batch` for one request on its own: a message, or FatalAnswer when every name
    was refused."""
    answered = judge_batch(status, body, hostnames, wait_911, retry_after, location)
    all_refused(answered.stops, hostnames)
    return answered.message


def all_refused(stops: dict[str, tuple[str, str]], hostnames: list[str]) -> None:
    """FatalAnswer for the whole target when the service refused every one of `hostnames`."""
    if not hostnames or len(stops) < len(hostnames):
        return
    reasons = dict.fromkeys(reason for reason, _ in stops.values())
    fix = next(iter(stops.values()))[1].split(" (")[0]
    if len(hostnames) == 1:  # the message names the host, as the batch's do
        raise FatalAnswer(f"{next(iter(reasons))} ({hostnames[0]})", fix)
    raise FatalAnswer(f"{'; '.join(reasons)} ({', '.join(hostnames)})", fix)


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Names the last `update` saw refused one by one; the agent records their stops.
        self.name_stops: dict[str, tuple[str, str]] = {}
        self._current: dict[int, str] = {}  # this sync's addresses, by family
        self._sent: dict[int, str] = {}  # what each family last sent
        self._skip: set[str] = set()  # names stopped alone earlier
        self._done: dict[tuple[str | None, str | None], str] = {}  # this sync's requests

    def prepare(
        self, addresses: dict[int, IPAddress], sent: dict[int, str], stopped_names: set[str]
    ) -> None:
        """What the agent knows before the first `update` of a sync (see sync.Agent)."""
        self._current = {f: str(a) for f, a in addresses.items()}
        self._sent = dict(sent)
        self._skip = set(stopped_names)

    def _pair(self, family: int, address: IPAddress) -> tuple[str | None, str | None]:
        """The (IPv4, IPv6) one request carries: with both families on and a dual-stack rule,
        the other family's address too (this sync's, else the one last sent), so that a
        service which replaces both records never deletes the one not being updated."""
        s = self.settings
        known = {family: str(address)}
        if s.ipv4 and s.ipv6 and s.dual_stack != "separate":
            other = 6 if family == 4 else 4
            value = self._current.get(other) or self._sent.get(other)
            if value:
                known[other] = value
        return known.get(4), known.get(6)

    def _params(self, v4: str | None, v6: str | None) -> dict[str, str]:
        mode = self.settings.dual_stack
        if mode == "dynu":
            return {"myip": v4 or "no", "myipv6": v6 or "no"}
        if mode == "myipv6":
            return {k: v for k, v in (("myip", v4), ("myipv6", v6)) if v}
        return {"myip": ",".join(a for a in (v4, v6) if a)}

    def _names(self) -> list[str]:
        return [h for h in self.settings.hostnames if h not in self._skip]

    def _batches(self, names: list[str]) -> list[list[str]]:
        return [
            names[i : i + MAX_HOSTS_PER_REQUEST]
            for i in range(0, len(names), MAX_HOSTS_PER_REQUEST)
        ]

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        hosts = ",".join(self._names())
        joint = "&" if "?" in s.server else "?"
        query = "&".join(f"{k}={v}" for k, v in self._params(*self._pair(family, address)).items())
        return f"GET {s.server}{joint}hostname={hosts}&{query} as {s.username}"

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        """One request per batch of 20 hostnames; batches go out concurrently, at most
        `PARALLEL_REQUESTS` at a time, so a long host list is quick without flooding the service.
        A fatal answer for any batch wins over passing trouble in another."""
        import asyncio  # not at the top: reading the settings (status, check-config) needs none

        s = self.settings
        self.name_stops = {}
        v4, v6 = self._pair(family, address)
        if v4 and v6 and (v4, v6) in self._done:  # the other family's request carried both
            return f"{self._done[(v4, v6)]} (in one request with IPv{10 - family})"
        names = self._names()
        if not names:
            raise FatalAnswer(
                "every hostname was stopped alone earlier: " + ", ".join(sorted(self._skip)),
                "check hostnames",
            )
        password = s.password.reveal()
        register_basic_auth(s.username, password)
        # httpx replaces the URL's own query with `params`, so keep it explicitly.
        fixed = dict(parse_qsl(urlsplit(s.server).query, keep_blank_values=True))
        addresses = self._params(v4, v6)
        sent = tuple(a for a in (v4, v6) if a)
        gate = asyncio.Semaphore(PARALLEL_REQUESTS)

        async def send(batch: list[str]) -> Answered:
            params = {**fixed, "hostname": ",".join(batch), **addresses}
            async with gate:
                try:
                    answer = await http.fetch(
                        client, "GET", s.server, params=params, auth=(s.username, password)
                    )
                except HTTPFailure as exc:
                    raise TransientError(str(exc)) from None
            return judge_batch(
                answer.status,
                answer.body,
                batch,
                s.wait_911,
                answer.headers.get("retry-after"),
                answer.headers.get("location"),
                sent,
            )

        batches = self._batches(names)
        outcomes = await asyncio.gather(*(send(b) for b in batches), return_exceptions=True)
        for kind in (FatalAnswer, TransientError, BaseException):
            for outcome in outcomes:
                if isinstance(outcome, kind):
                    raise outcome
        answers = [o for o in outcomes if isinstance(o, Answered)]
        stops = {h: why for a in answers for h, why in a.stops.items()}
        all_refused(stops, names)
        self.name_stops = stops
        message = "; ".join(a.message for a in answers)
        self._done[(v4, v6)] = message
        return message


_: type[Provider] = Client
