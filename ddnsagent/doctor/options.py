"""Where the doctor looks: every file it reads and every server it asks, in one value."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

PUBLIC_RESOLVERS = ("1.1.1.1", "8.8.8.8")
PROBE_PREFIX = "ddnsagent-probe-"


@dataclass(frozen=True)
class Options:
    """The defaults are the real machine's; tests replace them all."""

    resolv_conf: Path = Path("/etc/resolv.conf")
    # Debian's Postfix runs smtpd chrooted with a copy of resolv.conf, refreshed on restart.
    postfix_resolv_conf: Path | None = Path("/var/spool/postfix/etc/resolv.conf")
    # "HOST[:PORT]" of the resolver Postfix asks; None: the first nameserver of resolv_conf.
    resolver: str | None = None
    public_resolvers: tuple[str, ...] = PUBLIC_RESOLVERS  # () skips the public view
    domains: tuple[str, ...] = ()  # checked besides the [[zone]] origins
    postconf: tuple[str, ...] = ("postconf",)  # e.g. ("postconf", "-c", "/etc/postfix-out")
    relay_host: str | None = None  # None: [relay] host
    relay_port: int | None = None  # None: the port written in the host, else 587
    dns_timeout: float = 2.0
    connect_timeout: float = 5.0
    command_timeout: float = 10.0
    # Echo URLs the `nat` check asks; None: [detect]'s web/dns: sources, else the built-in ones.
    echoes: tuple[str, ...] | None = None
    probe_label: str = field(default_factory=lambda: PROBE_PREFIX + secrets.token_hex(5))
