"""When things may happen: the sync interval with its jitter, a failing provider's back-off, and
the reconnect's cooldown and daily cap. Pure rules over numbers and store records, in one place,
so that the daemon, the orchestrator and the relay watchdog cannot drift apart."""

from __future__ import annotations

import random
from typing import Any, Protocol

from ddnsagent.store import Relay

BACKOFF_FIRST = 300.0
BACKOFF_MAX = 6 * 3600.0
DAY = 86400.0


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: doubling from 5 min up to 6 h, ±10 %
    so that many agents behind one outage do not come back in step."""
    doublings = min(max(failures - 1, 0), 32)  # past the cap anyway; a huge count stays cheap
    base = min(BACKOFF_FIRST * 2**doublings, BACKOFF_MAX)
    return base * random.uniform(0.9, 1.1)


class ReconnectLimits(Protocol):
    """What the rule needs of `[reconnect]`."""

    @property
    def cooldown(self) -> float: ...

    @property
    def max_per_day(self) -> int: ...


def recent_attempts(relay: Relay, now: float) -> list[float]:
    """The reconnect attempts of the last 24 h; older ones no longer count."""
    return [t for t in relay.attempts if t > now - DAY]


def refusal_to_reconnect(relay: Relay, limits: ReconnectLimits, now: float) -> str | None:
    """Why a reconnect may not run now (cooldown, daily cap), or None."""
    attempts = recent_attempts(relay, now)
    if attempts and now < attempts[-1] + limits.cooldown:
        left = int(attempts[-1] + limits.cooldown - now)
        return f"in cooldown for {left}s more (cooldown = {int(limits.cooldown)}s)"
    if len(attempts) >= limits.max_per_day:
        return f"already {len(attempts)} reconnects in 24 h (max_per_day = {limits.max_per_day})"
    return None


def sync_trigger(interval: float, jitter: float) -> Any:
    """The daemon's schedule: every `interval` seconds, each run moved by up to ±`jitter`."""
    from apscheduler.triggers.interval import IntervalTrigger  # not ours; only the daemon runs it

    return IntervalTrigger(seconds=interval, jitter=int(jitter) or None)
