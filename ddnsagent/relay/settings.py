"""[relay] and [reconnect]: which mail log to read, how the submission relay refuses us, and
how to get a new WAN address — read from the user's file and checked here, by their owner."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ddnsagent.table import Table, argv


@dataclass(frozen=True)
class RelayConfig:
    """[relay]: which log to read and how the submission relay refuses us."""

    log: str  # a path, or "journal"
    host: str
    threshold: int = 2
    window: float = 900.0
    flush: tuple[str, ...] = ("postqueue", "-f")
    settle: float = 5.0
    patterns: tuple[str, ...] = ()  # extra rate-refusal patterns (regex, group "ip")
    bounce_warn: int = 20  # bounces per hour the server may generate before we warn
    # The bounce guard (relay/guard.py): past this many bounces an hour, further bounces to the
    # relay go on hold (0: never); `bounce_hold` asks root to do it, passing nothing.
    bounce_limit: int = 30
    bounce_hold: tuple[str, ...] = ("systemctl", "start", "ddnsagent-bounce-hold.service")
    journal_identifiers: tuple[str, ...] = (
        "postfix/smtp",
        "postfix/error",
        "postfix/qmgr",
        "postfix/bounce",
    )
    queue: tuple[str, ...] = ("postqueue", "-j")  # lists the queue as JSON: confirms a block
    postfix_user: str = "postfix"  # journald records count from this user or Postfix's unit
    # A refusal naming our IPv6 address re-notifies the IPv6 providers; reconnect only when a
    # reconnect renews IPv6 too (not on FLET'S, where IPv6 comes over IPoE beside PPPoE).
    reconnect_on_ipv6: bool = False


@dataclass(frozen=True)
class ReconnectConfig:
    """[reconnect]: how to get a new WAN address, and how often that is allowed."""

    command: tuple[str, ...]
    timeout: float = 120.0
    cooldown: float = 1800.0
    max_per_day: int = 4
    wait_for_address: float = 180.0


def parse_relay(t: Table) -> RelayConfig:
    log_value = t.string("log", "/var/log/mail.log")
    host = t.string("host")
    if not host.strip():
        raise t.error(
            "host", "is empty", "write the relay as Postfix names it, e.g. auth.gate-on.net"
        )
    patterns = tuple(t.str_list("patterns", []))
    for i, pattern in enumerate(patterns):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise t.error(
                f"patterns[{i}]", f"{pattern!r} is not a regular expression: {exc}"
            ) from None
        if "ip" not in compiled.groupindex:
            raise t.error(
                f"patterns[{i}]", f"{pattern!r} has no (?P<ip>…) group", "mark the address it names"
            )
    cfg = RelayConfig(
        log=log_value,
        host=host.strip(),
        threshold=t.integer("threshold", 2, minimum=1),
        window=t.duration("window", 900.0),
        flush=argv(t, "flush", ("postqueue", "-f")),
        settle=t.duration("settle", 5.0),
        patterns=patterns,
        bounce_warn=t.integer("bounce_warn", 20, minimum=0),
        bounce_limit=t.integer("bounce_limit", 30, minimum=0),
        bounce_hold=argv(t, "bounce_hold", RelayConfig.bounce_hold, allow_empty=False),
        journal_identifiers=argv(t, "journal_identifiers", RelayConfig.journal_identifiers),
        queue=_queue(t),
        postfix_user=_postfix_user(t),
        reconnect_on_ipv6=t.boolean("reconnect_on_ipv6", False),
    )
    t.finish()
    return cfg


def _queue(t: Table) -> tuple[str, ...]:
    value: tuple[str, ...] = argv(t, "queue", RelayConfig.queue)
    if not value:
        raise t.error(
            "queue",
            "is empty: the watchdog confirms a block in Postfix's queue before it reconnects",
            'give the queue listing command, e.g. ["postqueue", "-j"] (a second instance: '
            '["postqueue", "-c", "/etc/postfix-out", "-j"])',
        )
    return value


def _postfix_user(t: Table) -> str:
    user: str = t.string("postfix_user", "postfix").strip()
    if not user or any(c.isspace() or c == ":" for c in user):
        raise t.error(
            "postfix_user", "is not a user name or uid", 'write Postfix\'s user, e.g. "postfix"'
        )
    return user


def parse_reconnect(t: Table) -> ReconnectConfig:
    cfg = ReconnectConfig(
        command=argv(t, "command", allow_empty=False),
        timeout=t.duration("timeout", 120.0),
        cooldown=t.duration("cooldown", 1800.0),
        max_per_day=t.integer("max_per_day", 4, minimum=1),
        wait_for_address=t.duration("wait_for_address", 180.0),
    )
    t.finish()
    return cfg
