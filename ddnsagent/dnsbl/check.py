"""Asking the blocklists about one address, and saying what they answered.

The questions go through dnsclient.py to one resolver: `[dnsbl] resolver`, else the system's
(resolv.conf's nameservers, tried in order when one does not answer). The lists are asked in
parallel threads, each question bounded by `[dnsbl] timeout`, so a check takes at most about
`timeout` × the number of resolvers (dnspython is loaded by the first question, so `status`
reads the words below without it). Blocking on purpose: `ddnsagent dnsbl` runs it without an
event loop, the daemon in a worker thread.

The words are here too, for the log, `status` and `ddnsagent dnsbl`: one line per kind of
result (listed, refused, no answer, policy), so a dead resolver is one warning, not one per list.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

from ddnsagent.address import IPAddress
from ddnsagent.dnsbl.lists import (
    Blocklist,
    DnsblConfig,
    Finding,
    failed,
    judge,
    overall,
    query_name,
)
from ddnsagent.store import Dnsbl, DnsblCheck, DnsblFinding, dnsbl_check_json

# A resolver that answers these did not ask the list; the next one in resolv.conf may.
_TRY_NEXT = ("SERVFAIL", "REFUSED")


@dataclass
class Report:
    """What the lists said about one address."""

    address: str
    time: float
    findings: list[Finding] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # the zones asked

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def verdict(self) -> str:
        return overall(self.findings)


def resolvers(cfg: DnsblConfig) -> list[tuple[str, int]]:
    # lazy: dnspython (~15 ms) only to ask; `status` reads this module's words without it
    from ddnsagent import dnsclient

    return [cfg.resolver] if cfg.resolver is not None else dnsclient.system_nameservers()


def check(cfg: DnsblConfig, address: IPAddress) -> Report:
    """Ask every list that answers for `address`'s family; never raises for DNS trouble."""
    lists = [b for b in cfg.lists if address.version == 4 or b.ipv6]
    report = Report(str(address), time.time(), asked=[b.zone for b in lists])
    if not lists:
        return report
    servers = resolvers(cfg)
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=min(len(lists), 8), thread_name_prefix="dnsbl"
    ) as pool:
        futures = [pool.submit(_ask, b, address, servers, cfg.timeout) for b in lists]
        report.findings = [f.result() for f in futures]
    return report


def _ask(
    blocklist: Blocklist, address: IPAddress, servers: list[tuple[str, int]], timeout: float
) -> Finding:
    from ddnsagent import dnsclient  # lazy: see resolvers()

    name = query_name(address, blocklist.zone)
    finding: Finding | None = None
    for server in servers:
        try:
            rcode, codes = dnsclient.a_records(server, name, timeout)
        except OSError as exc:  # TimeoutError included
            finding = failed(blocklist, str(exc))
            continue
        finding = judge(blocklist, str(address), rcode, codes)
        if rcode not in _TRY_NEXT:
            break
    assert finding is not None  # servers is never empty
    return finding


# -- words -----------------------------------------------------------------------------------------


def lines(report: Report) -> list[tuple[str, str]]:
    """(level, text) for the log: "warning" for a listing, a refusal or no answer, "info" for
    a policy listing (expected); nothing for an address no list names."""
    return _lines(report.address, report.findings)


def _lines(address: str, findings: list[Any]) -> list[tuple[str, str]]:
    family = f"IPv{ipaddress.ip_address(address).version} {address}"
    found: dict[str, list[Any]] = {}
    for f in findings:
        found.setdefault(f.verdict, []).append(f)
    out: list[tuple[str, str]] = []
    if listed := found.get("listed"):
        named = "; ".join(
            f"{f.name} ({f.zone}): {f.text}" + (f" — see {f.lookup}" if f.lookup else "")
            for f in listed
        )
        out.append(
            (
                "warning",
                f"{family} is LISTED on {named}. Receivers that consult these lists refuse or "
                "mark mail that names this address (Received headers)",
            )
        )
    if refused := found.get("refused"):
        named = "; ".join(f"{f.name} ({f.zone}) {f.text}" for f in refused)
        out.append(
            (
                "warning",
                f"DNSBL check of {family}: {named} — this is not a listing; to fix: "
                f"{refused[0].fix}",
            )
        )
    if errors := found.get("error"):
        named = "; ".join(f"{f.zone}: {f.text}" for f in errors)
        out.append(("warning", f"DNSBL check of {family} incomplete: {named} — {errors[0].fix}"))
    if policy := found.get("policy"):
        named = "; ".join(f"{f.name} ({f.zone}): {f.text}" for f in policy)
        out.append(
            (
                "info",
                f"{family} is on a policy list, as expected for a dynamic address: {named} — "
                "mail sent through the relay is not affected; nothing to do",
            )
        )
    return out


def summary(report: Report) -> str:
    """The verdict on one line, for `ddnsagent dnsbl`."""
    if not report.asked:
        return f"{report.address}: no list in [dnsbl] zones answers for IPv{report.family}"
    return f"{report.address}: {_words(report.verdict, report.asked)}"


# -- the state ---------------------------------------------------------------------------------


def record(report: Report, action: str | None = None) -> DnsblCheck:
    """The store's record of a check: only what was not "clean" is kept, with the zones asked."""
    return DnsblCheck(
        address=report.address,
        time=report.time,
        verdict=report.verdict,
        zones=list(report.asked),
        findings=[
            DnsblFinding(f.zone, f.name, f.verdict, list(f.codes), f.text, f.lookup, f.fix)
            for f in report.findings
            if f.verdict != "clean"
        ],
        action=action,
    )


def status_json(state: Dnsbl, cfg: DnsblConfig | None) -> dict[str, Any]:
    """`status --json`'s "dnsbl" object (README documents it)."""
    return {
        "enabled": bool(cfg is not None and cfg.enabled),
        "reconnect": bool(cfg is not None and cfg.reconnect),
        "checks": {f"ipv{f}": dnsbl_check_json(c) for f, c in sorted(state.checks.items())},
    }


def status_lines(state: Dnsbl, cfg: DnsblConfig | None, when: Any) -> list[str]:
    """`status`'s text: one line per family checked, then the findings' lines indented."""
    if cfg is None and not state.checks:
        return []
    out = []
    if cfg is not None and not cfg.enabled:
        out.append("dnsbl: off ([dnsbl] enabled = false)")
    elif not state.checks:
        out.append("dnsbl: not checked yet")
    for _, c in sorted(state.checks.items()):
        out.append(f"dnsbl: {c.address} checked {when(c.time)}: {_words(c.verdict, c.zones)}")
        out += [f"  {text}" for _, text in _lines(c.address, c.findings)]
        if c.action:
            out.append(f"  action: {c.action}")
    return out


def _words(verdict: str, zones: list[str]) -> str:
    return {
        "clean": f"not listed on any of {len(zones)} list(s) ({', '.join(zones)})",
        "policy": "on a policy list only (expected for a dynamic address)",
        "listed": "LISTED",
        "refused": "a list refused the question (not a listing)",
        "error": "incomplete: a list did not answer",
    }.get(verdict, verdict)
