"""SOA serial policies."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddnsagent.errors import ZoneEditError
from ddnsagent.zones.edit.serial import SERIAL_POLICIES, next_serial

DAY = datetime.date(2024, 1, 1)
NOW = 1_704_067_200


@pytest.mark.parametrize(
    ("policy", "old", "expected", "why"),
    [
        ("date", 2024010101, 2024010102, "same day: nn + 1"),
        ("date", 2024010100, 2024010101, "same day, first edit"),
        ("date", 2023123199, 2024010100, "earlier day: today's 00"),
        ("date", 1, 2024010100, "small counter: today's 00"),
        ("date", 2024010199, 2024010200, "nn exhausted: old + 1"),
        ("date", 2030010100, 2030010101, "already in the future: old + 1"),
        ("date", 4294967295, 0, "wraps per RFC 1982"),
        ("increment", 0, 1, "plain counter"),
        ("increment", 2024010101, 2024010102, "date-looking counter"),
        ("increment", 4294967295, 0, "wraps per RFC 1982"),
        ("unixtime", 2024010101, 2024010102, "old is ahead of the clock: old + 1"),
        ("unixtime", 1_000_000_000, NOW, "clock ahead: now"),
        ("unixtime", NOW, NOW + 1, "two edits in one second"),
    ],
)
def test_policy_table(policy: str, old: int, expected: int, why: str) -> None:
    assert next_serial(old, policy, today=DAY, now=NOW) == expected, why  # type: ignore[arg-type]


@given(
    old=st.integers(0, 2**32 - 1),
    policy=st.sampled_from(SERIAL_POLICIES),
    today=st.dates(datetime.date(1970, 1, 1), datetime.date(2100, 12, 31)),
    now=st.integers(0, 2**31 - 1),
)
def test_new_serial_is_greater_in_serial_arithmetic(
    old: int, policy: str, today: datetime.date, now: int
) -> None:
    try:
        new = next_serial(old, policy, today=today, now=now)  # type: ignore[arg-type]
    except ZoneEditError:
        # Only a jump of 2**31 or more is refused.
        assert policy != "increment"
        return
    assert 0 <= new <= 4294967295
    assert 0 < (new - old) % 2**32 < 2**31


def test_out_of_range_old_serial_and_unknown_policy() -> None:
    with pytest.raises(ZoneEditError):
        next_serial(2**32, "increment", today=DAY, now=NOW)
    with pytest.raises(ValueError):
        next_serial(1, "weekly", today=DAY, now=NOW)  # type: ignore[arg-type]
