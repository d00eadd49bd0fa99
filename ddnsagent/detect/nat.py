"""Double NAT and CGNAT: what an interface source and a remote echo say together (pure).

A configured `interface:` source names the interface the user believes faces the Internet. When
it holds a private (RFC 1918), shared (100.64.0.0/10, RFC 6598: the ISP's carrier-grade NAT) or
otherwise non-public address while an echo sees a public one — or the echo sees an address that
no interface of this machine holds — there is a NAT between this machine and the Internet that
the user did not plan for: mail from outside cannot reach the server.

The judgement needs an interface source: behind an ordinary home router (a private LAN address,
an echo-only configuration) the router's NAT is expected and the echo's answer is the right one
to publish, so nothing is said. An echo answer held by *any* local interface means no NAT on the
way out (a second uplink, IPv6 with the global address on the LAN side) and is fine too.

This module only judges and words; `finder.crosscheck` gathers the answers, `sync.py` decides
when to ask and keeps the episode in the state, `status` and `doctor` show it. It imports
nothing that loads slowly, since `status` renders the state with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ddnsagent.address import IPAddress

# How the comparison came out. "agree": no NAT seen; the others are a NAT episode.
AGREE = "agree"
CGNAT = "cgnat"  # the interface holds an address of 100.64.0.0/10 (RFC 6598)
PRIVATE = "private"  # RFC 1918 / ULA (RFC 4193) or another non-public address
ELSEWHERE = "elsewhere"  # the interface holds a public address; the echo sees another one
NAT_KINDS = (CGNAT, PRIVATE, ELSEWHERE)

# RFC 6598 §7: 100.64.0.0/10, "Shared Address Space" for carrier-grade NAT.
SHARED = ipaddress.ip_network("100.64.0.0/10")
# RFC 1918 §3 and RFC 4193 (unique local IPv6).
RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
ULA = ipaddress.ip_network("fc00::/7")

DAY = 24 * 3600.0  # an interface that answered alone is compared with the echoes this often
RETRY = 3600.0  # after a comparison that could not be made (the echoes did not answer)


@dataclass(frozen=True)
class Verdict:
    """One comparison: the interface, its own addresses, and what the echo saw."""

    kind: str  # AGREE or one of NAT_KINDS
    interface: str
    local: tuple[str, ...]  # the interface's addresses (link-local and loopback left out)
    echo: str

    @property
    def nat(self) -> bool:
        return self.kind in NAT_KINDS


class Episode(Protocol):
    """What the state keeps of the last comparison (store.NatCheck has these fields): when it
    was last tried, when it last came to a verdict, and that verdict ("unknown": none yet)."""

    @property
    def tried(self) -> float: ...

    @property
    def checked(self) -> float | None: ...

    @property
    def result(self) -> str: ...

    @property
    def interface(self) -> str | None: ...

    @property
    def local(self) -> str | None: ...

    @property
    def echo(self) -> str | None: ...

    @property
    def since(self) -> float | None: ...


def usable(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    """The addresses that can stand for the interface: no link-local, loopback, multicast."""
    return [
        a
        for a in addresses
        if not (a.is_link_local or a.is_loopback or a.is_multicast or a.is_unspecified)
    ]


def kind_of(address: IPAddress) -> str:
    """Which kind of NAT an interface holding `address` (and not the echo's) sits behind."""
    if address in SHARED:
        return CGNAT
    if any(address in n for n in RFC1918) or address in ULA or not _public_like(address):
        return PRIVATE
    return ELSEWHERE


def _public_like(address: IPAddress) -> bool:
    """Global, or in a documentation range (which the tests' networks use as the Internet)."""
    if address.is_global:
        return True
    docs = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
    return any(address in ipaddress.ip_network(n) for n in docs)


def judge(
    interface: str,
    on_interface: Iterable[IPAddress],
    everywhere: Iterable[IPAddress],
    echo: IPAddress,
) -> Verdict | None:
    """The verdict for `interface` (its addresses `on_interface`; `everywhere`: every address
    of this machine) and what the echo saw; None when the interface holds no address to
    compare (missing, down, only link-local): no NAT can be told from that."""
    own = usable(a for a in on_interface if a.version == echo.version)
    if not own:
        return None
    shown = tuple(str(a) for a in own)
    held = set(everywhere) | set(own)
    if echo in held:
        return Verdict(AGREE, interface, shown, str(echo))
    # The most telling address decides the kind: a CGNAT one over a private one over a public.
    kinds = [kind_of(a) for a in own]
    kind = next(k for k in (CGNAT, PRIVATE, ELSEWHERE) if k in kinds)
    return Verdict(kind, interface, shown, str(echo))


def due(
    sources: Iterable[Any],
    detected_by: str | None,
    address: str | None,
    last: Episode | None,
    changed: bool,
    now: float,
) -> str | None:
    """Whether to compare now, and how: "free" when the echoes already answered this sync
    (the interface source was passed over), "ask" when the interface answered alone and the
    echoes must be asked — only after an address change (`changed`, or `address` is not the
    one last compared), on the first run, or once a day (`RETRY` after a failed try) — and
    None when not (no interface source, no echo source, or not due). `sources` are the
    family's `detect.settings.Source`s; `detected_by` and `address` what this sync found."""
    sources = list(sources)
    if not any(s.kind == "interface" for s in sources) or detected_by is None:
        return None
    if detected_by.startswith(("web:", "dns:")):
        return "free"
    if not detected_by.startswith("interface:") or not any(s.remote for s in sources):
        return None  # a command: source answered, or there is no echo to ask
    if changed or last is None:
        return "ask"
    if last.checked is not None and address not in (last.local or "").split(","):
        return "ask"  # e.g. the interface answers alone now where it was passed over
    if last.checked is not None and now - last.checked < DAY:
        return None
    return "ask" if now - last.tried >= RETRY else None


def words(kind: str, interface: str, local: str, echo: str) -> tuple[str, str]:
    """The message and the fix for a NAT episode, as the log, `status` and `doctor` say it."""
    if kind == CGNAT:
        return (
            f"{interface} holds {local}, an address of the ISP's carrier-grade NAT "
            f"(100.64.0.0/10), while the Internet sees {echo}: this server is behind the ISP's "
            "NAT, shared with other customers, and mail from outside cannot reach it",
            "ask the ISP for a public address (a fixed or 'global IP' option, or a plan "
            "without CGNAT), or receive mail over IPv6; a router in front of this one in "
            "bridge mode does not help against CGNAT",
        )
    if kind == PRIVATE:
        return (
            f"{interface} holds {local}, a private address, while the Internet sees {echo}: "
            f"there is another NAT between {interface} and the Internet (a router in front "
            "of this one, or the ISP's NAT), and mail from outside cannot reach this server "
            "unless that NAT forwards port 25 here",
            "put the router in front into bridge mode (or let this machine dial PPPoE "
            "itself) so that it gets the public address; else forward port 25 on that "
            "router, or, if it is the ISP's NAT, ask the ISP for a public address or use IPv6",
        )
    return (
        f"the Internet sees {echo}, which no interface of this machine holds, while "
        f"{interface} holds {local}: connections leave through another NAT, a VPN or a proxy, "
        f"so mail goes out from {echo} and mail from outside may not reach {local}",
        f"find what translates the traffic (routes: `ip route get 1.1.1.1`; a VPN; the "
        f"ISP's NAT); if {interface} is not the way to the Internet, name the right "
        "interface in [detect]",
    )


def status_json(kept: Mapping[int, Episode]) -> dict[str, Any]:
    """`status --json`'s `nat` object: the last comparison per family, with the words."""
    out: dict[str, Any] = {}
    for family, e in sorted(kept.items()):
        message = fix = None
        if e.result in NAT_KINDS:
            message, fix = words(e.result, e.interface or "?", e.local or "?", e.echo or "?")
        out[f"ipv{family}"] = {
            "result": e.result,
            "interface": e.interface,
            "local": e.local.split(",") if e.local else [],
            "echo": e.echo,
            "since": e.since,
            "checked": e.checked,
            "tried": e.tried,
            "message": message,
            "fix": fix,
        }
    return out


def status_lines(kept: Mapping[int, Episode], when: Any) -> list[str]:
    """`status`'s lines: only a NAT episode is shown (agreement says nothing)."""
    lines = []
    for family, e in sorted(kept.items()):
        if e.result not in NAT_KINDS:
            continue
        message, fix = words(e.result, e.interface or "?", e.local or "?", e.echo or "?")
        lines.append(f"ipv{family} BEHIND ANOTHER NAT since {when(e.since)}: {message}")
        lines.append(f"  fix: {fix}")
    return lines
