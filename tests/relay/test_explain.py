"""`ddnsagent relay explain`: per line, what the parser saw and what the watchdog would do.

The lines are those of the project's shared sample of Postfix delivery lines around a submission
relay (../shared/samples/postfix-relay-lines.txt, itself collected from real logs: the incident
that started the project, Postfix's own maillog_file, rsyslog's RFC 3339 stamps, and refusals as
other relays give them). They are copied here so the test runs where that file is not; the last
test checks the copy against the file wherever it is present.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ddnsagent.errors import ConfigError
from ddnsagent.relay.explain import Explainer, Situation, shown, tail_lines
from ddnsagent.relay.settings import ReconnectConfig, RelayConfig
from tests.conftest import ddnsagent, write_config

GATE = "auth.gate-on.net"
OURS = "198.51.100.7"

ECHO_TIMEOUT = (
    "Dec 24 04:28:53 myhost postfix/qmgr[2240]: 17F8AFC03: to=<someone@example.org>, relay=none, "
    "delay=16802, delays=16802/0.21/0/0, dsn=4.4.1, status=deferred (delivery temporarily "
    "suspended: connect to auth.gate-on.net[210.197.72.170]: Connection timed out)"
)
TOO_MUCH = (
    "Dec 23 04:02:39 myhost postfix/smtp[29536]: 03866F775: to=<someone@example.org>, "
    "relay=auth.gate-on.net[210.197.72.170]:587, delay=25031, delays=24999/28/0.09/5, "
    "dsn=4.0.0, status=deferred (host auth.gate-on.net[210.197.72.170] said: 450 Error: too "
    "much mail from 122.20.52.249 (in reply to MAIL FROM command))"
)
SMTPD_REJECT = (
    "Dec 31 22:16:05 myhost postfix/smtpd[24930]: NOQUEUE: reject: RCPT from "
    "adsl-ull-139-91.47-151.net24.it[151.47.91.139]: 450 4.1.2 <someone@yyy.example.net>: "
    "Recipient address rejected: Domain not found; from=<sender@example.com> "
    "to=<someone@yyy.example.net> proto=ESMTP helo=<x>"
)
POSTLOGD = (
    "Aug 02 10:00:01 mail postfix/smtp[8991]: 3705F20E87F: to=<bob4@remote.example>, "
    "relay=198.51.100.1[198.51.100.1]:587, conn_use=3, delay=0.03, delays=0.01/0.01/0/0, "
    "dsn=4.0.0, status=deferred (host 198.51.100.1[198.51.100.1] said: 450 Error: too much "
    "mail from 198.51.100.7 (in reply to MAIL FROM command))"
)
RFC3339_SENT = (
    "2024-03-22T08:00:03.000+09:00 mailhost postfix/smtp[12348]: 4XyZbC2mQpz7sdM: "
    "to=<a@example.org>, relay=auth.gate-on.net[210.197.72.170]:587, delay=1.2, "
    "delays=0.1/0/0.6/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XyZbD0000z1abc)"
)
PORT25_TIMEOUT = (
    "Oct 27 13:12:48 min postfix/smtp[14215]: DA8E68A0E9E: to=<x@example.com>, relay=none, "
    "delay=3015, delays=2955/0.06/60/0, dsn=4.4.1, status=deferred (connect to "
    "outbound.example.net[192.0.2.10]:25: Connection timed out)"
)
ECHO_REFUSED = (
    "Aug  8 16:46:13 anbient postfix/error[21620]: 2FEDE1DD0327: to=<x@example.net>, "
    "orig_to=<y@example.com>, relay=none, delay=0.16, delays=0.15/0/0/0, dsn=4.4.1, "
    "status=deferred (delivery temporarily suspended: connect to "
    "relay.example.net[192.0.2.20]:587: Connection refused)"
)
RELAY_DENIED = (
    "Jan 26 17:43:14 horde postfix/smtp[9856]: 3B2A9821F1: to=<me@example.com>, "
    "relay=smtp-auth.example.com[192.0.2.30]:587, delay=1.7, delays=0.8/0.02/0.74/0.1, "
    "dsn=5.7.1, status=bounced (host smtp-auth.example.com[192.0.2.30] said: 554 5.7.1 "
    "<me@example.com>: Relay access denied (in reply to RCPT TO command))"
)
LOST_GREETING = (
    "Mar  8 10:06:14 mail postfix/smtp[9392]: 24D43281F11: to=<me@example.co.uk>, "
    "relay=mail.example.co.uk[192.0.2.40]:587, delay=30, delays=0.03/0.03/30/0, dsn=4.4.2, "
    "status=deferred (lost connection with mail.example.co.uk[192.0.2.40] while receiving "
    "the initial server greeting)"
)
SASL = (
    "Nov 10 08:21:47 nagios postfix/error[14999]: 159F04670A: to=<x@example.com>, relay=none, "
    "delay=5, delays=5/0/0/0, dsn=4.7.1, status=deferred (delivery temporarily suspended: "
    "SASL authentication failed; server smtp.example.com[192.0.2.50] said: 535-5.7.1 Username "
    "and Password not accepted.)"
)
BOUNCE = (
    "Dec 22 03:11:09 myhost postfix/bounce[1234]: 5A1B2C3D4E: sender non-delivery "
    "notification: 6F7A8B9C0D"
)

#: Each sample line, the relay it is about, what the parser must see (None: no signal) and
#: words the watchdog's verdict (for no signal: the parser's reason) must hold, judged alone
#: with OURS as our address.
SAMPLES = [
    (ECHO_TIMEOUT, GATE, "connect_failed", "qmgr's echo of a failure it cached"),
    (TOO_MUCH, GATE, "rate_limited", "names 122.20.52.249, which is not our current address"),
    (SMTPD_REJECT, GATE, None, "postfix/smtpd writes no delivery records"),
    (POSTLOGD, "198.51.100.1", "rate_limited", "not confirmed by the queue"),
    (RFC3339_SENT, GATE, "sent", "no trouble was open"),
    (PORT25_TIMEOUT, "outbound.example.net", "connect_failed", "failed connection 1 of"),
    (ECHO_REFUSED, "relay.example.net", "connect_failed", "does not count"),
    (RELAY_DENIED, "smtp-auth.example.com", "relay_denied", "re-notify the providers"),
    (LOST_GREETING, "mail.example.co.uk", "connect_failed", "failed connection 1 of"),
    (SASL, "smtp.example.com", "sasl_failed", "smtp_sasl_password_maps"),
    (BOUNCE, GATE, "bounce_generated", "backscatter meter"),
]


def queue_listing(tmp_path: Path, *reasons: str) -> tuple[str, ...]:
    """A `[relay] queue` command printing `postqueue -j` lines (postqueue(1): one JSON object
    per queue file, each recipient with its delay_reason), one queue file per reason."""
    listing = tmp_path / "queue.json"
    listing.write_text(
        "".join(
            json.dumps(
                {
                    "queue_name": "deferred",
                    "queue_id": f"{0xABCDE0 + i:X}",
                    "recipients": [{"address": "someone@example.org", "delay_reason": r}],
                }
            )
            + "\n"
            for i, r in enumerate(reasons)
        )
    )
    script = tmp_path / "postqueue"
    script.write_text(f"#!/bin/sh\necho run >> {tmp_path}/queue-runs\ncat {listing}\n")
    script.chmod(0o755)
    return (str(script), "-j")


def explain(
    lines: list[str],
    host: str,
    *,
    current: str | None = OURS,
    queue: tuple[str, ...] | None = None,
    reconnect: ReconnectConfig | None = None,
) -> list[tuple[str, str, str, str]]:
    relay = RelayConfig(log="", host=host, queue=queue or ("false",))
    situation = Situation(current4=current, read_queue=queue is not None)
    rows = asyncio.run(Explainer(relay, reconnect, situation).explain(lines))
    return [(r.kind, r.parsed, r.verdict, r.action) for r in rows]


@pytest.mark.parametrize(("line", "host", "kind", "verdict"), SAMPLES)
def test_each_sample_line_says_what_was_seen_and_what_would_happen(
    tmp_path: Path, line: str, host: str, kind: str | None, verdict: str
) -> None:
    ((got_kind, parsed, said, _),) = explain([line], host, queue=queue_listing(tmp_path))
    assert got_kind == (kind or "")
    if kind is None:
        assert parsed.startswith("no signal: ")
        assert said.startswith("nothing")
    else:
        assert parsed.startswith(kind)
    assert verdict in (parsed if kind is None else said), (parsed, said)


def test_a_refusal_of_our_address_reconnects_only_once_the_queue_confirms_it(
    tmp_path: Path,
) -> None:
    reconnect = ReconnectConfig(command=("/usr/local/sbin/ppp-reconnect",))
    empty = queue_listing(tmp_path)
    ((_, parsed, said, action),) = explain(
        [TOO_MUCH], GATE, current="122.20.52.249", queue=empty, reconnect=reconnect
    )
    assert "names 122.20.52.249" in parsed and action == "reconnect"
    assert said.startswith("no reconnect: relay refused 122.20.52.249")
    assert "not confirmed by the queue" in said

    (tmp_path / "held").mkdir()
    held = queue_listing(
        tmp_path / "held",
        f"host {GATE}[210.197.72.170] said: 450 Error: too much mail from 122.20.52.249 "
        "(in reply to MAIL FROM command)",
    )
    ((_, _, said, action),) = explain(
        [TOO_MUCH], GATE, current="122.20.52.249", queue=held, reconnect=reconnect
    )
    assert said.startswith("reconnect: ") and "confirmed by the queue: deferred" in said
    assert "runs `/usr/local/sbin/ppp-reconnect`" in said


def test_the_queue_is_read_once_and_only_when_a_reconnect_is_in_question(tmp_path: Path) -> None:
    queue = queue_listing(tmp_path)
    explain([ECHO_TIMEOUT, RFC3339_SENT, BOUNCE], GATE, queue=queue)
    assert not (tmp_path / "queue-runs").exists()
    again = TOO_MUCH.replace("03866F775", "1A2B3C4D5E")
    explain([TOO_MUCH, again], GATE, current="122.20.52.249", queue=queue)
    assert (tmp_path / "queue-runs").read_text().splitlines() == ["run"]


def test_lines_are_judged_in_order_like_the_watch_does() -> None:
    first = PORT25_TIMEOUT
    same_attempt = PORT25_TIMEOUT.replace("x@example.com", "y@example.com")
    second = PORT25_TIMEOUT.replace("[14215]", "[14216]").replace("DA8E68A0E9E", "DA8E68A0E9F")
    rows = explain([first, same_attempt, second], "outbound.example.net")
    assert "failed connection 1 of threshold = 2" in rows[0][2]
    assert "counted once" in rows[1][2]
    assert rows[2][3] == "reconnect"
    assert "2 failed connections to the relay within 900s" in rows[2][2]
    assert "queue was not read" in rows[2][2]  # --no-queue: taken as confirmed
    # After a reconnect, the relay taking mail again is the recovery.
    sent = RFC3339_SENT.replace("2024-03-22T08:00:03.000+09:00", "Oct 27 13:14:00").replace(
        GATE, "outbound.example.net"
    )
    rows = explain([first, second, sent], "outbound.example.net")
    assert rows[2][3] == "recovered" and "relay recovered" in rows[2][2]


def test_a_relay_named_differently_or_an_address_we_left_are_said_so() -> None:
    ((kind, parsed, said, _),) = explain([TOO_MUCH], "relay.example.net")
    assert kind == "" and "relay=auth.gate-on.net[210.197.72.170]:587 is not the relay" in parsed
    assert said.startswith("nothing")
    ((kind, _, said, _),) = explain([TOO_MUCH], GATE, current=None)
    assert "none known yet: pass --address" in said


def test_shown_lines_cannot_drive_the_terminal() -> None:
    line = "Dec 24 04:28:53 myhost postfix/smtp[1]: \x1b[2J\x1b]0;owned\x07" + "x" * 400
    out = shown(line)
    assert "\x1b" not in out and "\x07" not in out and len(out) <= 220


def test_tail_lines_reads_the_last_lines_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("".join(f"line {i}\n" for i in range(50_000)) + "# a comment\n\n")
    assert tail_lines(log, 3) == ["line 49997", "line 49998", "line 49999"]
    with pytest.raises(Exception, match="no such file"):
        tail_lines(tmp_path / "missing.log", 3)


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    """Someone who may write the log directory swaps the log for a link to a secret file:
    `relay explain` (run by root) refuses it and prints none of the target's lines."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$not-for-you:19000:0:99999:7:::\n")
    log = tmp_path / "mail.log"
    log.symlink_to(secret)
    with pytest.raises(ConfigError) as caught:
        tail_lines(log, 3)
    assert "symbolic link" in str(caught.value) and "not-for-you" not in str(caught.value)


def test_the_command_explains_arguments_and_the_tail_of_a_log(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = ["web"]\n'
        f'[relay]\nhost = "{GATE}"\nlog = "{tmp_path}/mail.log"\n'
        f"queue = {json.dumps(list(queue_listing(tmp_path)))}\n",
    )
    run = ddnsagent("relay", "explain", "--config", config, "--address", "122.20.52.249", TOO_MUCH)
    assert run.returncode == 0, run.stderr
    assert "our addresses: IPv4 122.20.52.249" in run.stdout
    assert "parser:   rate_limited from postfix/smtp[29536]" in run.stdout
    assert "watchdog: no reconnect" in run.stdout and "not confirmed by the queue" in run.stdout

    (tmp_path / "mail.log").write_text("\n".join([ECHO_TIMEOUT, SMTPD_REJECT, BOUNCE]) + "\n")
    run = ddnsagent("relay", "explain", "--config", config, "--log", "--last", "2")
    assert run.returncode == 0, run.stderr
    assert "  1  Dec 31 22:16:05" in run.stdout and "  2  Dec 22 03:11:09" in run.stdout
    assert "Dec 24 04:28:53" not in run.stdout

    run = ddnsagent("relay", "explain", "--config", config)
    assert run.returncode == 2 and "no lines to explain" in run.stderr
    bare = write_config(tmp_path, '[detect]\nipv4 = ["web"]\n', "bare.toml")
    run = ddnsagent("relay", "explain", "--config", bare, TOO_MUCH)
    assert run.returncode == 2 and "no [relay] section" in run.stderr
    assert "Traceback" not in run.stderr
