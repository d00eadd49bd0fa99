"""Local zone kept by RFC 2136 dynamic updates (BIND with update-policy, Knot with an update
ACL), signed with TSIG.

The server owns the zone file and its journal; we only send one UPDATE message that replaces the
managed A/AAAA sets, so nothing on disk is ours to get wrong. The protocol (TSIG keys, the
update, asking the server back) is the DNS client's, shared with the `rfc2136` provider.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from ddnsagent import dnsclient
from ddnsagent.dnsclient import show_records, show_server
from ddnsagent.errors import SecretUnavailable, UpdateFailure, ZoneApplyError
from ddnsagent.secrets import Secret
from ddnsagent.table import Table
from ddnsagent.zones.base import Desired, ZoneBackend, ZoneCommon, absolute_records, read_common

TYPE = "rfc2136"
KEYS = (
    "server, zone, tsig_key_file | tsig_name + tsig_algorithm + "
    "tsig_secret|tsig_secret_file|tsig_secret_env, timeout"
)


@dataclass(frozen=True)
class Settings(ZoneCommon):
    server: tuple[str, int]
    zone: str  # absolute, with the trailing dot
    tsig_name: str | None
    tsig_algorithm: str | None
    tsig_secret: Secret | None
    tsig_key_file: str | None
    timeout: float


def from_table(t: Table) -> Settings:
    common = read_common(t)
    zone = dnsclient.read_zone_name(t, common["origin"])
    if not dns.name.from_text(common["origin"]).is_subdomain(dns.name.from_text(zone)):
        raise t.error("zone", f"{zone} does not contain origin {common['origin']}")
    server = dnsclient.read_server(t, "server", 53)
    return Settings(
        **common,
        server=server,
        zone=zone,
        **dnsclient.read_tsig(t),
        timeout=t.duration("timeout", 10.0),
    )


class Backend:
    """Asks the server first and sends nothing when it already answers what we want (so the
    journal and the serial do not grow at every sync); after an update, verifies at `verify`,
    or at the server itself."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, want: Desired) -> str:
        s = self.settings
        signed = (
            f"signed with key {s.tsig_name or s.tsig_key_file}" if s.tsig_secret else "unsigned"
        )
        records = show_records(absolute_records(s, want))
        return f"UPDATE zone {s.zone} at {show_server(s.server)} ({signed}): replace {records}"

    async def apply(self, want: Desired) -> str:
        import asyncio  # not at the top: check-config and status read only the settings

        return await asyncio.to_thread(self.apply_now, want)

    def apply_now(self, want: Desired) -> str:
        s = self.settings
        records = absolute_records(s, want)
        if not records:
            return "nothing to do: no managed name has a known address"
        try:
            key = dnsclient.tsig_key(s)
        except SecretUnavailable as exc:
            raise ZoneApplyError(str(exc)) from None
        check_at = s.verify or s.server
        try:
            unchanged = not dnsclient.differences(s.server, records, min(s.timeout, 2.0), ttl=s.ttl)
        except ZoneApplyError:
            unchanged = False  # the update's own answer says more
        if unchanged:
            if s.verify and s.verify != s.server:
                dnsclient.verify(s.verify, records, timeout=min(s.timeout, 2.0))
            return f"already up to date at {show_server(s.server)}"
        try:
            dnsclient.send_update(s.server, s.zone, records, s.ttl, key, s.timeout)
        except UpdateFailure as exc:
            raise ZoneApplyError(f"{exc}; fix: {exc.fix}") from None
        dnsclient.verify(check_at, records, timeout=min(s.timeout, 2.0))
        shown = show_records(records)
        return f"updated {shown} at {show_server(s.server)}; verified at {show_server(check_at)}"


_: type[ZoneBackend] = Backend  # mypy checks the class against the protocol
