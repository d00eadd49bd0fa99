"""What counts as a publishable WAN address, and parsing answers that claim to be one."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def family_of(address: IPAddress) -> int:
    return address.version


def refusal(address: IPAddress, accept: str) -> str | None:
    """Why `address` must not be published under policy `accept`, or None when it may be.

    "any" still refuses what can never be a host's own address (multicast, unspecified,
    broadcast); "global" also refuses private, CGNAT, loopback, link-local, documentation
    and other reserved ranges — publishing one of those breaks the user's names.
    """
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
        "255.255.255.255"
    ):
        return "the broadcast address"
    if accept == "any":
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10): the ISP's NAT is in the way"
    if address.is_private:
        return "a private or reserved address (documentation, RFC 1918, ULA, …)"
    if not address.is_global:
        return "not a global address"
    return None


def parse_single(text: str, family: int) -> IPAddress:
    """Exactly one address of `family` in `text` (surrounding whitespace allowed).

    Raises ValueError with a short description of what was there instead, so detection can
    say which source lied and how.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("an empty answer")
    tokens = stripped.split()
    if len(tokens) > 1:
        shown = " ".join(tokens[:3])[:80]
        raise ValueError(f"{len(tokens)} words instead of one address ({shown!r}…)")
    token = tokens[0]
    try:
        address = ipaddress.ip_address(token)
    except ValueError:
        raise ValueError(f"not an address: {token[:60]!r}") from None
    if address.version != family:
        raise ValueError(f"an IPv{address.version} address ({address}) where IPv{family} was asked")
    return address
