"""What counts as a publishable WAN address, and parsing answers that claim to be one."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


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


LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def is_loopback_host(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, insecure_http: bool, error: Any) -> None:
    """HTTPS always, plain HTTP only towards loopback or when the user opted in."""
    parts = urlsplit(url)
    if parts.username or parts.password or "@" in parts.netloc:
        # Checked first, and the URL is not quoted: what it carries is a secret.
        raise error("must not carry credentials in the URL", "use the password/token keys")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = "a value with '@' in it" if "@" in url else repr(url)  # may hold a password
        raise error(f"found {shown}, expected an http(s) URL")
    if parts.scheme == "http" and not insecure_http and not is_loopback_host(parts.hostname):
        raise error(
            f"{url!r} is plain HTTP to a remote host",
            "use https://, or set insecure_http = true if you really mean it",
        )


def split_host_port(
    text: str, default_port: int | None = None, names: tuple[str, ...] = ()
) -> tuple[str, int]:
    """`ADDRESS`, `ADDRESS:PORT`, `[IPV6]`, `[IPV6]:PORT`; the host must be an IP address
    literal or one of `names` (e.g. "localhost"). Without `default_port` the port is required.
    Raises ValueError saying what is wrong with `text`."""
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [ADDRESS]:PORT")
        if ipaddress_or_none(host) is None or ipaddress.ip_address(host).version != 6:
            raise ValueError(f"{text!r}: only IPv6 addresses are written in brackets")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
        if ":" in text and ipaddress_or_none(text) is not None and default_port is None:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9787")
    if host not in names and ipaddress_or_none(host) is None:
        allowed = " or ".join(("an IP address", *names))
        raise ValueError(f"{text!r}: the host must be {allowed}")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r} is not HOST:PORT")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def ipaddress_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
