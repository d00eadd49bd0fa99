"""The watchdog's rules on plain events."""

from __future__ import annotations

from datetime import UTC, datetime

from ddnsagent.relay.decide import Decider
from ddnsagent.relay.logparse import EventKind, RelayEvent, parse_line

NOW = 1_800_000_000.0
RELAY = "auth.gate-on.net"


def ev(kind: EventKind, at: float = NOW, **kw: object) -> RelayEvent:
    return RelayEvent(
        kind=kind,
        timestamp=datetime.fromtimestamp(at, UTC),
        queue_id="ABC123",
        service="smtp",
        syslog_name="postfix/smtp",
        **kw,  # type: ignore[arg-type]
    )


def decider() -> Decider:
    return Decider(threshold=2, window=900, settle=5)


def test_rate_refusal_naming_current_address_reconnects_at_once() -> None:
    d = decider()
    got = d.observe(ev(EventKind.RATE_LIMITED, limited_ip="198.51.100.7"), "198.51.100.7", NOW)
    assert got is not None and got.action == "reconnect"
    assert "198.51.100.7" in got.reason


def test_rate_refusal_naming_an_old_address_is_ignored() -> None:
    d = decider()
    assert (
        d.observe(ev(EventKind.RATE_LIMITED, limited_ip="198.51.100.7"), "198.51.100.8", NOW)
        is None
    )


def test_real_incident_line() -> None:
    line = (
        "Dec 23 04:02:39 myhost postfix/smtp[29536]: 03866F775: to=<someone@example.org>, "
        "relay=auth.gate-on.net[210.197.72.170]:587, delay=25031, delays=24999/28/0.09/5, "
        "dsn=4.0.0, status=deferred (host auth.gate-on.net[210.197.72.170] said: 450 Error: "
        "too much mail from 122.20.52.249 (in reply to MAIL FROM command))"
    )
    when = datetime(2026, 12, 23, 4, 2, 40)
    event = parse_line(line, RELAY, now=when)
    assert event is not None
    got = decider().observe(event, "122.20.52.249", when.timestamp())
    assert got is not None and got.action == "reconnect"


def test_connection_failures_need_threshold_within_window() -> None:
    d = decider()
    assert d.observe(ev(EventKind.CONNECT_FAILED, NOW - 800), None, NOW) is None
    got = d.observe(ev(EventKind.CONNECT_FAILED, NOW), None, NOW)
    assert got is not None and got.action == "reconnect"
    d = decider()
    assert d.observe(ev(EventKind.CONNECT_FAILED, NOW - 1000), None, NOW) is None  # stale
    assert d.observe(ev(EventKind.CONNECT_FAILED, NOW), None, NOW) is None


def test_failures_far_apart_do_not_add_up() -> None:
    d = decider()
    assert d.observe(ev(EventKind.CONNECT_FAILED, NOW), None, NOW) is None
    later = NOW + 2000
    assert d.observe(ev(EventKind.CONNECT_FAILED, later), None, later) is None


def test_relay_denied_renotifies_first_then_reconnects() -> None:
    d = decider()
    first = d.observe(ev(EventKind.RELAY_DENIED, reply="554 5.7.1 Relay access denied"), None, NOW)
    assert first is not None and first.action == "renotify"
    d.acted("renotify", NOW + 1)
    # A denial logged before the re-notification could take effect does not count.
    assert d.observe(ev(EventKind.RELAY_DENIED, NOW + 2), None, NOW + 2) is None
    second = d.observe(ev(EventKind.RELAY_DENIED, NOW + 30), None, NOW + 30)
    assert second is not None and second.action == "reconnect"


def test_sent_marks_recovery_with_duration() -> None:
    d = decider()
    d.observe(ev(EventKind.RATE_LIMITED, NOW, limited_ip="198.51.100.7"), "198.51.100.7", NOW)
    d.acted("reconnect", NOW + 1)
    got = d.observe(ev(EventKind.SENT, NOW + 42), "198.51.100.8", NOW + 42)
    assert got is not None and got.action == "recovered" and got.duration == 42
    assert d.observe(ev(EventKind.SENT, NOW + 50), "198.51.100.8", NOW + 50) is None


def test_sent_without_trouble_is_nothing() -> None:
    assert decider().observe(ev(EventKind.SENT), "198.51.100.7", NOW) is None


def test_bounce_meter_counts_last_hour() -> None:
    d = decider()
    for i in range(5):
        d.observe(ev(EventKind.BOUNCE_GENERATED, NOW - 4000 + i), None, NOW)  # too old
    for i in range(7):
        d.observe(ev(EventKind.BOUNCE_GENERATED, NOW - 100 + i), None, NOW)
    assert d.bounce_rate(NOW) == 7
    assert d.bounce_rate(NOW + 3600) == 0


def test_crafted_recipient_gives_no_decision() -> None:
    line = (
        'Dec 23 04:02:39 myhost postfix/smtp[1]: 03866F775: to=<"x said: 450 Error: too much '
        'mail from 198.51.100.7 (y"@example.org>, relay=auth.gate-on.net[210.197.72.170]:587, '
        "delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 ok)"
    )
    event = parse_line(line, RELAY, now=datetime(2026, 12, 23, 5, 0))
    decision = None if event is None else decider().observe(event, "198.51.100.7", NOW)
    assert decision is None
