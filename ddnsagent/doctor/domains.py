"""Checks 2 and 3 for every managed domain: which domains and which servers (the zone server
of each [[zone]], the resolver Postfix asks, the public resolvers), then the wildcard probe at
each server and the MX layout as Postfix's resolver sees it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ddnsagent.config import Config
from ddnsagent.doctor.finding import Finding
from ddnsagent.doctor.mx import check_mx
from ddnsagent.doctor.options import Options
from ddnsagent.doctor.resolvconf import nameservers
from ddnsagent.doctor.servers import Asker, Server, parse_server
from ddnsagent.doctor.wildcard import judge_probe


@dataclass
class Domain:
    origin: str  # absolute, lower case
    names: list[str] = field(default_factory=list)  # managed names besides the apex, relative
    zone_servers: list[Server] = field(default_factory=list)


def managed_domains(cfg: Config, extra: Sequence[str]) -> list[Domain]:
    """The [[zone]] origins with their names and `verify` servers, then `extra` domains."""
    domains: dict[str, Domain] = {}
    for zone in cfg.zones:
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


def check_domains(cfg: Config, options: Options) -> list[Finding]:
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
        finding = judge_probe(domain.origin, server, probe, answer, clean_zone)
        clean_zone = clean_zone or (server.role == "zone server" and finding.status == "pass")
        findings.append(finding)
        if answer.rcode in ("NOERROR", "NXDOMAIN"):
            usable.append(server)
    for server in public:
        answer = asker.ask(server, probe, "A")
        findings.append(judge_probe(domain.origin, server, probe, answer, False))
    if not usable:
        findings.append(
            Finding(
                "mx",
                "skip",
                domain.origin,
                "no local server gave a usable answer; MX records not checked",
            )
        )
        return findings
    return findings + check_mx(domain.origin, domain.names, usable[-1], probe, asker)
