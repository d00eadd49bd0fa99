"""Check 4b, `postfix soft_bounce`: does a 5xx from the relay bounce mail for good?

A relay that stops recognising our address answers "554 5.7.1 Relay access denied" (or another
5xx) and Postfix returns the mail to its sender at once: by the time the watchdog has re-notified
or reconnected, that mail is gone. Postfix can keep such mail queued instead (postconf(5) of
Postfix 3.7): `soft_bounce = yes` ("Safety net to keep mail queued that would otherwise be
returned to the sender"), for one delivery agent as `-o soft_bounce=yes` on its master.cf line,
or narrowly with `smtp_delivery_status_filter`, which may turn chosen 5.X.X results into 4.X.X.
A 535 from SASL is already deferred while `smtp_sasl_auth_soft_bounce = yes` (the default since
Postfix 2.5). Asked of `postconf`, changing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ddnsagent import process
from ddnsagent.doctor.finding import Finding
from ddnsagent.doctor.postfix import parameters
from ddnsagent.store import RelaySignal

PARAMETERS = ("soft_bounce", "smtp_sasl_auth_soft_bounce", "default_transport")
RISK = (
    "the risk: mail that can never be delivered then waits in the queue (up to "
    "maximal_queue_lifetime, 5 days by default) instead of bouncing, and its senders are not told "
    "— watch `postqueue -p` and undo it when the block is over"
)


def check_soft_bounce(
    postconf: Sequence[str], timeout: float, bounced: RelaySignal | None
) -> list[Finding]:
    """The finding for soft_bounce; none when postconf cannot answer (check_postfix says why).
    `bounced`: the last mail the watchdog saw the relay refuse for good, if any."""
    done = process.run([*postconf, "-x", *PARAMETERS], timeout, separate_stderr=True)
    values = parameters(done.output) if done.ok else {}
    if any(p not in values for p in PARAMETERS):
        return []
    master = process.run([*postconf, "-P"], timeout, separate_stderr=True)
    overrides = parameters(master.output) if master.ok else {}
    return judge_soft_bounce(values, overrides, bounced)


def judge_soft_bounce(
    values: Mapping[str, str], overrides: Mapping[str, str], bounced: RelaySignal | None
) -> list[Finding]:
    """Pure: `values` from `postconf -x`, `overrides` from `postconf -P` (master.cf's
    `service/type/parameter = value`)."""
    # relayhost mail goes through default_transport ("smtp", or "transport:nexthop").
    transport = values.get("default_transport", "").partition(":")[0] or "smtp"
    where = None
    if values.get("soft_bounce") == "yes":
        where = "soft_bounce = yes in main.cf"
    elif overrides.get(f"{transport}/unix/soft_bounce") == "yes":
        where = f"-o soft_bounce=yes on the {transport} transport in master.cf"
    findings = []
    if where is not None:
        findings.append(
            Finding(
                "postfix",
                "pass",
                "soft_bounce",
                f"a 5xx from the relay keeps the mail queued ({where}); {RISK}",
            )
        )
    else:
        fix = (
            f"to keep such mail queued while a block lasts, add `-o soft_bounce=yes` under the "
            f"`{transport} unix … smtp` line in master.cf (the transport relayhost mail takes), "
            "or set `soft_bounce = yes` in main.cf for all of Postfix, then run `postfix reload`; "
            "narrower: `smtp_delivery_status_filter = regexp:/etc/postfix/relay_status` with the "
            r"line `/^5(\.7\.1 .*Relay access denied.*)/ 4$1`. " + RISK.capitalize()
        )
        message = (
            "soft_bounce is off: a 5xx from the relay (such as 554 5.7.1 Relay access denied) "
            "bounces the mail to its sender for good"
        )
        if bounced is not None:
            when = datetime.fromtimestamp(bounced.time).strftime("%Y-%m-%d %H:%M")
            message += f"; the relay did so at {when}: {bounced.reason}"
        else:
            message += (
                f" (hint: `-o soft_bounce=yes` on the {transport} transport keeps it queued "
                "instead; senders are then not told)"
            )
        findings.append(
            Finding("postfix", "warn" if bounced else "pass", "soft_bounce", message, fix)
        )
    if values.get("smtp_sasl_auth_soft_bounce") == "no":
        findings.append(
            Finding(
                "postfix",
                "warn",
                "smtp_sasl_auth_soft_bounce",
                "a 535 from the relay (our login refused) bounces mail for good",
                "remove `smtp_sasl_auth_soft_bounce = no` from main.cf (the default, yes, keeps "
                "such mail queued until the login is fixed), then run `postfix reload`",
            )
        )
    return findings
