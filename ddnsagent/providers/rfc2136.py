"""RFC 2136 dynamic update of a public authoritative server (your own BIND or Knot primary,
or a hoster that accepts TSIG-signed updates).

Each update replaces that family's records of every hostname in one signed UPDATE message, over
TCP. The server's refusals (REFUSED, NOTAUTH, NOTZONE, a key it does not know or a signature it
cannot check) need the user and stop the target; no answer, SERVFAIL or a clock complaint are
retried. The protocol is the DNS client's, shared with the `rfc2136` zone backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import dns.exception
import dns.name

from ddnsagent import dnsclient
from ddnsagent.address import IPAddress
from ddnsagent.errors import FatalAnswer, TransientError, UpdateFailure
from ddnsagent.providers.base import Common, Provider, read_common
from ddnsagent.secrets import Secret
from ddnsagent.table import Table

if TYPE_CHECKING:  # httpx (~50 ms) loads only when a request is made; see ddnsagent.http
    import httpx

TYPE = "rfc2136"
KEYS = (
    "server, zone, names|hostnames, ttl, tsig_key_file | tsig_name + tsig_algorithm + "
    "tsig_secret|tsig_secret_file|tsig_secret_env, timeout"
)


@dataclass(frozen=True)
class Settings(Common):
    server: tuple[str, int]
    zone: str  # absolute
    hostnames: tuple[str, ...]  # absolute
    ttl: int
    tsig_name: str | None
    tsig_algorithm: str | None
    tsig_secret: Secret | None
    tsig_key_file: str | None
    timeout: float


def from_table(t: Table) -> Settings:
    common = read_common(t, ipv4=True, ipv6=False)
    if not t.has("zone"):
        raise t.error("zone", "is required", 'write the zone the names live in, e.g. "example.net"')
    zone = dnsclient.read_zone_name(t, "")
    zone_name = dns.name.from_text(zone)
    if t.has("names") == t.has("hostnames"):
        raise t.error(
            "names",
            "give either names (relative to the zone) or hostnames (full names), not both"
            if t.has("names")
            else "is required",
            'e.g. names = ["@", "home"] or hostnames = ["home.example.net"]',
        )
    key = "names" if t.has("names") else "hostnames"
    hostnames = []
    for text in t.str_list(key):
        try:
            name = dns.name.from_text(text, zone_name if key == "names" else dns.name.root)
        except dns.exception.DNSException:
            raise t.error(key, f"{text!r} is not a domain name") from None
        if not name.is_subdomain(zone_name):
            raise t.error(key, f"{name} is not inside the zone {zone}")
        hostnames.append(name.to_text().lower())
    if not hostnames:
        raise t.error(key, "is empty", "name at least one host")
    return Settings(
        **common,
        server=dnsclient.read_server(t, "server", 53),
        zone=zone,
        hostnames=tuple(dict.fromkeys(hostnames)),
        ttl=t.integer("ttl", 300, minimum=0),
        **dnsclient.read_tsig(t),
        timeout=t.duration("timeout", 10.0),
    )


class Client:
    TYPE = TYPE
    BIND_FAMILY = False  # the address travels inside the message

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, family: int, address: IPAddress) -> str:
        s = self.settings
        rrtype = dnsclient.RRTYPE[family]
        signed = f"signed with {s.tsig_name or s.tsig_key_file}" if s.tsig_secret else "unsigned"
        return (
            f"UPDATE zone {s.zone} at {dnsclient.show_server(s.server)} ({signed}): "
            f"{', '.join(s.hostnames)} {rrtype} {address}"
        )

    async def update(self, family: int, address: IPAddress, client: httpx.AsyncClient) -> str:
        import asyncio  # not at the top: reading the settings (status, check-config) needs none

        return await asyncio.to_thread(self._send, family, address)

    def _send(self, family: int, address: IPAddress) -> str:
        s = self.settings
        key = dnsclient.tsig_key(s)  # SecretUnavailable goes to the agent as it is
        records = {h: {family: [address]} for h in s.hostnames}
        try:
            dnsclient.send_update(s.server, s.zone, records, s.ttl, key, s.timeout)
        except UpdateFailure as exc:
            if exc.fatal:
                raise FatalAnswer(str(exc), exc.fix) from None
            raise TransientError(f"{exc} ({exc.fix})") from None
        rrtype = dnsclient.RRTYPE[family]
        return f"{', '.join(s.hostnames)} {rrtype} set to {address}"


_: type[Provider] = Client
