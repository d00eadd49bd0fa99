"""`dns:opendns`, `dns:cloudflare`, `dns:NAME@SERVER[:PORT]`: resolvers that echo our address.

The query goes to a server of the family being detected, so the answer is the address that
family leaves with. It is asked through the one DNS client (UDP, TCP when truncated).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ddnsagent.address import IPAddress, parse_single, split_host_port
from ddnsagent.errors import DetectError


@dataclass(frozen=True)
class DnsEcho:
    qname: str
    rdtype: str  # "A", "AAAA" or "TXT"
    rdclass: str  # "IN" or "CH"
    server: str
    port: int = 53


_PRESETS = {
    ("opendns", 4): DnsEcho("myip.opendns.com", "A", "IN", "208.67.222.222"),
    ("opendns", 6): DnsEcho("myip.opendns.com", "AAAA", "IN", "2620:119:35::35"),
    ("cloudflare", 4): DnsEcho("whoami.cloudflare", "TXT", "CH", "1.1.1.1"),
    ("cloudflare", 6): DnsEcho("whoami.cloudflare", "TXT", "CH", "2606:4700:4700::1111"),
}


def parse_dns_source(arg: str, family: int) -> DnsEcho:
    """`opendns`, `cloudflare` or `NAME@SERVER[:PORT]` (IPv6 server in brackets)."""
    if (arg, family) in _PRESETS:
        return _PRESETS[(arg, family)]
    name, at, where = arg.partition("@")
    if not at or not name:
        raise ValueError(
            f"dns:{arg} is unknown; valid: dns:opendns, dns:cloudflare, dns:NAME@SERVER[:PORT]"
        )
    try:
        host, port = split_host_port(where, default_port=53)
    except ValueError as exc:
        raise ValueError(f"dns:{arg}: {exc}") from None
    server = ipaddress.ip_address(host)
    if server.version != family:
        raise ValueError(
            f"dns:{arg}: the server must be an IPv{family} address, because the answer "
            "is the address the query leaves with"
        )
    return DnsEcho(name, "A" if family == 4 else "AAAA", "IN", str(server), port)


async def lookup(arg: str, family: int, timeout: float) -> IPAddress:
    # dnspython's query modules cost ~50 ms of start-up, which the configuration (it imports
    # this module's parser) and runs without a dns: source must not pay.
    import dns.exception
    import dns.rcode
    import dns.rdatatype

    from ddnsagent import dnsclient  # lazy: dnspython costs ~50 ms; only dns: sources need it

    echo = parse_dns_source(arg, family)
    try:
        reply = await dnsclient.query_async(
            echo.server, echo.port, echo.qname, echo.rdtype, timeout, echo.rdclass
        )
    except dns.exception.Timeout:
        raise DetectError(f"no answer from {echo.server} within {timeout:g}s") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise DetectError(f"query to {echo.server} failed: {exc}") from None
    if reply.rcode() != dns.rcode.NOERROR:
        raise DetectError(f"{echo.server} answered {dns.rcode.to_text(reply.rcode())}")
    values = [
        rd.to_text().strip('"')
        for rrset in reply.answer
        for rd in rrset
        if rrset.rdtype == dns.rdatatype.from_text(echo.rdtype)
    ]
    if len(values) != 1:
        raise DetectError(f"{echo.server} answered {len(values)} records instead of one")
    try:
        return parse_single(values[0], family)
    except ValueError as exc:
        raise DetectError(f"{echo.server} answered {exc}") from None
