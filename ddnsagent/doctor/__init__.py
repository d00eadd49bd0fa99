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
4. `postfix`: are the three restrictions in place (`postconf`)? Does a 5xx from the relay
   bounce mail for good (`soft_bounce`)? Warned when the watchdog saw the relay do so. With
   the bounce guard on: do bounces wait (a transport of their own with a rate delay) long
   enough for it to hold them (`bouncewait`)?
5. `relay`: does the submission relay accept a TCP connection and greet?
6. `nat`: does the `interface:` source's address match what the echoes see, or is there a
   NAT in the way (double NAT, the ISP's CGNAT) that keeps mail from outside out?

Each finding is pass, warn, fail or skip, with the fix. The exit code is 0 when nothing warns
or fails, else 1. Every server asked and every file read is a field of `Options`, so tests point
them all at things they started.

This module is the public face; each check lives in its own module (`resolvconf`, `domains`
with `wildcard` and `mx`, `postfix`, `bounce`, `bouncewait`, `relay`, `nat`), the printing in
`report`.
"""

from __future__ import annotations

import json
from typing import TextIO

from ddnsagent.config import Config
from ddnsagent.doctor.bounce import check_soft_bounce
from ddnsagent.doctor.bouncewait import check_bounce_wait
from ddnsagent.doctor.domains import check_domains
from ddnsagent.doctor.finding import STATUSES, Finding, Status
from ddnsagent.doctor.nat import check_nat
from ddnsagent.doctor.options import Options
from ddnsagent.doctor.postfix import check_postfix
from ddnsagent.doctor.relay import check_relay
from ddnsagent.doctor.report import as_dict, exit_code, print_findings
from ddnsagent.doctor.resolvconf import check_resolv_conf
from ddnsagent.errors import DdnsagentError
from ddnsagent.store import RelaySignal, Store

__all__ = [
    "STATUSES",
    "Finding",
    "Options",
    "Status",
    "as_dict",
    "exit_code",
    "main",
    "print_findings",
    "run",
]


def main(cfg: Config, as_json: bool, out: TextIO, options: Options | None = None) -> int:
    """Run every check, print the findings, return 0 (all pass or skip) or 1."""
    findings = run(cfg, options or Options())
    if as_json:
        out.write(json.dumps(as_dict(findings), indent=2) + "\n")
    else:
        print_findings(findings, out)
    return exit_code(findings)


def run(cfg: Config, options: Options) -> list[Finding]:
    """The checks in the order the trouble chains: resolver, domains, Postfix, relay; then
    whether a NAT in the way keeps mail from outside out (`nat`)."""
    findings = check_resolv_conf(options.resolv_conf, options.postfix_resolv_conf)
    findings += check_domains(cfg, options)
    findings += check_postfix(options.postconf, options.command_timeout, cfg.relay is not None)
    findings += check_soft_bounce(options.postconf, options.command_timeout, _last_bounced(cfg))
    findings += check_bounce_wait(cfg, options.postconf, options.command_timeout)
    findings += check_relay(cfg, options)
    findings += check_nat(cfg, options)
    return findings


def _last_bounced(cfg: Config) -> RelaySignal | None:
    """The last mail the relay watchdog saw the relay refuse for good (from the state)."""
    if cfg.relay is None:
        return None
    try:
        return Store.of(cfg.agent).load().relay.last_bounced
    except (DdnsagentError, OSError):
        return None  # the state is the status command's business; the check still runs
