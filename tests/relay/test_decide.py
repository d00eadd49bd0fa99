"""The watchdog's rules on plain events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ddnsagent.relay.decide import Decider, Decision, backing
from ddnsagent.relay.logparse import EventKind, QueuedFailure, RelayEvent, parse_line

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


# --- issue 12: attempts, not echoes; failures a reconnect does not cure; IPv6 ---------------

LAB = "198.51.100.1"


def lab_lines(stamp: str = "Nov 30 20:17:47") -> list[str]:
    """What Postfix 3.7 wrote in the e2e lab for two queued messages and one real timeout
    (initial_destination_concurrency = 1): smtp's bare line and record, then error's echo."""
    at = "198.51.100.1[198.51.100.1]:587"
    return [
        f"{stamp} home postfix/smtp[30850]: connect to {at}: Connection timed out",
        f"{stamp} home postfix/smtp[30850]: 0831921A134: to=<bob@remote.example>, relay=none,"
        " delay=5, delays=0.02/0.01/5/0, dsn=4.4.1, status=deferred (connect to"
        f" {at}: Connection timed out)",
        f"{stamp} home postfix/error[31071]: 0BA2F21A060: to=<bob@remote.example>, relay=none,"
        " delay=5, delays=0.01/5/0/0, dsn=4.4.1, status=deferred (delivery temporarily"
        f" suspended: connect to {at}: Connection timed out)",
    ]


def test_two_queued_messages_one_real_timeout_do_not_reach_threshold_two() -> None:
    when = datetime(2026, 11, 30, 20, 17, 48)
    d = decider()
    for line in lab_lines():
        event = parse_line(line, LAB, now=when)
        assert d.observe(event, None, when.timestamp()) is None if event else True
    assert len(d.failures) == 1
    # A second real attempt (another message, another record) does reach it.
    later = lab_lines("Nov 30 20:18:10")[1].replace("0831921A134", "0F06E21A52B")
    event = parse_line(later, LAB, now=when + timedelta(minutes=1))
    got = d.observe(event, None, when.timestamp() + 60) if event else None
    assert got is not None and got.action == "reconnect"


def test_one_attempt_for_several_recipients_counts_once() -> None:
    d = decider()
    same = {"pid": 30850, "reason": "connect to relay: Connection timed out"}
    assert d.observe(ev(EventKind.CONNECT_FAILED, NOW, **same), None, NOW) is None
    assert d.observe(ev(EventKind.CONNECT_FAILED, NOW, **same), None, NOW) is None
    assert len(d.failures) == 1
    # The same smtp process on the same message minutes later: a new attempt.
    got = d.observe(ev(EventKind.CONNECT_FAILED, NOW + 300, **same), None, NOW + 300)
    assert got is not None and got.action == "reconnect"


def test_echoes_never_count() -> None:
    d = decider()
    for i in range(5):
        assert d.observe(ev(EventKind.CONNECT_FAILED, NOW + i, echo=True), None, NOW + i) is None
    assert len(d.failures) == 0


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (EventKind.TLS_FAILED, "smtp_tls_"),
        (EventKind.TLS_NOT_OFFERED, "STARTTLS"),
        (EventKind.SASL_FAILED, "smtp_sasl_password_maps"),
    ],
)
def test_failures_no_reconnect_cures_warn_once_per_episode(kind: EventKind, words: str) -> None:
    d = decider()
    got = d.observe(ev(kind, NOW), "198.51.100.7", NOW)
    assert got is not None and got.action == "warn" and got.signal is kind
    assert words in got.reason and "a new address does not help" in got.reason
    for i in range(1, 4):  # the same failure again: the same episode, no new warning
        assert d.observe(ev(kind, NOW + i), "198.51.100.7", NOW + i) is None
    assert d.trouble_since is None and not d.failures  # nothing to reconnect for
    d.observe(ev(EventKind.SENT, NOW + 10), "198.51.100.7", NOW + 10)
    again = d.observe(ev(kind, NOW + 20), "198.51.100.7", NOW + 20)
    assert again is not None and again.action == "warn"


def test_each_kind_is_its_own_warning() -> None:
    d = decider()
    kinds = (EventKind.TLS_FAILED, EventKind.TLS_NOT_OFFERED, EventKind.SASL_FAILED)
    got = [d.observe(ev(k, NOW), None, NOW) for k in kinds]
    assert [g.signal for g in got if g is not None] == list(kinds)


V4, V6 = "198.51.100.7", "2001:db8::7"


def test_rate_refusal_naming_our_ipv6_address_renotifies_ipv6_only() -> None:
    d = decider()
    event = ev(EventKind.RATE_LIMITED, limited_ip=V6, reply=f"450 too much mail from {V6}")
    got = d.observe(event, V4, NOW, current6=V6)
    assert got is not None and (got.action, got.family) == ("renotify", 6)
    assert V6 in got.reason
    # Without our IPv6 address known, or naming another one: ignored as before.
    assert decider().observe(event, V4, NOW) is None
    assert decider().observe(event, V4, NOW, current6="2001:db8::8") is None


def test_ipv6_refusal_reconnects_only_when_opted_in() -> None:
    d = Decider(threshold=2, window=900, settle=5, reconnect_on_ipv6=True)
    event = ev(EventKind.RATE_LIMITED, limited_ip=V6, reply=f"450 too much mail from {V6}")
    got = d.observe(event, V4, NOW, current6=V6)
    assert got is not None and got.action == "reconnect" and got.family is None


def test_client_host_rejected_names_the_family() -> None:
    reply = f"554 5.7.1 <unknown[{V6}]>: Client host rejected: Access denied"
    got = decider().observe(
        ev(EventKind.RELAY_DENIED, reply=reply, limited_ip=V6), V4, NOW, current6=V6
    )
    assert got is not None and (got.action, got.family) == ("renotify", 6)
    got = decider().observe(ev(EventKind.RELAY_DENIED, reply=reply, limited_ip=V4), V4, NOW)
    assert got is not None and (got.action, got.family) == ("renotify", None)
    # Naming neither of our current addresses: history.
    old = ev(EventKind.RELAY_DENIED, reply=reply, limited_ip="198.51.100.9")
    assert decider().observe(old, V4, NOW, current6=V6) is None


def test_queue_backs_an_ipv6_refusal_when_opted_in() -> None:
    failure = QueuedFailure(
        EventKind.RATE_LIMITED, "1A2B", "deferred", "relay", LAB, 587, "…", limited_ip=V6
    )
    decision = Decision("reconnect", "r", NOW, signal=EventKind.RATE_LIMITED)
    assert backing(decision, [failure], V4) == (None, [])
    assert backing(decision, [failure], V4, V6) == (failure, [])
