"""`interface:NAME`: the address the kernel has on the WAN interface (ppp0 on PPPoE)."""

from __future__ import annotations

from ddnsagent.address import IPAddress, refusal
from ddnsagent.detect import netlink
from ddnsagent.errors import DetectError


def lookup(ifname: str, family: int, accept: str) -> IPAddress:
    try:
        addrs = netlink.list_addresses(ifname, 4 if family == 4 else 6)
    except LookupError:
        raise DetectError(f"no interface named {ifname}") from None
    except OSError as exc:
        raise DetectError(f"cannot read addresses: {exc}") from None
    pick = netlink.pick_ipv4 if family == 4 else netlink.pick_ipv6
    candidates = [a for a in addrs if refusal(a.address, accept) is None]
    chosen = pick(candidates)
    if chosen is not None:
        return chosen
    if not addrs:
        raise DetectError(f"{ifname} has no IPv{family} address")
    shown = ", ".join(f"{a.address} ({refusal(a.address, accept) or 'not usable'})" for a in addrs)
    raise DetectError(f"{ifname} has no publishable IPv{family} address: {shown}")
