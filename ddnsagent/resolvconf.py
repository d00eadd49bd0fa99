"""resolv.conf as the C library reads it: the resolvers its `nameserver` lines name.

One parser for everyone who asks "which resolver does this machine use": the DNSBL questions
(`dnsclient.system_nameservers`), check-config's pre-flight and the doctor. Pure and free of
DNS code, so check-config may import it and stay lean.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

RESOLV_CONF = Path("/etc/resolv.conf")
MAX_NAMESERVERS = 3  # glibc's MAXNS (resolv.h): later nameserver lines are ignored
# systemd-resolved's stub listeners (resolved.conf(5), DNSStubListener=; 127.0.0.54 the proxy):
# they forward every question to the upstream servers resolved was given.
RESOLVED_STUBS = ("127.0.0.53", "127.0.0.54")


def nameservers(text: str, *, literals_only: bool = True) -> list[str]:
    """The `nameserver` addresses in `text`, in order, zone ids stripped, the first three.

    glibc takes IP literals only; with `literals_only=False` a line naming anything else (such
    as `localhost`) is kept and counts towards the three, for a check that shows the mistake."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        host = words[1].split("%", 1)[0]
        if literals_only:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
        found.append(host)
    return found[:MAX_NAMESERVERS]
