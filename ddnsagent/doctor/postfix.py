"""Check 4, `postfix`: are the restrictions in place that refuse mail for and from domains
that do not exist, and relaying for strangers? Asked of `postconf`, changing nothing."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence

from ddnsagent import process
from ddnsagent.doctor.finding import Finding, Status

RECIPIENT = "smtpd_recipient_restrictions"
RELAY = "smtpd_relay_restrictions"
SENDER = "smtpd_sender_restrictions"
PARAMETERS = (RECIPIENT, RELAY, SENDER)


def restrictions(value: str) -> list[str]:
    """`permit_mynetworks, reject_unauth_destination` → its words (commas or blanks)."""
    return [w for w in re.split(r"[\s,]+", value) if w]


def parameters(output: str) -> dict[str, str]:
    """`postconf`'s `name = value` lines → {name: value} (an empty value stays "")."""
    values = {}
    for line in output.splitlines():
        name, equals, value = line.partition("=")
        if equals:
            values[name.strip()] = value.strip()
    return values


def check_postfix(postconf: Sequence[str], timeout: float, mail_server: bool) -> list[Finding]:
    """The three restrictions, as `postconf -x` expands them. `mail_server`: a [relay] is
    configured, so Postfix should be here."""
    # `name = value` lines rather than `-h`: the runner strips the output, and with it the
    # empty line of an empty last parameter
    argv = [*postconf, "-x", *PARAMETERS]
    shown = " ".join(argv)
    subject = "main.cf"
    done = process.run(argv, timeout, separate_stderr=True)
    # not started and no such file (executable or not): what exec's ENOENT meant
    if not done.started and shutil.which(argv[0], mode=os.F_OK) is None:
        missing: Status = "warn" if mail_server else "skip"
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
    if done.problem:
        return [Finding("postfix", "warn", subject, f"{shown}: {done.problem}")]
    values = parameters(done.output)
    if not done.ok or any(p not in values for p in PARAMETERS):
        detail = done.errors.splitlines()[-1:] or [f"exit code {done.returncode}"]
        return [Finding("postfix", "warn", subject, f"{shown}: {detail[0]}")]
    return judge_restrictions(values)


def judge_restrictions(values: Mapping[str, str]) -> list[Finding]:
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
