"""Check 1, `resolv.conf`: does the system (and Postfix's chroot copy) ask a resolver on this
machine? Postfix sees whatever that resolver answers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ddnsagent.address import ipaddress_or_none
from ddnsagent.doctor.finding import Finding
from ddnsagent.resolvconf import RESOLVED_STUBS
from ddnsagent.resolvconf import nameservers as resolv_nameservers

_FIX = (
    "write `nameserver 127.0.0.1` as the only nameserver line of {path}, and keep DHCP/PPP "
    "from rewriting it (pppd: no `usepeerdns`; NetworkManager: dns=none; or make the file "
    "immutable)"
)


def nameservers(text: str) -> list[str]:
    """The first three `nameserver` entries, names kept: the check shows a name (which glibc
    ignores) as a resolver not on this machine."""
    return resolv_nameservers(text, literals_only=False)


def _on_this_machine(server: str) -> bool:
    """A loopback IP literal; glibc takes nothing else from a nameserver line, so a name such
    as `localhost` does not count."""
    address = ipaddress_or_none(server)
    return address is not None and address.is_loopback


def check_resolv_conf(path: Path, chroot_copy: Path | None = None) -> list[Finding]:
    """Postfix sees what the resolver in resolv.conf answers: it must be ours."""
    fix = _FIX.format(path=path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [
            Finding(
                "resolv.conf",
                "warn",
                str(path),
                "does not exist; the C library then asks 127.0.0.1, but programs that read "
                "the file themselves find nothing",
                fix,
            )
        ]
    except OSError as exc:
        return [Finding("resolv.conf", "fail", str(path), f"cannot read: {exc.strerror}", fix)]
    servers = nameservers(text)
    findings = [judge_nameservers(str(path), servers, fix)]
    if chroot_copy is not None and chroot_copy.exists():
        try:
            copy = nameservers(chroot_copy.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            copy = [f"<unreadable: {exc.strerror}>"]
        if copy != servers:
            findings.append(
                Finding(
                    "resolv.conf",
                    "warn",
                    str(chroot_copy),
                    f"Postfix's chroot copy names {_list(copy)} but {path} names "
                    f"{_list(servers)}; chrooted smtpd asks the old servers",
                    f"restart Postfix (`systemctl restart postfix` copies {path} there)",
                )
            )
    return findings


def _list(servers: Sequence[str]) -> str:
    return ", ".join(servers) if servers else "no nameserver"


def judge_nameservers(subject: str, servers: Sequence[str], fix: str) -> Finding:
    """Pure: the finding for the nameservers a file names, in glibc's order."""
    if not servers:
        return Finding(
            "resolv.conf",
            "warn",
            subject,
            "names no nameserver; the C library falls back to 127.0.0.1",
            "write `nameserver 127.0.0.1` explicitly",
        )
    first, rest = servers[0], servers[1:]
    if first in RESOLVED_STUBS:
        return Finding(
            "resolv.conf",
            "warn",
            subject,
            f"nameserver {first} is systemd-resolved's stub: it forwards every question to "
            "its upstream servers, and sees your local zone only if resolved is told to route "
            "that domain to your DNS server",
            f"{fix}; or, in /etc/systemd/resolved.conf, set `DNS=127.0.0.1` and "
            "`Domains=~your.domain` and restart systemd-resolved",
        )
    if not _on_this_machine(first):
        return Finding(
            "resolv.conf",
            "fail",
            subject,
            f"nameserver {first} is not on this machine: Postfix sees the public answers, "
            "where every subdomain of a dynamic-DNS domain may look mail-capable",
            fix,
        )
    remote = [s for s in rest if not _on_this_machine(s)]
    if remote:
        return Finding(
            "resolv.conf",
            "warn",
            subject,
            f"nameserver {first} is local, but {_list(remote)} follows: whenever the local "
            "server fails or is slow, lookups go there and see the public answers",
            f"remove the other nameserver lines from {subject}",
        )
    return Finding("resolv.conf", "pass", subject, f"nameserver {first} is on this machine")
