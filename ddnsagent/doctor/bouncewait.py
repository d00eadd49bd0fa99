"""Check 4c, `postfix bounce guard`: do bounces wait long enough for the guard to hold them?

Postfix hands a fresh bounce to the relay within milliseconds; the guard (relay/guard.py) can
hold only what still waits in the queue. README "The race, and what is guaranteed": give mail
with the null sender a transport of its own with a rate delay —
`sender_dependent_default_transport_maps` mapping Postfix's null-sender lookup key
(`empty_address_default_transport_maps_lookup_key`, `<>` by default; postconf(5) of Postfix
3.7) to a master.cf copy of the `smtp` line, and `<transport>_destination_rate_delay` above 0
(postconf(5), default_destination_rate_delay: a delay "between individual message deliveries to
the same destination and over the same message delivery transport"; read by the queue manager
from main.cf). Then bounces leave one per delay and the others wait, where the hold finds them.
The same page: with a per-destination recipient limit of 1 the delay is per *recipient*, so
bounces to different senders would not wait for each other. `postmap -q` exits 0 when the key
was found (postmap(1)).

Asked of `postconf` (the values, `-M` for the master.cf entry) and `postmap -q` (the lookup, so
every table type answers as Postfix itself would), changing nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ddnsagent import process
from ddnsagent.doctor.finding import Finding
from ddnsagent.doctor.postfix import parameters
from ddnsagent.durations import format_duration

MAPS = "sender_dependent_default_transport_maps"
KEY = "empty_address_default_transport_maps_lookup_key"
SUBJECT = "bounce guard"
TRANSPORT = "bounce-relay"  # the name README uses
DELAY = "30s"


def check_bounce_wait(cfg: Any, postconf: Sequence[str], timeout: float) -> list[Finding]:
    """The finding for the bounce transport while the guard is on; none while it is off or
    when postconf cannot answer (check_postfix says why)."""
    relay = cfg.relay
    if relay is None or not relay.bounce_limit:
        return []
    done = process.run([*postconf, "-x", MAPS, KEY], timeout, separate_stderr=True)
    values = parameters(done.output) if done.ok else {}
    if MAPS not in values or KEY not in values:
        return []
    maps, key = values[MAPS], values[KEY] or "<>"
    if not maps:
        return [_missing(f"{MAPS} is empty, so bounces take the ordinary smtp transport")]
    looked = process.run(
        [*postmap(postconf), "-q", key, *split_maps(maps)], timeout, separate_stderr=True
    )
    if looked.returncode == 1:  # postmap(1): not found
        return [_missing(f"{MAPS} has no entry for the null sender ({key})")]
    if not looked.ok:
        return [Finding("postfix", "warn", SUBJECT, f"{MAPS}: {looked.describe()}")]
    transport = looked.output.partition(":")[0].strip()
    if not transport:
        return [_missing(f"{MAPS} maps {key} to {looked.output!r}, which names no transport")]
    entry = process.run([*postconf, "-M", f"{transport}/unix"], timeout, separate_stderr=True)
    if not entry.ok or not entry.output.strip():
        return [
            _missing(
                f"{MAPS} sends bounces to transport {transport}, which master.cf does not have",
                transport,
            )
        ]
    name = f"{transport}_destination_rate_delay"
    limit_name = f"{transport}_destination_recipient_limit"
    delay = process.run([*postconf, "-x", name, limit_name], timeout, separate_stderr=True)
    read = parameters(delay.output) if delay.ok else {}
    value = read.get(name, "")
    seconds = postfix_seconds(value)
    if seconds and read.get(limit_name) == "1":
        return [
            Finding(
                "postfix",
                "warn",
                SUBJECT,
                f"bounces take transport {transport} with {name} = {value}, but "
                f"{limit_name} = 1 makes the delay per recipient: bounces to different "
                "addresses leave at once, before the bounce guard can hold them",
                f"remove `{limit_name} = 1` from main.cf (or set it above 1), then run "
                "`postfix reload`",
            )
        ]
    if not seconds:
        return [
            Finding(
                "postfix",
                "warn",
                SUBJECT,
                f"bounces take transport {transport}, but {name} is "
                f"{value or 'not set'}: they leave at once, before the bounce guard can hold them",
                f"add `{name} = {DELAY}` to main.cf, then run `postfix reload` "
                '(README, "The race, and what is guaranteed")',
            )
        ]
    return [
        Finding(
            "postfix",
            "pass",
            SUBJECT,
            f"bounces wait: the null sender ({key}) takes transport {transport} with {name} = "
            f"{value}, so at most one bounce leaves every {format_duration(seconds)} and the "
            f"others wait where the guard holds them (past {cfg.relay.bounce_limit} an hour)",
        )
    ]


def _missing(why: str, transport: str = TRANSPORT) -> Finding:
    return Finding(
        "postfix",
        "warn",
        SUBJECT,
        f"{why}: bounces leave before the bounce guard can hold them (it holds only what "
        "waits in the queue)",
        f"in main.cf: `{MAPS} = inline:{{<>={transport}:}}` and "
        f"`{transport}_destination_rate_delay = {DELAY}`; in master.cf, a copy of the smtp line: "
        f"`{transport} unix - - n - - smtp`; then run `postfix reload` "
        '(README, "The race, and what is guaranteed")',
    )


def postmap(postconf: Sequence[str]) -> list[str]:
    """The postmap beside `postconf`, with its arguments (`-c DIR`: the same instance)."""
    program = postconf[0]
    name = os.path.join(os.path.dirname(program), "postmap") if "/" in program else "postmap"
    return [name, *postconf[1:]]


def split_maps(value: str) -> list[str]:
    """A table list as Postfix splits it: on commas and blanks outside `{…}`
    (`inline:{<>=bounce-relay:}, hash:/etc/postfix/x` → two tables)."""
    out: list[str] = []
    word = ""
    depth = 0
    for c in value:
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
        if depth == 0 and (c == "," or c.isspace()):
            if word:
                out.append(word)
            word = ""
            continue
        word += c
    if word:
        out.append(word)
    return out


def postfix_seconds(value: str) -> float:
    """A Postfix time value (`30s`, `1m`, `0`, a bare number in the default unit, seconds for
    the rate delay) in seconds; 0 when it cannot be read."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = value.strip().lower()
    if not text:
        return 0.0
    unit = units.get(text[-1])
    number = text[:-1] if unit else text
    try:
        return max(float(number) * (unit or 1), 0.0)
    except ValueError:
        return 0.0
