"""What every local-zone backend shares: the names it manages, the records they should hold for
a given WAN address, and the one call the agent makes (`apply`).

A backend keeps a DNS server on this machine (or the LAN) in step with the WAN address, so that
the server's own view of itself never goes stale. Backends differ only in how records reach the
server: a zone file edited in place, RFC 2136 updates, unbound-control, a dnsmasq hosts file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Protocol

from ddnsagent.address import IPAddress
from ddnsagent.table import Table

DEFAULT_TIMEOUT = 30.0  # seconds; the issue asks for no default above 30 s


@dataclass(frozen=True)
class ZoneCommon:
    """Keys every [[zone]] has."""

    name: str
    type: str
    origin: str  # absolute, with the trailing dot
    names: tuple[str, ...]  # relative to origin ("@" is the apex); follow the WAN address
    hosts: tuple[tuple[str, ipaddress.IPv6Address], ...]  # LAN hosts: name → interface id
    prefix_length: int
    ttl: int
    verify: tuple[str, int] | None  # server to ask after applying
    # The hard limit of one apply, from the zone's `timeout` key: past it the agent abandons the
    # apply with an error (sync.Apart). The zonefile and rfc2136 backends read the same key as
    # the limit of each command / query they run. Keyword-only with a default, so that it never
    # collides with a backend's own positional fields.
    time_limit: float = field(default=DEFAULT_TIMEOUT, kw_only=True)

    def fqdn(self, name: str) -> str:
        return self.origin if name == "@" else f"{name}.{self.origin}"


def read_common(t: Table) -> dict[str, Any]:
    name = t.string("name")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise t.error("name", f"found {name!r}", "use letters, digits, '-', '_' or '.'")
    origin = t.string("origin").strip()
    if not origin or " " in origin:
        raise t.error("origin", f"found {origin!r}", 'write the zone\'s name, e.g. "example.net"')
    origin = origin.rstrip(".").lower() + "."
    names = t.str_list("names", ["@"])
    for n in names:
        if not n or n.endswith(".") or " " in n:
            raise t.error(
                "names", f"{n!r} is not a name relative to the origin", 'e.g. "@" or "mail"'
            )
    hosts_table = t.raw("hosts", {})
    if not isinstance(hosts_table, dict):
        raise t.error("hosts", 'must be a table such as { nas = "::11:22ff:fe33:4455" }')
    hosts = []
    for host, iid in hosts_table.items():
        try:
            hosts.append((host, ipaddress.IPv6Address(iid)))
        except (ValueError, TypeError):
            raise t.error(
                f"hosts.{host}",
                f"found {iid!r}",
                'write an interface id, e.g. "::11:22ff:fe33:4455"',
            ) from None
    verify = None
    if t.has("verify"):
        # lazy: dnsclient loads dnspython's query modules (~70 ms); code that only needs
        # `desired` or the protocol imports this module without them.
        from ddnsagent.dnsclient import read_server

        verify = read_server(t, "verify", 53)
    time_limit = t.duration("timeout", DEFAULT_TIMEOUT)
    if time_limit <= 0:
        raise t.error(
            "timeout", f"found {time_limit:g}s, must be more than 0", 'e.g. timeout = "30s"'
        )
    return {
        "name": name,
        "type": t.string("type"),
        "origin": origin,
        "names": tuple(names),
        "hosts": tuple(hosts),
        "prefix_length": t.integer("prefix_length", 64, minimum=1),
        "ttl": t.integer("ttl", 300, minimum=0),
        "verify": verify,
        "time_limit": time_limit,
    }


@dataclass
class Desired:
    """The A/AAAA sets the managed names should hold; a family absent from `families` is left
    as it is (its address is unknown this time)."""

    families: set[int] = field(default_factory=set)
    records: dict[str, dict[int, list[IPAddress]]] = field(default_factory=dict)  # rel. name →


def desired(settings: ZoneCommon, addresses: dict[int, IPAddress]) -> Desired:
    """The WAN address for `names`; for `hosts`, the WAN IPv6 prefix joined with each host's
    interface id, so a new prefix renumbers the LAN hosts' AAAA records too."""
    out = Desired(families=set(addresses))
    for n in settings.names:
        out.records[n] = {f: [a] for f, a in addresses.items()}
    six = addresses.get(6)
    if six is not None and settings.hosts:
        net = ipaddress.IPv6Network((int(six), settings.prefix_length), strict=False)
        host_mask = (1 << (128 - settings.prefix_length)) - 1
        for host, iid in settings.hosts:
            address = ipaddress.IPv6Address(int(net.network_address) | (int(iid) & host_mask))
            out.records.setdefault(host, {})[6] = [address]
    return out


def absolute_records(settings: ZoneCommon, want: Desired) -> dict[str, dict[int, list[IPAddress]]]:
    """`want` with absolute owners, keeping only the families whose address is known."""
    out: dict[str, dict[int, list[IPAddress]]] = {}
    for name, families in want.records.items():
        kept = {f: list(a) for f, a in families.items() if f in want.families}
        if kept:
            out[settings.fqdn(name)] = kept
    return out


class ZoneBackend(Protocol):
    """The seam between the agent and a backend. Each backend module checks its `Backend`
    against it (`_: type[ZoneBackend] = Backend`), so mypy verifies every one."""

    def describe(self, want: Desired) -> str:
        """What `apply` would do, in one line (for a dry run)."""
        ...

    async def apply(self, want: Desired) -> str:
        """Make the server hold `want`; return a one-line account, or raise ZoneApplyError."""
        ...
