"""Notifications to people — chat, mail, push: which events are worth a message, and its words.

The events are chosen in `[notify] events` (ddnsagent.outputs.notify_settings); delivery through
apprise, off the event loop, is ddnsagent.outputs.apprise_sender's job. Every method here returns
at once and never raises. Titles and bodies pass the secret mask before they are queued: a
provider's message may quote an answer that echoes a token.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable

from ddnsagent.outcome import ReconnectOutcome, SyncReport
from ddnsagent.outputs.apprise_sender import AppriseSender, Message, load_targets
from ddnsagent.outputs.notify_settings import EVENTS, NotifyConfig
from ddnsagent.secrets import redact

log = logging.getLogger(__name__)

MAX_TITLE = 250
MAX_BODY = 4000


class Notifier:
    """Turns what the daemon sees into messages for the events the user chose."""

    def __init__(
        self,
        sender: AppriseSender | None = None,  # None: notifications are off
        events: Iterable[str] = EVENTS,
        host: str | None = None,
    ) -> None:
        self.sender = sender
        self.events = frozenset(events)
        self.host = host or socket.gethostname()
        self._stopped: set[tuple[str, int]] = set()  # targets already reported stopped

    @property
    def enabled(self) -> bool:
        return self.sender is not None

    @classmethod
    def from_config(cls, cfg: NotifyConfig, previous: Notifier | None = None) -> Notifier:
        """Read the URLs and load them into apprise. Never raises: on trouble the error is
        logged and the notifier is disabled (notifications are not worth a dead daemon).
        `previous` (on reload) passes on which stops were already reported."""
        targets = load_targets(cfg)
        notifier = cls(AppriseSender(targets) if targets is not None else None, cfg.events)
        if previous is not None:
            notifier._stopped = set(previous._stopped)
        if targets is not None:
            events = ", ".join(sorted(cfg.events))
            log.info("notifications (%s) to %d target(s)", events, len(targets))
        return notifier

    @classmethod
    async def load(cls, cfg: NotifyConfig, previous: Notifier | None = None) -> Notifier:
        """from_config() in a thread: apprise's first use loads all its plugins, which takes
        a few hundred milliseconds that the event loop should not wait for."""
        return await asyncio.to_thread(cls.from_config, cfg, previous)

    # -- the events

    def event(self, kind: str, title: str, body: str, level: str = "info") -> bool:
        """Queue a message if `kind` is one the user wants; True when queued."""
        if kind not in self.events or self.sender is None:
            return False
        title, body = redact(title)[:MAX_TITLE], redact(body)[:MAX_BODY]
        return self.sender.submit(Message(kind, title, body, level))

    def observe_sync(self, report: SyncReport) -> None:
        """`address` for each family whose address changed, `stopped` for a target that
        stopped (once per stop, until it runs again)."""
        for family in report.changed:
            detection = report.detections.get(family)
            if detection is None or detection.address is None:
                continue
            lines = [f"IPv{family} is now {detection.address} (from {detection.source})."]
            for t in report.targets:
                if t.family == family:
                    lines.append(f"{t.name}: {t.action}: {t.message}")
            self.event(
                "address",
                f"{self.host}: new IPv{family} address {detection.address}",
                "\n".join(lines),
                "info",
            )
        for t in report.targets:
            key = (t.name, t.family)
            if t.action != "stopped":
                self._stopped.discard(key)
                continue
            if key in self._stopped:
                continue
            self._stopped.add(key)
            body = t.message + (f"\nTo fix: {t.fix}" if t.fix else "")
            self.event("stopped", f"{self.host}: {t.name} (IPv{t.family}) stopped", body, "failure")

    def observe_reconnect(self, outcome: ReconnectOutcome) -> None:
        """A reconnect that ran; one refused by the cooldown or daily cap is only logged."""
        if not outcome.done:
            return
        if outcome.new is not None and outcome.new != outcome.old:
            title, level = f"{self.host}: reconnected, new address {outcome.new}", "success"
        else:
            title, level = f"{self.host}: reconnect did not change the address", "warning"
        self.event("reconnect", title, outcome.message, level)

    def backscatter(self, rate: int, limit: int) -> None:
        self.event(
            "backscatter",
            f"{self.host}: {rate} bounces in the last hour",
            f"This server generated {rate} bounces in the last hour (warning above {limit}). "
            "Bounces to forged senders use up the relay's per-address limit; check the "
            "recipient restrictions (`ddnsagent doctor`).",
            "warning",
        )

    def relay_problem(self, kind: str, check: str, line: str) -> None:
        """The relay refuses us for a reason a reconnect does not cure (relay/decide.CHECK):
        once per episode, as the watchdog warns."""
        self.event(
            "relay",
            f"{self.host}: the relay refuses our mail ({kind.replace('_', ' ')})",
            f"{check}.\nThe mail log said: {line}",
            "failure",
        )

    def dnsbl(self, address: str, verdict: str, text: str) -> None:
        """The DNSBL check found our address listed, or a list refused the question (once per
        check; ddnsagent.dnsbl.watch decides when). A policy listing is no news."""
        title = (
            f"{self.host}: {address} is listed on a DNS blocklist"
            if verdict == "listed"
            else f"{self.host}: the DNSBL check of {address} did not work"
        )
        self.event("dnsbl", title, text, "failure" if verdict == "listed" else "warning")

    # -- the end

    def close(self, timeout: float = 0.0) -> bool:
        """No more events; what is queued is still sent. Waits up to `timeout` seconds for
        that; True when nothing is left to send."""
        return True if self.sender is None else self.sender.close(timeout)

    async def aclose(self, timeout: float) -> bool:
        """close() without blocking the event loop: for the daemon's exit."""
        return True if self.sender is None else await self.sender.aclose(timeout)
