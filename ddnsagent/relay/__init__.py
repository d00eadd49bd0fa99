"""The mail log as a sensor: how the submission relay is treating our WAN address."""

from ddnsagent.relay.follow import FollowPosition, FollowStats, LogFollower
from ddnsagent.relay.logparse import (
    DEFAULT_RATE_PATTERNS,
    EventKind,
    RelayEvent,
    compile_rate_patterns,
    parse_journal_json,
    parse_line,
)

__all__ = [
    "DEFAULT_RATE_PATTERNS",
    "EventKind",
    "FollowPosition",
    "FollowStats",
    "LogFollower",
    "RelayEvent",
    "compile_rate_patterns",
    "parse_journal_json",
    "parse_line",
]
