"""Check 6, `nat`: is there a NAT between the WAN interface and the Internet (double NAT, the
ISP's carrier-grade NAT)? Then mail from outside cannot reach this server, whatever the DNS says.

It asks both sides now: the addresses of the interface named by an `interface:` source in
[detect], and what the echoes see (the family's `web`/`dns:` sources, else the built-in web
echoes; `quorum` of them must agree). Without an interface source there is nothing to compare,
and no finding: behind a home router its NAT is expected, and the echo's answer is the right one.
"""

from __future__ import annotations

import asyncio

from ddnsagent.config import Config
from ddnsagent.detect import nat
from ddnsagent.detect.finder import crosscheck
from ddnsagent.detect.settings import Source
from ddnsagent.doctor.finding import Finding
from ddnsagent.doctor.options import Options


def check_nat(cfg: Config, options: Options) -> list[Finding]:
    """A finding per family with an `interface:` source; none without one — behind a home
    router (an echo-only configuration) the router's NAT is expected, nothing to say."""
    findings = []
    for family in cfg.families:
        sources = cfg.detect.sources(family)
        names = [s.arg for s in sources if s.kind == "interface"]
        if names:
            findings.append(_check_family(cfg, options, family, sources, names))
    return findings


def _check_family(
    cfg: Config, options: Options, family: int, sources: tuple[Source, ...], names: list[str]
) -> Finding:
    subject = f"IPv{family} {', '.join(names)}"
    echoes: tuple[Source, ...] | None = None
    if options.echoes is not None:
        echoes = tuple(Source("web", url, f"web:{url}") for url in options.echoes)
    elif not any(s.remote for s in sources):
        echoes = (Source("web", "", "web"),)  # the built-in echoes: the doctor asks once
    limit = 3 * cfg.detect.timeout * 2

    async def both() -> tuple[nat.Verdict | None, list[str]]:
        return await asyncio.wait_for(crosscheck(cfg.detect, family, None, echoes), limit)

    try:
        verdict, notes = asyncio.run(both())
    except TimeoutError:
        verdict, notes = None, [f"no answer within {limit:g}s"]
    if verdict is None:
        return Finding("nat", "skip", subject, "not compared: " + "; ".join(notes))
    local = ",".join(verdict.local)
    if not verdict.nat:
        where = "" if verdict.echo in verdict.local else " (held by another interface here)"
        return Finding(
            "nat",
            "pass",
            subject,
            f"{verdict.interface} holds {local} and the echoes see {verdict.echo}{where}: "
            "no other NAT in the way",
        )
    message, fix = nat.words(verdict.kind, verdict.interface, local, verdict.echo)
    return Finding("nat", "warn", subject, message, fix)
