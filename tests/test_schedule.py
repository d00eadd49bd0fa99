"""The timing rules: back-off, reconnect cooldown and daily cap, the daemon's trigger."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ddnsagent import schedule
from ddnsagent.store import Relay


@dataclass(frozen=True)
class Limits:
    cooldown: float = 1800.0
    max_per_day: int = 4


def test_backoff_doubles_from_five_minutes_to_six_hours_with_jitter() -> None:
    for failures, base in (
        (1, 300),
        (2, 600),
        (3, 1200),
        (7, 19200),
        (8, 6 * 3600),
        (50, 6 * 3600),
    ):
        waits = [schedule.backoff(failures) for _ in range(200)]
        assert all(0.9 * base <= w <= 1.1 * base for w in waits), failures
        assert len(set(waits)) > 1  # jittered


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("attempts", "expect"),
    [
        ([], None),
        ([NOW - 100], "in cooldown for 1700s more (cooldown = 1800s)"),
        ([NOW - 1800], None),
        ([NOW - 80000 + i * 2000 for i in range(4)], "already 4 reconnects in 24 h"),
        ([NOW - 90000 + i * 2000 for i in range(4)], None),  # older than a day: forgotten
    ],
)
def test_reconnect_refusal(attempts: list[float], expect: str | None) -> None:
    relay = Relay(attempts=attempts)
    why = schedule.refusal_to_reconnect(relay, Limits(), NOW)
    assert (why is None) == (expect is None)
    if expect is not None:
        assert why is not None and why.startswith(expect)


def test_the_daemon_trigger_has_the_interval_and_the_jitter() -> None:
    trigger = schedule.sync_trigger(300, 30)
    assert trigger.interval.total_seconds() == 300 and trigger.jitter == 30
    assert schedule.sync_trigger(300, 0).jitter is None
