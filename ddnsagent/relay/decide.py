"""What a stream of relay events means for us: pure, so every rule is tested on plain data.

Rules (times are the events' own log times when they have one, so a restart's catch-up does not
turn an old refusal into a fresh one):
- a rate refusal that names our *current* address → reconnect at once (the relay told us
  exactly who it blocks); one naming another address is history — we already moved. One naming
  our current IPv6 address → re-notify the IPv6 providers; a reconnect only with
  `reconnect_on_ipv6` (on FLET'S, IPv6 comes over IPoE and a PPPoE reconnect does not change it);
- `threshold` connection *attempts* towards the relay within `window` → reconnect. An attempt
  is counted once: "delivery temporarily suspended: …" records are qmgr's echoes of a failure it
  cached (no connection tried), and one attempt writes a record per recipient (same smtp
  process, same queue id);
- "Relay access denied" / "Client host rejected" → our address is not (or no longer) known to
  the relay: re-notify the providers first (only the IPv6 ones when the refusal names our IPv6
  address; nothing when it names neither of ours); a denial that still arrives `settle` after
  that re-notification → reconnect;
- TLS handshake failures, TLS required but not offered, SASL login refused: no new address
  cures them; one warning per episode saying what to check (an episode ends at a "sent");
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
# Records of one delivery attempt (one per recipient) are written together; the same smtp
# process and queue id this long after the first are a later attempt.
ATTEMPT_SPAN = 60.0
MAX_ATTEMPTS_KEPT = 64

#: Failures a new address does not cure: what the warning tells the user to check.
CHECK = {
    EventKind.TLS_FAILED: (
        "the TLS handshake with the relay failed: check Postfix's smtp_tls_* settings "
        "(smtp_tls_security_level, protocols, ciphers, smtp_tls_CAfile) against what the relay "
        "supports (`posttls-finger '[relay]:587'` shows the handshake); a new address does "
        "not help"
    ),
    EventKind.TLS_NOT_OFFERED: (
        "Postfix requires TLS but the relay did not offer STARTTLS: check relayhost's host "
        "and port (submission, 587, offers STARTTLS; port 465 needs smtp_tls_wrappermode = "
        "yes) and smtp_tls_security_level; a new address does not help"
    ),
    EventKind.SASL_FAILED: (
        "the relay refused our login (SASL): check the user name and password for the relay "
        "in smtp_sasl_password_maps (run postmap after editing) and that the account is "
        "active; a new address does not help"
    ),
}


@dataclass(frozen=True)
class Decision:
    action: str  # "reconnect" | "renotify" | "recovered" | "warn"
    reason: str
    at: float  # the event's time
    duration: float | None = None  # "recovered": seconds from the first signal
    signal: EventKind | None = None  # the kind of event behind it
    claim: str = ""  # the log line's own words, to name it when nothing confirms it
    family: int | None = None  # "renotify": only this family's providers (None: all)


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
    decision: Decision,
    queued: Sequence[QueuedFailure],
    current: str | None,
    current6: str | None = None,
) -> tuple[QueuedFailure | None, list[QueuedFailure]]:
    """What in the queue backs a reconnect: a recipient that confirms it on its own, else those
    that confirm it only if our own connection to the relay fails too.

    On its own: a refusal naming our current address; a relay that took the connection and then
    refused or dropped us; "Relay access denied" when that is what the decision is about (we
    re-notified already). Connections that were never answered (timed out, refused) need our own
    attempt as well: if we can connect now, it is not a block.
    """
    ours = {a for a in (current, current6) if a is not None}
    unanswered: list[QueuedFailure] = []
    for failure in queued:
        if failure.kind is EventKind.RATE_LIMITED:
            if failure.limited_ip in ours:
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
    def __init__(
        self, threshold: int, window: float, settle: float, reconnect_on_ipv6: bool = False
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.settle = settle
        self.reconnect_on_ipv6 = reconnect_on_ipv6
        # Attempts counted: (program, pid, queue id) → time, to count one attempt once.
        self.attempts: dict[tuple[str, int, str], float] = {}
        self.warned: set[EventKind] = set()  # warnings given in this episode
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
        self,
        event: RelayEvent,
        current: str | None,
        now: float | None = None,
        *,
        current6: str | None = None,
    ) -> Decision | None:
        """`current`: our IPv4 address now; `current6`: our IPv6 address now."""
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
        if event.kind in CHECK:
            if event.kind in self.warned:
                return None
            self.warned.add(event.kind)
            return Decision("warn", CHECK[event.kind], at, signal=event.kind, claim=claim(event))
        if event.kind is EventKind.RATE_LIMITED:
            said = event.reply or event.reason
            if current6 is not None and event.limited_ip == current6:
                if self.reconnect_on_ipv6:
                    return self._trouble(
                        event, at, "reconnect", f"relay refused {current6}: {said}"
                    )
                return self._trouble(
                    event, at, "renotify", f"relay refused {current6} (IPv6): {said}", family=6
                )
            if current is None or event.limited_ip != current:
                return None
            return self._trouble(event, at, "reconnect", f"relay refused {current}: {said}")
        if event.kind is EventKind.CONNECT_FAILED:
            if event.echo or not self._new_attempt(event, at):
                return None
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
            family = None
            if event.limited_ip is not None:  # "Client host rejected" names the client
                if current6 is not None and event.limited_ip == current6:
                    family = 6
                elif event.limited_ip != current:
                    return None  # an address we no longer have: history
            if family == 6 and not self.reconnect_on_ipv6:
                if self.renotified_at is not None:
                    return None
                return self._trouble(
                    event,
                    at,
                    "renotify",
                    f"relay denied {current6} (IPv6): {event.reply}",
                    family=6,
                )
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

    def _trouble(
        self, event: RelayEvent, at: float, action: str, reason: str, family: int | None = None
    ) -> Decision:
        if self.trouble_since is None:
            self.trouble_since = at
        return Decision(action, reason, at, signal=event.kind, claim=claim(event), family=family)

    def _new_attempt(self, event: RelayEvent, at: float) -> bool:
        """Whether the record is a connection attempt not counted yet: the records one smtp
        process writes for the recipients of one message, together, are one attempt."""
        if event.pid is None:
            return True
        key = (event.syslog_name, event.pid, event.queue_id)
        first = self.attempts.get(key)
        if first is not None and abs(at - first) <= ATTEMPT_SPAN:
            return False
        for old, when in list(self.attempts.items()):
            if when < at - ATTEMPT_SPAN:
                del self.attempts[old]
        if len(self.attempts) >= MAX_ATTEMPTS_KEPT:
            self.attempts.pop(next(iter(self.attempts)))
        self.attempts[key] = at
        return True

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
        self.warned.clear()  # mail goes out again: the next failure is a new episode
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
