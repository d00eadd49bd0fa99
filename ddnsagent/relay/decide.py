"""What a stream of relay events means for us: pure, so every rule is tested on plain data.

Rules (times are the events' own log times when they have one, so a restart's catch-up does not
turn an old refusal into a fresh one):
- a rate refusal that names our *current* address → reconnect at once (the relay told us
  exactly who it blocks); one naming another address is history — we already moved;
- `threshold` connection failures towards the relay within `window` → reconnect;
- "Relay access denied" → our address is not (or no longer) known to the relay: re-notify the
  providers first; a denial that still arrives `settle` after that re-notification → reconnect;
- while a recovery is pending, the first message sent through the relay marks the recovery;
- bounces the server generates itself are counted per hour (the backscatter meter).
Events older than `window` are ignored.

A log line is a claim anyone who can write to syslog may make, so a "reconnect" decision is only
a reason to look: `backing()` says what in Postfix's queue backs it (relay/watch.py reads the
queue and, for unanswered connections, tries one of its own).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ddnsagent.relay.logparse import EventKind, QueuedFailure, RelayEvent

HOUR = 3600.0
MAX_BOUNCES = 100_000


@dataclass(frozen=True)
class Decision:
    action: str  # "reconnect" | "renotify" | "recovered"
    reason: str
    at: float  # the event's time
    duration: float | None = None  # "recovered": seconds from the first signal
    signal: EventKind | None = None  # the kind of event behind it
    claim: str = ""  # the log line's own words, to name it when nothing confirms it


CLAIM_CHARS = 200


def claim(event: RelayEvent) -> str:
    """The line that made the decision, in a few words fit for a log: who wrote it and its
    reason, cut short, with control characters replaced (the text is anyone's)."""
    who = event.syslog_name + (f"[{event.pid}]" if event.pid is not None else "")
    text = f"{who}: {event.queue_id}: {event.reason}"
    if len(text) > CLAIM_CHARS:
        text = text[: CLAIM_CHARS - 1] + "…"
    return "".join(c if c.isprintable() else "?" for c in text)


def backing(
    decision: Decision, queued: Sequence[QueuedFailure], current: str | None
) -> tuple[QueuedFailure | None, list[QueuedFailure]]:
    """What in the queue backs a reconnect: a recipient that confirms it on its own, else those
    that confirm it only if our own connection to the relay fails too.

    On its own: a refusal naming our current address; a relay that took the connection and then
    refused or dropped us; "Relay access denied" when that is what the decision is about (we
    re-notified already). Connections that were never answered (timed out, refused) need our own
    attempt as well: if we can connect now, it is not a block.
    """
    unanswered: list[QueuedFailure] = []
    for failure in queued:
        if failure.kind is EventKind.RATE_LIMITED:
            if current is not None and failure.limited_ip == current:
                return failure, []
        elif failure.kind is EventKind.CONNECT_FAILED:
            if not failure.unanswered:
                return failure, []
            unanswered.append(failure)
        elif failure.kind is EventKind.RELAY_DENIED and decision.signal is EventKind.RELAY_DENIED:
            return failure, []
    return None, unanswered


def event_time(event: RelayEvent, now: float) -> float:
    if event.timestamp is None:
        return now
    try:
        return min(event.timestamp.timestamp(), now)
    except (OverflowError, OSError, ValueError):
        return now


class Decider:
    def __init__(self, threshold: int, window: float, settle: float) -> None:
        self.threshold = threshold
        self.window = window
        self.settle = settle
        # Bounded whatever arrives: only `threshold` failures matter, and a count of bounces.
        self.failures: deque[float] = deque(maxlen=threshold)
        self.bounces: deque[float] = deque(maxlen=MAX_BOUNCES)
        self.renotified_at: float | None = None
        self.trouble_since: float | None = None  # first signal of the current episode
        self.recovering = False  # a reconnect or re-notification ran; waiting for a "sent"

    def bounce_rate(self, now: float) -> int:
        """Bounces generated in the last hour."""
        while self.bounces and self.bounces[0] < now - HOUR:
            self.bounces.popleft()
        return len(self.bounces)

    def observe(
        self, event: RelayEvent, current: str | None, now: float | None = None
    ) -> Decision | None:
        now = time.time() if now is None else now
        at = event_time(event, now)
        if event.kind is EventKind.BOUNCE_GENERATED:
            if at >= now - HOUR:
                self.bounces.append(at)
            return None
        if event.kind is EventKind.SENT:
            return self._sent(at)
        if at < now - self.window:
            return None  # stale: read during catch-up, long over
        if event.kind is EventKind.RATE_LIMITED:
            if current is None or event.limited_ip != current:
                return None
            return self._trouble(
                event, at, "reconnect", f"relay refused {current}: {event.reply or event.reason}"
            )
        if event.kind is EventKind.CONNECT_FAILED:
            self.failures.append(at)
            while self.failures and self.failures[0] < at - self.window:
                self.failures.popleft()
            if len(self.failures) < self.threshold:
                return None
            return self._trouble(
                event,
                at,
                "reconnect",
                f"{len(self.failures)} failed connections to the relay within "
                f"{int(self.window)}s: {event.reason}",
            )
        if event.kind is EventKind.RELAY_DENIED:
            if self.renotified_at is not None and at >= self.renotified_at + self.settle:
                return self._trouble(
                    event,
                    at,
                    "reconnect",
                    f"relay still denies us after re-notifying: {event.reply}",
                )
            if self.renotified_at is not None:
                return None  # queued before the re-notification took effect
            return self._trouble(event, at, "renotify", f"relay denied access: {event.reply}")
        return None

    def _trouble(self, event: RelayEvent, at: float, action: str, reason: str) -> Decision:
        if self.trouble_since is None:
            self.trouble_since = at
        return Decision(action, reason, at, signal=event.kind, claim=claim(event))

    def renotified_earlier(self, when: float) -> None:
        """A re-notify was due but one ran at `when`, recently: judge later denials against
        that one (the failures counted meanwhile stay counted)."""
        self.recovering = True
        self.renotified_at = when

    def dismissed(self) -> None:
        """A decision was not confirmed: the episode it opened did not happen."""
        if not self.recovering:
            self.trouble_since = None

    def _sent(self, at: float) -> Decision | None:
        if not self.recovering or self.trouble_since is None:
            return None
        duration = max(at - self.trouble_since, 0.0)
        self.reset()
        return Decision("recovered", "a message went out through the relay", at, duration)

    def acted(self, action: str, when: float) -> None:
        """The watchdog carried out `action`; later signals are judged against it."""
        self.recovering = True
        self.failures.clear()
        if action == "renotify":
            self.renotified_at = when
        else:
            self.renotified_at = None

    def reset(self) -> None:
        self.failures.clear()
        self.renotified_at = None
        self.trouble_since = None
        self.recovering = False
