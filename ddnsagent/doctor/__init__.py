"""`ddnsagent doctor`: read-only checks of what keeps a home mail server out of trouble.

The checks follow the chain of the outage this project was born from. A dynamic-DNS service
answered every name under the domain (a wildcard), so mail for `anything@sub.example.net` found
our MX and came in; Postfix bounced it, and the bounces spent the relay's per-address quota until
the relay refused us. The way out: a local DNS server that knows only the names that exist (MX
at the apex alone), `nameserver 127.0.0.1` so that Postfix asks it, and Postfix refusing
recipients and senders whose domain does not exist (`reject_unknown_recipient_domain`,
`reject_unknown_sender_domain`).

So the doctor asks, without changing anything:

1. `resolv.conf`: does the system (and Postfix's chroot copy) ask a resolver on this machine?
2. `wildcard`: does a random name under each managed domain get NXDOMAIN — from the local zone
   server, from the resolver Postfix uses, and from public resolvers (when reachable)?
3. `mx`: is there an MX at the apex, and none at the random name or at other managed names?
4. `postfix`: are the three restrictions in place (`postconf`)?
5. `relay`: does the submission relay accept a TCP connection and greet?

Each finding is pass, warn, fail or skip, with the fix. The exit code is 0 when nothing warns
or fails, else 1. Every server asked and every file read is a field of `Options`, so tests point
them all at things they started.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")
PUBLIC_RESOLVERS = ("1.1.1.1", "8.8.8.8")
PROBE_PREFIX = "ddnsagent-probe-"
# systemd-resolved's stub (127.0.0.53) and its proxy (127.0.0.54) forward to the upstream
# servers resolved was given; they know a local zone only if resolved is told to route it.
RESOLVED_STUBS = ("127.0.0.53", "127.0.0.54")
MAX_NAMESERVERS = 3  # glibc's MAXNS: later lines are ignored

RECIPIENT = "smtpd_recipient_restrictions"
RELAY = "smtpd_relay_restrictions"
SENDER = "smtpd_sender_restrictions"


@dataclass(frozen=True)
class Options:
    """Where the doctor looks. The defaults are the real machine's; tests replace them all."""

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
    probe_label: str = field(default_factory=lambda: PROBE_PREFIX + secrets.token_hex(5))


@dataclass(frozen=True)
class Finding:
    check: str  # "resolv.conf", "wildcard", "mx", "postfix" or "relay"
    status: Status
    subject: str  # what was looked at: a file, "example.net. at 127.0.0.1", a parameter
    message: str
    fix: str | None = None


def main(cfg: Any, as_json: bool, out: TextIO, options: Options | None = None) -> int:
    """Run every check, print the findings, return 0 (all pass or skip) or 1."""
    findings = run(cfg, options or Options())
    if as_json:
        out.write(json.dumps(as_dict(findings), indent=2) + "\n")
    else:
        print_findings(findings, out)
    return exit_code(findings)


def run(cfg: Any, options: Options) -> list[Finding]:
    findings = check_resolv_conf(options.resolv_conf, options.postfix_resolv_conf)
    findings += check_domains(cfg, options)
    findings += check_postfix(options.postconf, options.command_timeout, cfg.relay is not None)
    findings += check_relay(cfg, options)
    return findings


def exit_code(findings: Sequence[Finding]) -> int:
    return 1 if any(f.status in ("warn", "fail") for f in findings) else 0


def as_dict(findings: Sequence[Finding]) -> dict[str, Any]:
    counts = {s: sum(1 for f in findings if f.status == s) for s in STATUSES}
    return {
        "ok": exit_code(findings) == 0,
        "counts": counts,
        "checks": [asdict(f) for f in findings],
    }


MARK = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def print_findings(findings: Sequence[Finding], out: TextIO) -> None:
    for f in findings:
        out.write(f"{MARK[f.status]}  {f.check} {f.subject}: {f.message}\n")
        if f.fix and f.status != "pass":
            out.write(f"      fix: {f.fix}\n")
    counts = as_dict(findings)["counts"]
    out.write(", ".join(f"{counts[s]} {s}" for s in STATUSES) + "\n")


# 1. resolv.conf ---------------------------------------------------------------------------


def nameservers(text: str) -> list[str]:
    """The `nameserver` addresses glibc uses, in order (zone ids stripped)."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            found.append(words[1].split("%", 1)[0])
    return found[:MAX_NAMESERVERS]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


_RESOLV_FIX = (
    "write `nameserver 127.0.0.1` as the only nameserver line of {path}, and keep DHCP/PPP "
    "from rewriting it (pppd: no `usepeerdns`; NetworkManager: dns=none; or make the file "
    "immutable)"
)


def check_resolv_conf(path: Path, chroot_copy: Path | None = None) -> list[Finding]:
    """Postfix sees what the resolver in resolv.conf answers: it must be ours."""
    fix = _RESOLV_FIX.format(path=path)
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
    findings = [_judge_nameservers(str(path), servers, fix)]
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


def _judge_nameservers(subject: str, servers: list[str], fix: str) -> Finding:
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
    if not _is_loopback(first):
        return Finding(
            "resolv.conf",
            "fail",
            subject,
            f"nameserver {first} is not on this machine: Postfix sees the public answers, "
            "where every subdomain of a dynamic-DNS domain may look mail-capable",
            fix,
        )
    remote = [s for s in rest if not _is_loopback(s)]
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


# 2 and 3. the domains -----------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    role: str  # "zone server", "resolver" or "public resolver"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 53 else f"{host}:{self.port}"


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """`1.1.1.1`, `127.0.0.1:5353`, `::1`, `[::1]:5353`; the host must be an IP address."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{text!r}: expected [ADDRESS]:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"{text!r}: {p!r} is not a port")
        port = int(p)
    ipaddress.ip_address(host)  # ValueError names the text
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return host, port


@dataclass(frozen=True)
class Answer:
    rcode: str  # "NOERROR", "NXDOMAIN", "REFUSED", …; "" when nothing came back
    records: tuple[str, ...] = ()  # "A 192.0.2.1", "MX 10 mail.example.net."
    error: str | None = None  # why nothing came back

    @property
    def exists(self) -> bool:
        return self.rcode == "NOERROR"

    def shown(self) -> str:
        return "; ".join(self.records)


class Asker:
    """Sends single DNS questions; a server that once did not answer is not asked again."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.silent: dict[tuple[str, int], str] = {}

    def ask(self, server: Server, name: str, rdtype: str) -> Answer:
        key = (server.host, server.port)
        if key in self.silent:
            return Answer("", error=self.silent[key])
        query = dns.message.make_query(name, rdtype)
        try:
            reply = dns.query.udp(query, server.host, self.timeout, server.port)
            if reply.flags & dns.flags.TC:
                reply = dns.query.tcp(query, server.host, self.timeout, server.port)
        except dns.exception.Timeout:
            self.silent[key] = f"no answer within {self.timeout:g}s"
            return Answer("", error=self.silent[key])
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            self.silent[key] = f"no answer: {exc or 'not an address to ask'}"
            return Answer("", error=self.silent[key])
        records = []
        for rrset in reply.answer:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            records += [f"{kind} {rdata.to_text()}" for rdata in rrset]
        return Answer(dns.rcode.to_text(reply.rcode()), tuple(sorted(records)))


@dataclass
class Domain:
    origin: str  # absolute, lower case
    names: list[str] = field(default_factory=list)  # managed names besides the apex, relative
    zone_servers: list[Server] = field(default_factory=list)


def managed_domains(cfg: Any, extra: Sequence[str]) -> list[Domain]:
    """The [[zone]] origins with their names and `verify` servers, then `extra` domains."""
    domains: dict[str, Domain] = {}
    for zone in getattr(cfg, "zones", ()):
        d = domains.setdefault(zone.origin.lower(), Domain(zone.origin.lower()))
        relative = [n for n in zone.names if n != "@"] + [h for h, _ in zone.hosts]
        d.names += [n for n in relative if n not in d.names]
        if zone.verify is not None:
            server = Server(zone.verify[0], zone.verify[1], "zone server")
            if server not in d.zone_servers:
                d.zone_servers.append(server)
    for name in extra:
        origin = name.strip().rstrip(".").lower() + "."
        domains.setdefault(origin, Domain(origin))
    return list(domains.values())


def _resolver(options: Options) -> Server | Finding:
    """The resolver Postfix asks: `options.resolver`, else resolv.conf's first nameserver."""
    if options.resolver is not None:
        host, port = parse_server(options.resolver)
        return Server(host, port, "resolver")
    try:
        found = nameservers(options.resolv_conf.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        found = []
    except OSError as exc:
        return Finding(
            "wildcard", "skip", "resolver", f"{options.resolv_conf}: cannot read: {exc.strerror}"
        )
    return Server(found[0] if found else "127.0.0.1", 53, "resolver")


def check_domains(cfg: Any, options: Options) -> list[Finding]:
    domains = managed_domains(cfg, options.domains)
    if not domains:
        return [
            Finding(
                "wildcard",
                "warn",
                "domains",
                "no managed domain to check",
                "add a [[zone]] whose origin is your mail domain (its local zone is what "
                "Postfix should see)",
            )
        ]
    asker = Asker(options.dns_timeout)
    findings: list[Finding] = []
    try:
        resolver = _resolver(options)
    except ValueError as exc:
        resolver = Finding("wildcard", "fail", "resolver", str(exc), "write ADDRESS[:PORT]")
    if isinstance(resolver, Finding):
        findings.append(resolver)
    public = []
    for text in options.public_resolvers:
        try:
            host, port = parse_server(text)
        except ValueError as exc:
            findings.append(
                Finding("wildcard", "fail", "public resolver", str(exc), "write ADDRESS[:PORT]")
            )
            continue
        public.append(Server(host, port, "public resolver"))
    for domain in domains:
        local = list(domain.zone_servers)
        if isinstance(resolver, Server) and all(
            (s.host, s.port) != (resolver.host, resolver.port) for s in local
        ):
            local.append(resolver)
        findings += check_domain(domain, local, public, asker, options.probe_label)
    return findings


def check_domain(
    domain: Domain,
    local: Sequence[Server],
    public: Sequence[Server],
    asker: Asker,
    label: str,
) -> list[Finding]:
    """Wildcard probes at every server, then the MX layout as Postfix's resolver sees it (or
    the zone server, when the resolver gives no usable answer)."""
    probe = f"{label}.{domain.origin}"
    findings = []
    clean_zone = False
    usable = []
    for server in local:
        answer = asker.ask(server, probe, "A")
        finding = _judge_probe(domain, server, probe, answer, clean_zone)
        clean_zone = clean_zone or (server.role == "zone server" and finding.status == "pass")
        findings.append(finding)
        if answer.rcode in ("NOERROR", "NXDOMAIN"):
            usable.append(server)
    for server in public:
        findings.append(_judge_probe(domain, server, probe, asker.ask(server, probe, "A"), False))
    view = usable[-1] if usable else None
    if view is None:
        findings.append(
            Finding(
                "mx",
                "skip",
                domain.origin,
                "no local server gave a usable answer; MX records not checked",
            )
        )
        return findings
    findings += check_mx(domain, view, probe, asker)
    return findings


_WILDCARD_FIX = (
    "remove the wildcard (`*` records) from the zone for {origin} and publish MX only at the "
    "apex, so that mail for names that do not exist is refused instead of bounced"
)


def _judge_probe(
    domain: Domain, server: Server, probe: str, answer: Answer, clean_zone: bool
) -> Finding:
    subject = f"{domain.origin} at {server.role} {server}"
    if answer.error is not None:
        if server.role == "public resolver":
            return Finding("wildcard", "skip", subject, f"not reachable ({answer.error})")
        return Finding(
            "wildcard",
            "fail",
            subject,
            answer.error,
            "start the local DNS server and make it answer for this domain",
        )
    if answer.rcode == "NXDOMAIN":
        return Finding("wildcard", "pass", subject, f"{probe} does not exist (NXDOMAIN)")
    if not answer.exists:
        if server.role == "public resolver":
            return Finding(
                "wildcard", "skip", subject, f"answered {answer.rcode} for {probe}; no verdict"
            )
        return Finding(
            "wildcard",
            "warn",
            subject,
            f"answered {answer.rcode} for {probe}; Postfix's lookups there fail temporarily",
            "make it serve the local zone",
        )
    shown = answer.shown() if answer.records else "no A record: a wildcard of another type"
    what = (
        f"{probe} exists ({shown}): a wildcard makes every name under "
        f"{domain.origin} resolve, so mail for any of them looks deliverable"
    )
    if server.role == "public resolver":
        return Finding(
            "wildcard",
            "warn",
            subject,
            what + " to the world",
            "remove the wildcard at your DNS provider if it lets you; otherwise make sure "
            "Postfix asks a local zone without it (the local checks above) and keeps "
            "reject_unknown_recipient_domain, so such mail is refused, not bounced",
        )
    fix = _WILDCARD_FIX.format(origin=domain.origin)
    if server.role == "resolver" and clean_zone:
        fix = (
            f"the resolver {server} does not use your local zone for {domain.origin} (it "
            "forwards and sees the public wildcard): make it serve or forward that zone to the "
            "local zone server, e.g. BIND `zone` statement, unbound `stub-zone`, dnsmasq "
            "`server=/domain/127.0.0.1#port`"
        )
    return Finding("wildcard", "fail", subject, what, fix)


def check_mx(domain: Domain, server: Server, probe: str, asker: Asker) -> list[Finding]:
    """MX at the apex: pass. MX at the random probe (a wildcard MX): fail. MX at any other
    managed name: warn, since each one is a domain that accepts mail."""
    where = f"(asked {server.role} {server})"
    findings = []
    apex = asker.ask(server, domain.origin, "MX")
    mx_at_apex = [r for r in apex.records if r.startswith("MX ")]
    if mx_at_apex:
        findings.append(
            Finding("mx", "pass", domain.origin, f"{'; '.join(mx_at_apex)} at the apex {where}")
        )
    elif apex.error is None:
        findings.append(
            Finding(
                "mx",
                "warn",
                domain.origin,
                f"no MX at the apex {where}, answer {apex.rcode}: mail for the domain falls "
                "back to its address record",
                f"publish `{domain.origin} IN MX 10 mail.{domain.origin}` if this domain "
                "receives mail",
            )
        )
    wild = asker.ask(server, probe, "MX")
    wild_mx = [r for r in wild.records if r.startswith("MX ")]
    if wild_mx:
        findings.append(
            Finding(
                "mx",
                "fail",
                f"*.{domain.origin}",
                f"{probe} has {'; '.join(wild_mx)} {where}: a wildcard MX makes every "
                "subdomain accept mail",
                _WILDCARD_FIX.format(origin=domain.origin),
            )
        )
        return findings  # the managed names would only repeat the wildcard
    for name in domain.names:
        fqdn = f"{name}.{domain.origin}"
        answer = asker.ask(server, fqdn, "MX")
        found = [r for r in answer.records if r.startswith("MX ")]
        if found:
            findings.append(
                Finding(
                    "mx",
                    "warn",
                    fqdn,
                    f"has {'; '.join(found)} {where}: mail for @{fqdn.rstrip('.')} is accepted too",
                    f"remove the MX at {fqdn} unless that name really receives mail",
                )
            )
    return findings


# 4. Postfix ---------------------------------------------------------------------------------


def restrictions(value: str) -> list[str]:
    """`permit_mynetworks, reject_unauth_destination` → its words (commas or blanks)."""
    return [w for w in re.split(r"[\s,]+", value) if w]


def check_postfix(postconf: Sequence[str], timeout: float, mail_server: bool) -> list[Finding]:
    """The three restrictions that refuse mail for and from domains that do not exist, and
    relaying for strangers. `mail_server`: a [relay] is configured, so Postfix should be here."""
    params = (RECIPIENT, RELAY, SENDER)
    argv = [*postconf, "-x", "-h", *params]
    subject = "main.cf"
    missing: Status = "warn" if mail_server else "skip"
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return [
            Finding(
                "postfix",
                missing,
                subject,
                f"{argv[0]} not found; Postfix is not installed here",
                "install Postfix (Debian: apt-get install postfix) or run the doctor on the "
                "mail server",
            )
        ]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding("postfix", "warn", subject, f"{' '.join(argv)}: {exc}")]
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != len(params):
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return [Finding("postfix", "warn", subject, f"{' '.join(argv)}: {detail[0]}")]
    return judge_restrictions(dict(zip(params, lines, strict=True)))


def judge_restrictions(values: dict[str, str]) -> list[Finding]:
    """Pure: the findings for the (expanded) values of the three parameters."""
    words = {p: restrictions(values.get(p, "")) for p in (RECIPIENT, RELAY, SENDER)}
    anti_relay = "reject_unauth_destination"
    relay_ok = any(anti_relay in words[p] for p in (RELAY, RECIPIENT))
    defer_only = not relay_ok and any(
        "defer_unauth_destination" in words[p] for p in (RELAY, RECIPIENT)
    )
    recipient_ok = any("reject_unknown_recipient_domain" in words[p] for p in (RELAY, RECIPIENT))
    sender_ok = any("reject_unknown_sender_domain" in words[p] for p in words)

    proposed = {p: list(w) for p, w in words.items()}
    if not relay_ok:
        target = RELAY if words[RELAY] else RECIPIENT
        _add(proposed[target], anti_relay, replacing="defer_unauth_destination")
    if not recipient_ok:
        _add(proposed[RECIPIENT], "reject_unknown_recipient_domain", after=anti_relay)
    if not sender_ok:
        _add(proposed[SENDER], "reject_unknown_sender_domain")

    def line(param: str) -> str:
        return (
            f"put `{param} = {', '.join(proposed[param])}` in main.cf (replacing any "
            f"{param} line there), then run `postfix reload`"
        )

    findings = []
    if relay_ok:
        findings.append(
            Finding("postfix", "pass", anti_relay, "mail is relayed only for your clients")
        )
    else:
        target = RELAY if words[RELAY] else RECIPIENT
        message = (
            "only defer_unauth_destination guards relaying: strangers are told to try again "
            "later instead of being refused"
            if defer_only
            else f"neither {RELAY} nor {RECIPIENT} has it: the server may relay for anyone"
        )
        findings.append(
            Finding("postfix", "warn" if defer_only else "fail", anti_relay, message, line(target))
        )
    if recipient_ok:
        findings.append(
            Finding(
                "postfix",
                "pass",
                "reject_unknown_recipient_domain",
                "mail for domains that do not resolve is refused",
            )
        )
    else:
        findings.append(
            Finding(
                "postfix",
                "fail",
                "reject_unknown_recipient_domain",
                f"not in {RECIPIENT}: mail for subdomains that do not exist is accepted and "
                "later bounced (backscatter that uses up the relay's quota)",
                line(RECIPIENT),
            )
        )
    if sender_ok:
        findings.append(
            Finding(
                "postfix",
                "pass",
                "reject_unknown_sender_domain",
                "mail from domains that do not resolve is refused",
            )
        )
    else:
        findings.append(
            Finding(
                "postfix",
                "fail",
                "reject_unknown_sender_domain",
                f"not in {SENDER}: mail from made-up sender domains is accepted, and its "
                "bounces go nowhere or to innocent parties",
                line(SENDER),
            )
        )
    return findings


def _add(words: list[str], word: str, after: str | None = None, replacing: str = "") -> None:
    """Put `word` into a restriction list where it takes effect: in place of `replacing`, else
    right after `after`, else before a final catch-all `permit`, else at the end."""
    if replacing in words:
        words[words.index(replacing)] = word
    elif after in words:
        words.insert(words.index(after) + 1, word)
    elif words and words[-1] == "permit":
        words.insert(len(words) - 1, word)
    else:
        words.append(word)


# 5. the relay -------------------------------------------------------------------------------


def relay_address(host: str, port: int | None) -> tuple[str, int]:
    """Postfix's `[host]:port`, `host:port` or `host`; `port` overrides what is written."""
    written = 587
    text = host.strip()
    if text.startswith("["):
        text, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            written = int(rest[1:])
    elif text.count(":") == 1:
        name, _, p = text.partition(":")
        if p.isdigit():
            text, written = name, int(p)
    return text, port if port is not None else written


def check_relay(cfg: Any, options: Options) -> list[Finding]:
    relay = getattr(cfg, "relay", None)
    written = options.relay_host or (relay.host if relay is not None else None)
    if written is None:
        return [Finding("relay", "skip", "relay", "no [relay] section; nothing to connect to")]
    host, port = relay_address(written, options.relay_port)
    return [probe_relay(host, port, options.connect_timeout)]


def probe_relay(host: str, port: int, timeout: float) -> Finding:
    """Connect, read the greeting, say QUIT. Sends no mail and no credentials."""
    subject = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        return Finding(
            "relay",
            "fail",
            subject,
            f"cannot resolve {host}: {exc.strerror}",
            "the local resolver must also answer for outside names (recursion or forwarders)",
        )
    except TimeoutError:
        return Finding(
            "relay",
            "fail",
            subject,
            f"connection timed out after {timeout:g}s; a relay that refuses an address often "
            "just stops answering it",
            "if the mail log shows `too much mail from <your address>`, stop the bounces (the "
            "checks above), then get a new address (`ddnsagent reconnect`)",
        )
    except OSError as exc:
        return Finding(
            "relay",
            "fail",
            subject,
            f"cannot connect: {exc.strerror or exc}",
            "check [relay] host and the port (submission is 587)",
        )
    with sock:
        try:
            greeting = sock.recv(512).decode("ascii", "replace").splitlines()
        except TimeoutError:
            greeting = None
        except OSError as exc:
            return Finding("relay", "warn", subject, f"connected, then: {exc.strerror or exc}")
        first = greeting[0].strip() if greeting else ""
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
    if greeting is None:
        return Finding("relay", "warn", subject, f"connected, but no greeting within {timeout:g}s")
    if first.startswith("220"):
        return Finding("relay", "pass", subject, f"answers: {first}")
    return Finding(
        "relay",
        "fail",
        subject,
        f"connected, but it greets with {first or 'nothing'!r}",
        "if it names your address or too much mail, stop the bounces and get a new address "
        "(`ddnsagent reconnect`)",
    )
