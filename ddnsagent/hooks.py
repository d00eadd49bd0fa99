"""What the system tells a hook script about the address it just got.

Each caller has its own spelling:
- pppd runs /etc/ppp/ip-up with IFNAME and IPLOCAL in the environment; Debian's ip-up wrapper
  hands the scripts in ip-up.d PPP_IFACE and PPP_LOCAL (and the same as positional arguments:
  interface, tty, speed, local address, remote address, ipparam);
- NetworkManager's dispatcher passes the interface and the action as arguments, and the
  addresses as IP4_ADDRESS_N / IP6_ADDRESS_N ("address/prefix gateway");
- networkd-dispatcher passes IFACE, STATE and IP_ADDRS / IP6_ADDRS (space-separated).
Pure: takes the environment and arguments, returns what they say.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ddnsagent.address import IPAddress

# NetworkManager actions after which the interface has (new) addresses.
NM_UP_ACTIONS = {"up", "dhcp4-change", "dhcp6-change", "reapply", "connectivity-change"}


@dataclass
class HookEvent:
    interface: str | None
    addresses: list[IPAddress] = field(default_factory=list)
    caller: str = "unknown"
    relevant: bool = True  # False: an event that does not bring an address (NM "down", …)


def _parse(text: str) -> IPAddress | None:
    head = text.strip().split()[0] if text.strip() else ""
    try:
        return ipaddress.ip_interface(head).ip
    except ValueError:
        return None


def from_environment(env: Mapping[str, str], args: Sequence[str]) -> HookEvent:
    if "PPP_IFACE" in env or "PPP_LOCAL" in env or "IPLOCAL" in env:
        iface = env.get("PPP_IFACE") or env.get("IFNAME")
        local = env.get("PPP_LOCAL") or env.get("IPLOCAL") or (args[3] if len(args) > 3 else "")
        found = [a for a in [_parse(local)] if a is not None]
        return HookEvent(iface, found, "pppd")
    if any(k.startswith(("IP4_ADDRESS_", "IP6_ADDRESS_")) for k in env) or "DEVICE_IP_IFACE" in env:
        iface = args[0] if args else env.get("DEVICE_IP_IFACE")
        action = args[1] if len(args) > 1 else env.get("NM_DISPATCHER_ACTION", "up")
        found = []
        for prefix in ("IP4_ADDRESS_", "IP6_ADDRESS_"):
            keys = sorted((k for k in env if k.startswith(prefix)), key=_index)
            found += [a for k in keys if (a := _parse(env[k])) is not None]
        return HookEvent(iface, found, "NetworkManager", action in NM_UP_ACTIONS)
    if "IFACE" in env and ("IP_ADDRS" in env or "IP6_ADDRS" in env or "STATE" in env):
        found = []
        for key in ("IP_ADDRS", "IP6_ADDRS"):
            found += [a for t in env.get(key, "").split() if (a := _parse(t)) is not None]
        state = env.get("STATE", "routable")
        return HookEvent(env["IFACE"], found, "networkd-dispatcher", state in ("routable", ""))
    return HookEvent(None, [], "unknown")


def _index(key: str) -> int:
    tail = key.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0
