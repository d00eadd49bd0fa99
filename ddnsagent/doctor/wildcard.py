"""Check 2, `wildcard`: does a random name under a managed domain get NXDOMAIN? A wildcard
makes every name under the domain resolve, so mail for any of them looks deliverable."""

from __future__ import annotations

from ddnsagent.doctor.finding import Finding
from ddnsagent.doctor.servers import Answer, Server

WILDCARD_FIX = (
    "remove the wildcard (`*` records) from the zone for {origin} and publish MX only at the "
    "apex, so that mail for names that do not exist is refused instead of bounced"
)


def judge_probe(
    origin: str, server: Server, probe: str, answer: Answer, clean_zone: bool
) -> Finding:
    """Pure: the finding for `server`'s answer to the random name `probe` under `origin`.
    `clean_zone`: a zone server already answered NXDOMAIN, so a wildcard seen here comes
    from the resolver not using the local zone."""
    subject = f"{origin} at {server.role} {server}"
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
        f"{origin} resolve, so mail for any of them looks deliverable"
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
    fix = WILDCARD_FIX.format(origin=origin)
    if server.role == "resolver" and clean_zone:
        fix = (
            f"the resolver {server} does not use your local zone for {origin} (it "
            "forwards and sees the public wildcard): make it serve or forward that zone to the "
            "local zone server, e.g. BIND `zone` statement, unbound `stub-zone`, dnsmasq "
            "`server=/domain/127.0.0.1#port`"
        )
    return Finding("wildcard", "fail", subject, what, fix)
