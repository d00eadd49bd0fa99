"""The dyndns2 update protocol (Dyn, No-IP, Dynu and many compatible services).

One GET per batch of hostnames: `?hostname=h1,h2&myip=IP` with Basic auth; the body has one
answer per hostname, in order. Answers that mean "the user must fix something" stop the target
for good (until its configuration changes or `ddnsagent reset`); `911` and `dnserr` mean the
service is in trouble and asks for at least 30 minutes of quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
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
KEYS = "server|preset, hostnames, username, password|password_file|password_env"

MAX_HOSTS_PER_REQUEST = 20  # the protocol's `numhost` limit
PARALLEL_REQUESTS = 4  # batches of one provider in flight at once

# Each service's own update documentation gives the URL; a query in `server` is sent with every
# update (OVH asks for `system=dyndns`). After 911, No-IP wants 30 minutes (the default), Dynu 10.
PRESETS: dict[str, dict[str, object]] = {
    "noip": {"server": "https://dynupdate.no-ip.com/nic/update", "keepalive": 25 * 86400.0},
    "dynu": {"server": "https://api.dynu.com/nic/update", "wait_911": 600.0},
    "dyndns": {"server": "https://members.dyndns.org/nic/update"},
    "ovh": {"server": "https://www.ovh.com/nic/update?system=dyndns"},
    "strato": {"server": "https://dyndns.strato.com/nic/update"},
    "variomedia": {"server": "https://dyndns.variomedia.de/nic/update"},
}

FATAL = {
    "badauth": "the username or password is wrong",
    "!donator": "the service wants a paid account for this request",
    "notfqdn": "a hostname is not a fully qualified domain name",
    "nohost": "a hostname does not exist in this account",
    "numhost": "too many hostnames in one request",
    "abuse": "the service blocked the hostname for abuse",
    "badagent": "the service refused our client",
    "!yours": "a hostname belongs to another account",
    "!active": "a hostname is not active",
}
FIXES = {
    "badauth": "check username and password",
    "nohost": "check hostnames",
    "notfqdn": "check hostnames",
    "!yours": "check hostnames and username",
    "abuse": "unblock the hostname on the provider's site",
    "!active": "activate the hostname on the provider's site",
}
DEFAULT_WAIT_911 = 1800.0


@dataclass(frozen=True)
class Settings(Common):
    server: str
    hostnames: tuple[str, ...]
    username: str
    password: Secret
    wait_911: float


def from_table(t: Table) -> Settings:
    preset_name = t.string("preset", None, choices=PRESETS)
    preset = PRESETS.get(preset_name or "", {})
    keepalive = float(preset.get("keepalive", 0.0))  # type: ignore[arg-type]
    common = read_common(t, ipv4=True, ipv6=False, keepalive=keepalive)
    if "server" in preset and t.has("server"):
        raise t.error("server", f"conflicts with preset = {preset_name!r}", "keep only one")
    if "server" in preset:
        server = str(preset["server"])
    else:
        server = t.url("server", insecure_http=common["insecure_http"])
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
    )


def judge(
    status: int,
    body: str,
    hostnames: list[str],
    wait_911: float,
    retry_after: str | None = None,
    location: str | None = None,
) -> str:
    """The meaning of one answer for `hostnames`; pure, so it is tested on plain strings.

    Some services send their refusal codes with a 4xx status (No-IP: 401 `badauth`), so the
    body's code words the message whatever the status."""
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    codes = [line.split()[0] for line in lines]
    known = next((c for c in codes if c in FATAL), "badauth" if status == 401 else None)
    refused = f"{known}: {FATAL[known]} (HTTP {status})" if known else None
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
        if code in ("911", "dnserr"):
            raise TransientError(f"{code}: the service has a problem", min_wait=wait_911)
    if len(codes) == 1 and len(hostnames) > 1 and codes[0] in ("good", "nochg"):
        codes = codes * len(hostnames)  # some services answer once for the whole batch
    if len(codes) != len(hostnames) or any(c not in ("good", "nochg") for c in codes):
        shown = " | ".join(lines)[:120]
        raise TransientError(f"unexpected answer {shown!r}")
    return ", ".join(f"{h}: {c}" for h, c in zip(hostnames, codes, strict=True))


class Client:
    TYPE = TYPE
    BIND_FAMILY = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _batches(self) -> list[list[str]]:
        names = list(self.settings.hostnames)
        return [
            names[i : i + MAX_HOSTS_PER_REQUEST]
            for i in range(0, len(names), MAX_HOSTS_PER_REQUEST)
        ]

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        hosts = ",".join(s.hostnames)
        joint = "&" if "?" in s.server else "?"
        return f"GET {s.server}{joint}hostname={hosts}&myip={address} as {s.username}"

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        """One request per batch of 20 hostnames; batches go out concurrently, at most
        `PARALLEL_REQUESTS` at a time, so a long host list is quick without flooding the service.
        A fatal answer for any batch wins over passing trouble in another."""
        import asyncio  # not at the top: reading the settings (status, check-config) needs none

        s = self.settings
        password = s.password.reveal()
        register_basic_auth(s.username, password)
        # httpx replaces the URL's own query with `params`, so keep it explicitly.
        fixed = dict(parse_qsl(urlsplit(s.server).query, keep_blank_values=True))
        gate = asyncio.Semaphore(PARALLEL_REQUESTS)

        async def send(batch: list[str]) -> str:
            params = {**fixed, "hostname": ",".join(batch), "myip": str(address)}
            async with gate:
                try:
                    answer = await http.fetch(
                        client, "GET", s.server, params=params, auth=(s.username, password)
                    )
                except HTTPFailure as exc:
                    raise TransientError(str(exc)) from None
            return judge(
                answer.status,
                answer.body,
                batch,
                s.wait_911,
                answer.headers.get("retry-after"),
                answer.headers.get("location"),
            )

        outcomes = await asyncio.gather(*(send(b) for b in self._batches()), return_exceptions=True)
        for kind in (FatalAnswer, TransientError, BaseException):
            for outcome in outcomes:
                if isinstance(outcome, kind):
                    raise outcome
        return "; ".join(str(o) for o in outcomes)


_: type[Provider] = Client
