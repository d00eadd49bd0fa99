"""Check 3, `mx`: an MX at the apex, and none at the random probe name or at the other managed
names — each name with an MX is a domain that accepts mail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ddnsagent.doctor.finding import Finding
from ddnsagent.doctor.servers import Answer, Asker, Server
from ddnsagent.doctor.wildcard import WILDCARD_FIX


def check_mx(
    origin: str, names: Sequence[str], server: Server, probe: str, asker: Asker
) -> list[Finding]:
    """Ask `server` for the MX at the apex, at `probe`, and (unless the probe has one) at each
    managed name, relative to `origin`."""
    apex = asker.ask(server, origin, "MX")
    wild = asker.ask(server, probe, "MX")
    at_names: dict[str, Answer] = {}
    if not _mx(wild):  # else the managed names would only repeat the wildcard
        for name in names:
            fqdn = f"{name}.{origin}"
            at_names[fqdn] = asker.ask(server, fqdn, "MX")
    return judge_mx(origin, f"(asked {server.role} {server})", probe, apex, wild, at_names)


def _mx(answer: Answer) -> list[str]:
    return [r for r in answer.records if r.startswith("MX ")]


def judge_mx(
    origin: str,
    where: str,
    probe: str,
    apex: Answer,
    wild: Answer,
    at_names: Mapping[str, Answer],
) -> list[Finding]:
    """Pure. MX at the apex: pass. MX at the random probe (a wildcard MX): fail. MX at any
    other managed name: warn."""
    findings = []
    mx_at_apex = _mx(apex)
    if mx_at_apex:
        findings.append(
            Finding("mx", "pass", origin, f"{'; '.join(mx_at_apex)} at the apex {where}")
        )
    elif apex.error is None:
        findings.append(
            Finding(
                "mx",
                "warn",
                origin,
                f"no MX at the apex {where}, answer {apex.rcode}: mail for the domain falls "
                "back to its address record",
                f"publish `{origin} IN MX 10 mail.{origin}` if this domain receives mail",
            )
        )
    wild_mx = _mx(wild)
    if wild_mx:
        findings.append(
            Finding(
                "mx",
                "fail",
                f"*.{origin}",
                f"{probe} has {'; '.join(wild_mx)} {where}: a wildcard MX makes every "
                "subdomain accept mail",
                WILDCARD_FIX.format(origin=origin),
            )
        )
        return findings
    for fqdn, answer in at_names.items():
        found = _mx(answer)
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
