"""The pre-flight of the sections that watch this server from outside: `[heartbeat]` (a
monitoring service pinged after each sync) and `[dnsbl]` (our address against blocklists).

Like the rest of the pre-flight: no network, no DNS or HTTP code (the heartbeat's settings and
the blocklists' table are pure), findings only. The heartbeat's URL is a secret: it is read to
tell its preset, registered with the log mask by `heartbeat_settings.resolve`, and never put
into a finding — a heartbeat is named by its preset and host.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from ddnsagent.dnsbl.lists import RESOLVER_FIX
from ddnsagent.durations import format_duration
from ddnsagent.outputs.heartbeat_settings import describe, resolve
from ddnsagent.preflight.checks import Context, Finding, secret_findings, who, why_unreadable
from ddnsagent.resolvconf import RESOLV_CONF, RESOLVED_STUBS, nameservers

HEARTBEAT = "[heartbeat]"
DNSBL = "[dnsbl]"
_RESOLV_PEEK = 65536  # bytes of resolv.conf read; glibc reads only the first three nameservers

# Large public resolvers, whose questions Spamhaus's free servers refuse (127.255.255.254,
# https://www.spamhaus.org/news/article/788/; README "DNSBL check"). The addresses from each
# operator's own page:
# - Google Public DNS, https://developers.google.com/speed/public-dns/docs/using
# - Cloudflare 1.1.1.1 and 1.1.1.1 for Families, https://developers.cloudflare.com/1.1.1.1/ip-addresses/
# - Quad9 (secure, unsecured, with ECS), https://www.quad9.net/service/service-addresses-and-features
# - OpenDNS (Cisco Umbrella), https://www.opendns.com/setupguide/ (208.67.222.222, 208.67.220.220;
#   IPv6 2620:119:35::35, 2620:119:53::53)
# Pi-hole's list of upstream choices (its dns-servers.conf) names the same addresses.
_PUBLIC = {
    "Google Public DNS": (
        "8.8.8.8",
        "8.8.4.4",
        "2001:4860:4860::8888",
        "2001:4860:4860::8844",
    ),
    "Cloudflare's 1.1.1.1": (
        "1.1.1.1",
        "1.0.0.1",
        "1.1.1.2",
        "1.0.0.2",
        "1.1.1.3",
        "1.0.0.3",
        "2606:4700:4700::1111",
        "2606:4700:4700::1001",
        "2606:4700:4700::1112",
        "2606:4700:4700::1002",
        "2606:4700:4700::1113",
        "2606:4700:4700::1003",
    ),
    "Quad9": (
        "9.9.9.9",
        "149.112.112.112",
        "149.112.112.9",
        "9.9.9.10",
        "149.112.112.10",
        "9.9.9.11",
        "149.112.112.11",
        "2620:fe::fe",
        "2620:fe::9",
        "2620:fe::10",
        "2620:fe::fe:10",
        "2620:fe::11",
        "2620:fe::fe:11",
    ),
    "OpenDNS": ("208.67.222.222", "208.67.220.220", "2620:119:35::35", "2620:119:53::53"),
}
PUBLIC_RESOLVERS = {
    ipaddress.ip_address(address): operator
    for operator, addresses in _PUBLIC.items()
    for address in addresses
}


def check(cfg: Any, ctx: Context) -> list[Finding]:
    """The findings of [heartbeat] and [dnsbl], in that order."""
    return heartbeat(cfg, ctx) + dnsbl(cfg, ctx)


# -- [heartbeat] -------------------------------------------------------------------------------


def heartbeat(cfg: Any, ctx: Context) -> list[Finding]:
    hb = cfg.heartbeat
    if hb is None:
        return [Finding("ok", HEARTBEAT, "not configured: no monitoring service is pinged")]
    preset = hb.preset or "read from the URL"
    out = [
        Finding(
            "ok",
            HEARTBEAT,
            f"preset {preset}, timeout {format_duration(hb.timeout)}; the URL is a secret "
            "and is not shown",
        )
    ]
    found = secret_findings(hb.url, HEARTBEAT, ctx)
    out += found
    if any(f.status == "fail" for f in found):
        return out
    origin: str = hb.url.origin
    if origin.startswith("credential ") and ctx.unit is not None:
        if ctx.heartbeat is not None:  # root read the file LoadCredential= names
            out.append(ctx.heartbeat)
        return out
    if any(f.status != "ok" for f in found):  # a cred: by hand, a variable not set here
        if hb.preset is None:
            out.append(
                Finding(
                    "note",
                    HEARTBEAT,
                    "the preset is read from the URL when the daemon starts; not checked here",
                    'name it (preset = "healthchecks", "uptime-kuma" or "plain"), or check as '
                    "the service: sudo ddnsagent check-config --as-service",
                )
            )
        return out
    out.append(url_finding(hb.url.reveal(), hb, origin))
    return out


def url_finding(url: str, hb: Any, origin: str) -> Finding:
    """What the daemon will make of the URL: its preset and host, or why it refuses it (the
    words of `heartbeat_settings.resolve`, which never quote the URL)."""
    try:
        preset = resolve(url, hb.preset, hb.insecure_http)
    except ValueError as exc:
        problem, _, fix = str(exc).partition("\n")
        if not problem.startswith("the preset"):
            problem = f"the URL {problem}"
        return Finding(
            "fail",
            HEARTBEAT,
            f"url (from {origin}): {problem}; the daemon would run without a heartbeat",
            fix or "give the ping URL as the monitoring service shows it",
        )
    told = "" if hb.preset else " (preset read from the URL)"
    return Finding("ok", HEARTBEAT, f"pings {describe(url, preset)}{told}")


def credential_url_finding(source: Path, hb: Any) -> Finding | None:
    """For root before dropping: the preset of the URL in the file LoadCredential= hands over
    (None when the file cannot be read; its problem is reported with the credential)."""
    try:
        with open(source, encoding="utf-8", errors="replace") as f:
            url = f.read(4096).strip()
    except OSError:
        return None
    if not url:
        return None
    return url_finding(url, hb, f"file {source}, through LoadCredential=")


# -- [dnsbl] -----------------------------------------------------------------------------------


def dnsbl(cfg: Any, ctx: Context) -> list[Finding]:
    d = cfg.dnsbl
    if d is None:
        return [Finding("ok", DNSBL, "not configured: new addresses are not checked")]
    if not d.enabled:
        return [Finding("ok", DNSBL, "enabled = false: no blocklist is asked")]
    zones = ", ".join(b.zone for b in d.lists)
    if d.resolver is None:
        through = f"the system's resolvers ({RESOLV_CONF})"
    else:
        host, port = d.resolver
        through = f"the resolver {host} port {port}"
    act = "reconnect" if d.reconnect else "warn only"
    out = [
        Finding(
            "ok",
            DNSBL,
            f"asks {zones} through {through} (timeout {format_duration(d.timeout)}); "
            f"on a listing: {act}",
        )
    ]
    if d.resolver is None:
        out += _system_resolvers(ctx)
    else:
        out += _public(d.resolver[0], f'resolver = "{d.resolver[0]}"')
    if d.reconnect and cfg.reconnect is None:
        out.append(
            Finding(
                "fail",
                DNSBL,
                "reconnect = true, but there is no [reconnect] section: a listing could never "
                "bring a new address",
                'add [reconnect] (README, "Reconnecting the link"), or set reconnect = false',
            )
        )
    return out


def _system_resolvers(ctx: Context) -> list[Finding]:
    why = why_unreadable(RESOLV_CONF, ctx)
    text = ""
    if why is None:
        try:
            with open(RESOLV_CONF, "rb") as f:
                text = f.read(_RESOLV_PEEK).decode("utf-8", "replace")
        except OSError as exc:
            why = f"cannot be read: {exc.strerror}"
    if why is not None:
        return [
            Finding(
                "fail",
                DNSBL,
                f'resolver = "system": {RESOLV_CONF} {why} for {who(ctx)}, so the questions '
                "would go to 127.0.0.1 (the C library's fallback)",
                f"make {RESOLV_CONF} readable (mode 0644), or set [dnsbl] resolver to the "
                'address of a resolver of your own, e.g. resolver = "127.0.0.1"',
            )
        ]
    servers = nameservers(text)
    if not servers:
        return [
            Finding(
                "warn",
                DNSBL,
                f'resolver = "system": {RESOLV_CONF} names no nameserver (as an IP address), '
                "so the questions go to 127.0.0.1 (the C library's fallback)",
                f"add a nameserver line to {RESOLV_CONF}, or set [dnsbl] resolver to the "
                'address of a resolver that runs, e.g. resolver = "127.0.0.1"',
            )
        ]
    out: list[Finding] = []
    for server in servers:
        where = f"{RESOLV_CONF}'s nameserver {server}"
        out += _public(server, where)
        if server in RESOLVED_STUBS:
            out.append(
                Finding(
                    "note",
                    DNSBL,
                    f"{where} is systemd-resolved's stub: the lists see the upstream servers "
                    "resolved forwards to, not this machine",
                    "check with `resolvectl status` that they are not large public resolvers, "
                    'or set [dnsbl] resolver to a resolver of your own, e.g. "127.0.0.1"',
                )
            )
    return out


def _public(address: str, where: str) -> list[Finding]:
    try:
        operator = PUBLIC_RESOLVERS.get(ipaddress.ip_address(address))
    except ValueError:
        return []
    if operator is None:
        return []
    return [
        Finding(
            "warn",
            DNSBL,
            f"{where} is {operator}, a large public resolver: Spamhaus refuses questions that "
            "come through one (it answers 127.255.255.254, 'refused', never 'not listed'), and "
            "other lists may too",
            RESOLVER_FIX,
        )
    ]
