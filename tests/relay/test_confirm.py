"""A log line is a hint: before a reconnect the watch confirms the block in Postfix's queue
(`[relay] queue`, here a stand-in printing the JSON the test writes) and, for connections the
relay never answered, with a connection of its own (to loopback ports the test opens or
closes). Forged lines with nothing behind them in the queue reconnect nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddnsagent import config
from ddnsagent.relay import watch as watch_module
from ddnsagent.relay.decide import Decision, backing
from ddnsagent.relay.logparse import EventKind, QueuedFailure, parse_queue_json, relay_address
from ddnsagent.relay.sources import probe, read_queue
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import write_config
from tests.relay.conftest import (
    RELAY,
    incident_line,
    queued,
    refusal_reason,
    runs,
    sent_line,
    wait,
)

OURS = "198.51.100.7"
TIMED_OUT = f"connect to {RELAY}[198.51.100.1]:587: Connection timed out"
# What Postfix 3.7 printed in the e2e world (tests/e2e), one queue file each.
REAL_REFUSED = (
    '{"queue_name": "deferred", "queue_id": "18C98218B1B", "arrival_time": 1796062845, '
    '"message_size": 286, "forced_expire": false, "sender": "alice@home.example.net", '
    '"recipients": [{"address": "bob@remote.example", "delay_reason": "host '
    "198.51.100.1[198.51.100.1] said: 450 Error: too much mail from 198.51.100.7 (in reply to "
    'MAIL FROM command)"}]}'
)
REAL_TIMED_OUT = (
    '{"queue_name": "deferred", "queue_id": "F2935218B26", "arrival_time": 1796062846, '
    '"message_size": 286, "forced_expire": false, "sender": "alice@home.example.net", '
    '"recipients": [{"address": "bob@remote.example", "delay_reason": "connect to '
    '198.51.100.1[198.51.100.1]:587: Connection timed out"}]}'
)
E2E_RELAY = "[198.51.100.1]:587"


# --- the queue's JSON ---------------------------------------------------------------------------


def test_real_postqueue_lines() -> None:
    (refused,) = parse_queue_json(REAL_REFUSED, E2E_RELAY)
    assert refused.kind is EventKind.RATE_LIMITED and refused.limited_ip == OURS
    assert (refused.queue_name, refused.queue_id) == ("deferred", "18C98218B1B")
    assert not refused.unanswered
    (timed_out,) = parse_queue_json(REAL_TIMED_OUT, E2E_RELAY)
    assert timed_out.kind is EventKind.CONNECT_FAILED and timed_out.unanswered
    assert (timed_out.relay_ip, timed_out.relay_port) == ("198.51.100.1", 587)


def entry(reason: object, address: object = "someone@example.org", **fields: object) -> str:
    record: dict[str, object] = {
        "queue_name": "deferred",
        "queue_id": "1A2B3C4D5E",
        "recipients": [{"address": address, "delay_reason": reason}],
    }
    record.update(fields)
    return json.dumps(record)


@pytest.mark.parametrize(
    ("reason", "kind", "unanswered"),
    [
        (refusal_reason(OURS), EventKind.RATE_LIMITED, False),
        (TIMED_OUT, EventKind.CONNECT_FAILED, True),
        (f"delivery temporarily suspended: {TIMED_OUT}", EventKind.CONNECT_FAILED, True),
        (
            f"connect to {RELAY}[198.51.100.1]:587: Connection refused",
            EventKind.CONNECT_FAILED,
            True,
        ),
        (
            f"connect to {RELAY}[198.51.100.1]:587: server refused to talk to me: 554 go away",
            EventKind.CONNECT_FAILED,
            False,
        ),
        (
            f"lost connection with {RELAY}[198.51.100.1] while receiving the initial server "
            "greeting",
            EventKind.CONNECT_FAILED,
            False,
        ),
        (
            f"host {RELAY}[198.51.100.1] said: 554 5.7.1 <someone@example.org>: Relay access "
            "denied (in reply to RCPT TO command)",
            EventKind.RELAY_DENIED,
            False,
        ),
    ],
)
def test_queued_reasons(reason: str, kind: EventKind, unanswered: bool) -> None:
    (failure,) = parse_queue_json(entry(reason), RELAY)
    assert (failure.kind, failure.unanswered) == (kind, unanswered)


@pytest.mark.parametrize(
    "line",
    [
        entry(None),  # delivery in progress: no reason yet
        entry("connect to other.example[192.0.2.9]:25: Connection timed out"),
        entry("host mx.example.org[192.0.2.9] said: 450 Error: too much mail from 198.51.100.7"),
        # The relay echoes the recipient, whose local part spells the refusal: the sender's
        # words, not the relay's.
        entry(
            f"host {RELAY}[198.51.100.1] said: 450 4.1.1 <450 too much mail from "
            f"{OURS}@example.org>: Recipient address rejected (in reply to RCPT TO command)",
            address=f"450 too much mail from {OURS}@example.org",
        ),
        entry(TIMED_OUT + "\nsecond line"),
        entry(TIMED_OUT, address=None),
        entry(TIMED_OUT, queue_id=7),
        entry(TIMED_OUT, recipients="all"),
        json.dumps({"queue_name": "deferred", "queue_id": "X", "recipients": ["a"]}),
        "",
        "{",
        "[]",
        "[" * 100000 + "]" * 100000,
    ],
)
def test_queue_lines_that_confirm_nothing(line: str) -> None:
    assert parse_queue_json(line, RELAY) == []


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000))
def test_any_queue_line_is_safe(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    parse_queue_json(text, RELAY)
    parse_queue_json(REAL_TIMED_OUT[:60] + text, E2E_RELAY)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("auth.gate-on.net", ("auth.gate-on.net", 587)),
        ("[auth.gate-on.net]:465", ("auth.gate-on.net", 465)),
        ("[ipv6:2001:db8::1]:2525", ("2001:db8::1", 2525)),
        ("relay.example:25", ("relay.example", 25)),
    ],
)
def test_relay_address(host: str, expected: tuple[str, int]) -> None:
    assert relay_address(host) == expected


# --- what backs a decision (pure) ---------------------------------------------------------------


def failure(kind: EventKind, **fields: object) -> QueuedFailure:
    values: dict[str, object] = {
        "queue_id": "1A2B3C4D5E",
        "queue_name": "deferred",
        "relay_name": RELAY,
        "relay_ip": "198.51.100.1",
        "relay_port": 587,
        "reason": "…",
    }
    values.update(fields)
    return QueuedFailure(kind, **values)  # type: ignore[arg-type]


RECONNECT = Decision("reconnect", "r", 0.0, signal=EventKind.CONNECT_FAILED)
ESCALATION = Decision("reconnect", "r", 0.0, signal=EventKind.RELAY_DENIED)


def test_backing() -> None:
    ours = failure(EventKind.RATE_LIMITED, limited_ip=OURS)
    older = failure(EventKind.RATE_LIMITED, limited_ip="198.51.100.6")
    silent = failure(EventKind.CONNECT_FAILED, unanswered=True)
    dropped = failure(EventKind.CONNECT_FAILED)
    denied = failure(EventKind.RELAY_DENIED)
    assert backing(RECONNECT, [], OURS) == (None, [])
    assert backing(RECONNECT, [older, silent, ours], OURS) == (ours, [])
    assert backing(RECONNECT, [ours], None) == (None, [])
    assert backing(RECONNECT, [older], OURS) == (None, [])
    assert backing(RECONNECT, [silent, silent], OURS) == (None, [silent, silent])
    assert backing(RECONNECT, [silent, dropped], OURS) == (dropped, [])
    assert backing(RECONNECT, [denied], OURS) == (None, [])  # re-notify first, not reconnect
    assert backing(ESCALATION, [denied], OURS) == (denied, [])


# --- reading the queue, and our own connection attempt ------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_read_queue_streams_past_the_output_cap(tmp_path: Path) -> None:
    """A queue longer than process.py keeps (64 KiB) still shows the refusal at its end."""
    filler = queued(*["host mx.example.org[192.0.2.9] said: 451 try later"] * 600)
    assert len(filler) > 128 * 1024
    (tmp_path / "q").write_text(filler + queued(refusal_reason(OURS)))
    command = script(tmp_path / "postqueue", f"cat {tmp_path}/q\n")
    reading = asyncio.run(read_queue([str(command)], RELAY))
    assert reading.problem is None and reading.files == 601
    assert [f.limited_ip for f in reading.failures] == [OURS]


def test_read_queue_failure_names_the_command_and_its_error(tmp_path: Path) -> None:
    command = script(
        tmp_path / "postqueue",
        "echo 'postqueue: fatal: Connect to the Postfix showq service: Permission denied' >&2\n"
        "exit 69\n",
    )
    reading = asyncio.run(read_queue([str(command), "-j"], RELAY))
    assert reading.failures == []
    assert reading.problem == (
        f"`{command} -j` exited 69: postqueue: fatal: Connect to the Postfix showq service: "
        "Permission denied"
    )
    missing = asyncio.run(read_queue([str(tmp_path / "absent")], RELAY))
    assert missing.problem is not None and "could not be started" in missing.problem


def test_read_queue_that_prints_no_json_is_a_problem(tmp_path: Path) -> None:
    """`postqueue -p` (the mailq listing) by mistake: a problem, not an empty queue."""
    command = script(tmp_path / "postqueue", "echo '-Queue ID-  --Size-- ----Arrival Time----'\n")
    reading = asyncio.run(read_queue([str(command), "-p"], RELAY))
    assert reading.problem == f"`{command} -p` printed no JSON (is -j missing?)"
    empty = script(tmp_path / "empty", "exit 0\n")
    assert asyncio.run(read_queue([str(empty)], RELAY)).problem is None


def test_read_queue_is_bounded_in_time(tmp_path: Path) -> None:
    command = script(tmp_path / "postqueue", f"{REAL_TIMED_OUT!r}\nsleep 30\n")
    started = time.monotonic()
    reading = asyncio.run(read_queue([str(command)], RELAY, timeout=1.0))
    assert time.monotonic() - started < 10
    assert reading.problem is not None and "did not finish within 1s" in reading.problem


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        yield server.getsockname()[1]


@pytest.fixture
def closed() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # bound, never listened, now closed: refused


def test_probe(listening: int, closed: int) -> None:
    assert asyncio.run(probe("127.0.0.1", listening, 5.0)) is None
    started = time.monotonic()
    why = asyncio.run(probe("127.0.0.1", closed, 5.0))
    assert why is not None and "refused" in why.lower()
    assert time.monotonic() - started < 5


# --- the watch: forged lines, real queue entries ------------------------------------------------


def timeout_line(port: int = 587, qid: str = "03866F775", ip: str = "198.51.100.1") -> str:
    stamp = time.strftime("%b %d %H:%M:%S")
    return (
        f"{stamp} myhost postfix/smtp[4242]: {qid}: to=<someone@example.org>, relay=none, "
        f"delay=30, delays=0/0/30/0, dsn=4.4.1, status=deferred (connect to "
        f"{RELAY}[{ip}]:{port}: Connection timed out)\n"
    )


def denied_line() -> str:
    stamp = time.strftime("%b %d %H:%M:%S")
    return (
        f"{stamp} myhost postfix/smtp[4242]: 1A2B3C4D5E: to=<someone@example.org>, "
        f"relay={RELAY}[198.51.100.1]:587, delay=1, delays=0/0/0.5/0.5, dsn=5.7.1, "
        f"status=bounced (host {RELAY}[198.51.100.1] said: 554 5.7.1 <someone@example.org>: "
        "Relay access denied (in reply to RCPT TO command))\n"
    )


def run_watch(
    cfg: config.Config,
    maillog: Path,
    lines: list[str],
    settle: float = 3.0,
    until: Callable[[], bool] | None = None,
    pause: float = 0.0,
) -> None:
    """Run the watch, append `lines` to the log (`pause` seconds apart), then give it `settle`
    seconds (or until `until()` holds, at most 20 s)."""

    async def scenario() -> None:
        agent = Agent(cfg)
        await agent.sync(SyncOptions())
        task = asyncio.ensure_future(RelayWatch(agent).run())
        await asyncio.sleep(0.3)  # the follower starts at the end of the log
        for line in lines:
            with maillog.open("a") as f:
                f.write(line)
            await asyncio.sleep(pause)
        if until is not None:
            await wait(until, timeout=20)
        else:
            await asyncio.sleep(settle)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and text in r.getMessage()
    ]


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the log every 0.1 s and the queue every 0.2 s (not 2 s and 30 s), so that a test
    sees several looks."""
    monkeypatch.setattr(watch_module, "CHECK_EVERY", 0.2)
    monkeypatch.setattr(watch_module, "POLL_EVERY", 0.1)


def test_forged_lines_without_queued_mail_reconnect_nothing(
    world, caplog: pytest.LogCaptureFixture, quick_checks: None
) -> None:  # type: ignore[no-untyped-def]
    """Issue 11, attack 3: `logger -t 'postfix/smtp[4242]' 'connect to …: Connection timed
    out'` twice (and a refusal naming our address, and more): the queue holds nothing."""
    cfg, dyn, maillog, tmp = world
    (tmp / "queue.json").write_text("")
    caplog.set_level(logging.DEBUG, logger="ddnsagent.relay.watch")
    forged = [timeout_line(), timeout_line(qid="1A2B3C4D5E"), incident_line(OURS)]
    run_watch(cfg, maillog, forged * 5, pause=0.3)
    assert runs(tmp, "runs") == 0  # the reconnect command never ran
    assert runs(tmp, "queue-runs") >= 3  # looked more than once…
    said = warnings(caplog, "not confirmed")
    assert len(said) == 1  # …and said so once
    assert "log line is not confirmed: postfix/smtp[4242]: " in said[0]
    assert ": connect to relay.example.net[198.51.100.1]:587: Connection timed out" in said[0]
    assert Store(cfg.agent.state_dir).load().relay.attempts == []
    assert dyn.record("home.example.net").attempts == 1  # no re-notify either


def test_queued_refusal_of_an_older_address_confirms_nothing(world, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, maillog, tmp = world
    (tmp / "queue.json").write_text(queued(refusal_reason("198.51.100.6")))
    run_watch(cfg, maillog, [incident_line(OURS)])
    assert runs(tmp, "runs") == 0 and runs(tmp, "queue-runs") == 1
    assert len(warnings(caplog, "not confirmed")) == 1


def test_queue_command_failing_means_no_reconnect_and_a_warning(world, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, maillog, tmp = world
    script(
        tmp / "postqueue",
        f"echo -j >> {tmp}/queue-runs\n"
        "echo 'postqueue: fatal: Connect to the Postfix showq service: Permission denied' >&2\n"
        "exit 69\n",
    )
    run_watch(cfg, maillog, [incident_line(OURS)])
    assert runs(tmp, "runs") == 0 and runs(tmp, "queue-runs") == 1
    (said,) = warnings(caplog, "cannot be read")
    assert "Permission denied" in said and "postdrop" in said


def test_queued_refusal_confirms_and_reconnects(world, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg, dyn, maillog, tmp = world
    run_watch(cfg, maillog, [incident_line(OURS)], until=lambda: runs(tmp, "flushes") == 1)
    assert runs(tmp, "queue-runs") == 1 and runs(tmp, "runs") == 1
    assert dyn.record("home.example.net").ipv4 == "198.51.100.8"
    (said,) = warnings(caplog, "the queue confirms it")
    assert "deferred 1A2B3C4D5E: host relay.example.net[198.51.100.1] said: 450" in said


def test_unanswered_connections_confirmed_by_our_own_failure(world, closed: int) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, maillog, tmp = world
    reason = f"connect to {RELAY}[127.0.0.1]:{closed}: Connection timed out"
    (tmp / "queue.json").write_text(queued(reason, reason))
    # Two attempts (two messages); one attempt's records for several recipients count once.
    lines = [timeout_line(closed, qid=qid, ip="127.0.0.1") for qid in ("03866F775", "03866F776")]
    run_watch(cfg, maillog, lines, until=lambda: runs(tmp, "flushes") == 1)
    assert runs(tmp, "runs") == 1


def test_unanswered_connections_but_the_relay_answers_us(world, caplog, listening: int) -> None:  # type: ignore[no-untyped-def]
    """Timeouts in the queue are history if the relay takes our connection now."""
    cfg, _dyn, maillog, tmp = world
    reason = f"connect to {RELAY}[127.0.0.1]:{listening}: Connection timed out"
    (tmp / "queue.json").write_text(queued(reason))
    lines = [timeout_line(listening, qid=q, ip="127.0.0.1") for q in ("03866F775", "03866F776")]
    run_watch(cfg, maillog, lines)
    assert runs(tmp, "runs") == 0
    (said,) = warnings(caplog, "accepts our connection")
    assert f"127.0.0.1 port {listening}" in said


def test_renotify_on_a_log_line_alone_at_most_once_per_ten_minutes(world) -> None:  # type: ignore[no-untyped-def]
    """Forged denials, with forged "sent" lines between them to reset the decider: the
    providers are told again once, not on every line."""
    cfg, dyn, maillog, tmp = world
    (tmp / "queue.json").write_text("")
    lines = [denied_line(), sent_line()] * 5
    run_watch(cfg, maillog, lines, settle=4)
    assert dyn.record("home.example.net").attempts == 2  # the first sync, one re-notify
    assert runs(tmp, "runs") == 0


def test_empty_queue_key_is_refused(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = []\n'
        f'[relay]\nhost = "{RELAY}"\nqueue = []\n',
    )
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    text = str(caught.value)
    assert "queue" in text and '["postqueue", "-j"]' in text


def test_queue_defaults(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = []\n'
        f'[relay]\nhost = "{RELAY}"\n',
    )
    relay = config.load(path).relay
    assert relay is not None
    assert relay.queue == ("postqueue", "-j") and relay.postfix_user == "postfix"
