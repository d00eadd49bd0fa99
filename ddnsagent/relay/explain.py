"""`ddnsagent relay explain`: the watchdog's reading of mail-log lines, shown without an incident.

Each line goes through the parser (logparse) and one decider (decide), in order, exactly as the
daemon's watch feeds them; what this adds is the words: what the parser saw in the line (or why
it saw nothing) and what the watchdog would do and why. A line is judged as the daemon judges it
when it reads the line as it is written: at the line's own time, so an old excerpt reads like a
live one. A decision to reconnect is what the daemon checks against Postfix's queue; so does
this, reading the queue once (`[relay] queue`) when the first such decision comes up.
"""

from __future__ import annotations

import collections
import errno
import os
import stat
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ddnsagent.errors import ConfigError, DdnsagentError
from ddnsagent.relay.decide import Decider, Decision, backing, event_time
from ddnsagent.relay.logparse import (
    DEFAULT_RATE_PATTERNS,
    EventKind,
    QueuedFailure,
    RelayEvent,
    compile_rate_patterns,
    parse_line,
    relay_address,
    why_no_event,
)
from ddnsagent.relay.settings import ReconnectConfig, RelayConfig
from ddnsagent.relay.sources import QueueReading, read_queue
from ddnsagent.schedule import refusal_to_reconnect
from ddnsagent.store import Relay, Store

if TYPE_CHECKING:
    import re

MAX_LAST = 10_000  # lines `--last` may ask for
MAX_READ = 64 << 20  # bytes of a log (or stdin) looked at, from its end
SHOWN_CHARS = 220  # of each line, in the output
_CHUNK = 1 << 16


@dataclass
class Explained:
    """One line: as shown (cut short, control characters replaced), the parser's view, the
    watchdog's decision, and the action the decision names ("" for none)."""

    number: int
    shown: str
    parsed: str
    verdict: str
    action: str = ""
    kind: str = ""


@dataclass
class Situation:
    """What the judgement depends on besides the lines: our current addresses (as the state
    has them, or given with --address) and the reconnect record (cooldown, daily cap)."""

    current4: str | None = None
    current6: str | None = None
    relay_state: Relay = field(default_factory=Relay)
    read_queue: bool = True


def shown(line: str) -> str:
    """A log line for a terminal: anyone may have written it, so no control character gets
    through (an escape sequence would rewrite the screen) and it is cut short."""
    text = line.rstrip("\r\n")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def tail_lines(path: Path, last: int) -> list[str]:
    """The last `last` lines of a log file that are neither blank nor comments (`#`), read
    from its end (at most MAX_READ bytes); ConfigError naming the file and the fix if it
    cannot be read."""
    try:
        # Non-blocking: a FIFO given by mistake must not hang the command at the open. No
        # symlink followed: root runs this on logs in directories a log group may write, and a
        # planted link would have root print another file's lines.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(path, "", "is not a regular file", "give the mail log file")
            return _tail(f, last)
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file", "give the mail log Postfix writes") from None
    except PermissionError:
        raise ConfigError(
            path,
            "",
            "cannot be read by this user",
            "run as root or as a user of the log's group (Debian: adm)",
        ) from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory", "give the mail log file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                path, "", "is a symbolic link, not followed", "give the log file itself"
            ) from None
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None


def stdin_lines(last: int, stream: BinaryIO | None = None) -> list[str]:
    """The last `last` lines of standard input (at most MAX_READ bytes are read)."""
    source = stream if stream is not None else sys.stdin.buffer
    kept: collections.deque[str] = collections.deque(maxlen=last)
    data = source.read(MAX_READ)
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.strip() and not line.startswith("#"):
            kept.append(line)
    return list(kept)


def _tail(f: BinaryIO, last: int) -> list[str]:
    end = f.seek(0, 2)
    start = end
    chunks: list[bytes] = []
    newlines = 0
    # Chunks from the end until enough lines are in (bounded by MAX_READ); twice as many as
    # asked, for the blank and comment lines among them.
    while start > 0 and end - start < MAX_READ and newlines <= last * 2:
        step = min(_CHUNK, start, MAX_READ - (end - start))
        start -= step
        f.seek(start)
        chunk = f.read(step)
        newlines += chunk.count(b"\n")
        chunks.append(chunk)
    data = b"".join(reversed(chunks))
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # begun in the middle of a line
    kept = [line for line in lines if line.strip() and not line.startswith("#")]
    return kept[-last:] if last else []


class Explainer:
    """The parser and one decider, fed line by line as the daemon's watch feeds them."""

    def __init__(
        self, relay: RelayConfig, reconnect: ReconnectConfig | None, situation: Situation
    ) -> None:
        self.relay = relay
        self.reconnect = reconnect
        self.situation = situation
        self.patterns: tuple[re.Pattern[str], ...] = DEFAULT_RATE_PATTERNS + compile_rate_patterns(
            relay.patterns
        )
        self.decider = Decider(relay.threshold, relay.window, relay.settle, relay.reconnect_on_ipv6)
        self.queue: QueueReading | None = None  # read at the first decision to reconnect

    async def explain(self, lines: Iterable[str]) -> list[Explained]:
        return [await self.one(number, line) for number, line in enumerate(lines, 1)]

    async def one(self, number: int, line: str) -> Explained:
        out = Explained(number, shown(line), "", "")
        event = parse_line(line, self.relay.host, self.patterns)
        if event is None:
            out.parsed = "no signal: " + why_no_event(line, self.relay.host, self.patterns)
            out.verdict = "nothing (the watchdog skips the line)"
            return out
        out.kind = event.kind.value
        out.parsed = describe(event)
        now = event_time(event, time.time())  # the line judged when it was written
        attempts = dict(self.decider.attempts)  # at most MAX_ATTEMPTS_KEPT
        renotified = self.decider.renotified_at
        s = self.situation
        decision = self.decider.observe(event, s.current4, now, current6=s.current6)
        if decision is None:
            counted = _counted(event, attempts, self.decider.attempts)
            out.verdict = "nothing: " + self._why_nothing(event, counted, renotified, now)
            return out
        out.action = decision.action
        out.verdict = await self._decided(decision, now)
        return out

    def _why_nothing(
        self, event: RelayEvent, counted: bool, renotified: float | None, now: float
    ) -> str:
        kind, s, d = event.kind, self.situation, self.decider
        ours = [a for a in (s.current4, s.current6) if a is not None]
        if kind is EventKind.BOUNCE_GENERATED:
            return (
                f"a bounce this server generated: {d.bounce_rate(now)} in the hour up to it on "
                f"the backscatter meter (the daemon warns above bounce_warn = "
                f"{self.relay.bounce_warn})"
            )
        if kind is EventKind.SENT:
            return "mail goes out through the relay; no trouble was open to recover from"
        if kind in (EventKind.TLS_FAILED, EventKind.TLS_NOT_OFFERED, EventKind.SASL_FAILED):
            return "warned already in this episode (it ends at the next message sent)"
        if kind is EventKind.RATE_LIMITED:
            if event.limited_ip is None:
                return "the refusal names no address, so it cannot be ours"
            if not ours:
                return (
                    f"names {event.limited_ip}, but our current address is not known "
                    f"({ours_text(s)})"
                )
            return (
                f"names {event.limited_ip}, which is not our current address "
                f"({ours_text(s)}): we moved already"
            )
        if kind is EventKind.CONNECT_FAILED:
            if event.echo:
                return (
                    "qmgr's echo of a failure it cached ('delivery temporarily suspended'): "
                    "no connection was tried, so it does not count"
                )
            if counted:
                return (
                    f"failed connection {len(d.failures)} of threshold = {d.threshold} within "
                    f"window = {int(d.window)}s: counted, nothing yet"
                )
            return "the same attempt as an earlier record (same process and queue id): counted once"
        if kind is EventKind.RELAY_DENIED:
            if event.limited_ip is not None and event.limited_ip not in ours:
                return f"names {event.limited_ip}, an address we no longer have ({ours_text(s)})"
            if renotified is not None:
                return (
                    "the providers were re-notified moments before: mail queued before that "
                    f"took effect (a denial settle = {int(d.settle)}s or more after it reconnects)"
                )
        return "not a signal the rules act on now"

    async def _decided(self, decision: Decision, now: float) -> str:
        d = self.decider
        if decision.action == "warn":
            return f"warn (once per episode): {decision.reason}"
        if decision.action == "recovered":
            return (
                f"recovered: {decision.reason}, {decision.duration or 0:.0f}s after the first "
                "signal (logged as 'relay recovered'; status shows it)"
            )
        if decision.action == "renotify":
            d.acted("renotify", now)
            which = "IPv6 providers" if decision.family == 6 else "providers"
            return (
                f"re-notify the {which}: {decision.reason} (harmless, so a log line alone "
                "may start it, at most once every 10 minutes)"
            )
        said, confirmed = await self._queue_says(decision)
        if confirmed:
            d.acted("reconnect", now)
            return f"reconnect: {decision.reason}; {said}; {self._when()}"
        d.dismissed()
        return f"no reconnect: {decision.reason}; {said}"

    async def _queue_says(self, decision: Decision) -> tuple[str, bool]:
        """What Postfix's queue says of a decision to reconnect, as the watch asks it."""
        s = self.situation
        if not s.read_queue:
            return "the queue was not read (--no-queue): taken as confirmed", True
        if self.queue is None:
            self.queue = await read_queue(self.relay.queue, self.relay.host, self.patterns)
        if self.queue.problem is not None:
            return (
                f"not confirmed by the queue, which cannot be read: {self.queue.problem} (the "
                "service user needs group postdrop; see [relay] queue)",
                False,
            )
        current6 = s.current6 if self.relay.reconnect_on_ipv6 else None
        outright, unanswered = backing(decision, self.queue.failures, s.current4, current6)
        if outright is not None:
            return f"confirmed by the queue: {_queued(outright)}", True
        if unanswered:
            name, port = relay_address(self.relay.host)
            target = unanswered[0].relay_ip or name
            return (
                f"the queue holds mail the relay did not answer ({_queued(unanswered[0])}): the "
                f"daemon tries a connection of its own to {target} port "
                f"{unanswered[0].relay_port or port} and reconnects only if it fails too",
                True,
            )
        return (
            "not confirmed by the queue: no mail in Postfix's queue "
            f"(`{' '.join(self.relay.queue)}`) is held back by the relay, so the daemon only "
            "warns",
            False,
        )

    def _when(self) -> str:
        if self.reconnect is None:
            return "but there is no [reconnect] section: nothing to run (add one)"
        why = refusal_to_reconnect(self.situation.relay_state, self.reconnect, time.time())
        if why is not None:
            return f"a reconnect now would wait: {why}"
        return f"runs `{' '.join(self.reconnect.command)}`"


def _counted(
    event: RelayEvent,
    before: dict[tuple[str, int, str], float],
    after: dict[tuple[str, int, str], float],
) -> bool:
    """Whether the decider counted the line as a new connection attempt (decide.Decider's
    `attempts` records each one it counts, by process and queue id)."""
    if event.pid is None:
        return True
    key = (event.syslog_name, event.pid, event.queue_id)
    return key in after and before.get(key) != after[key]


def describe(event: RelayEvent) -> str:
    """What the parser read from a line, field by field (the line's words are anyone's:
    shown through `shown`)."""
    who = event.syslog_name + (f"[{event.pid}]" if event.pid is not None else "")
    parts = [f"{event.kind.value} from {who}, queue id {event.queue_id}"]
    if event.relay_name or event.relay_ip:
        port = f":{event.relay_port}" if event.relay_port else ""
        parts.append(f"relay {event.relay_name}[{event.relay_ip}]{port}")
    if event.dsn or event.status:
        parts.append(f"dsn={event.dsn} status={event.status}")
    if event.limited_ip is not None:
        parts.append(f"names {event.limited_ip}")
    if event.echo:
        parts.append("an echo of a cached failure")
    if event.timestamp is not None:
        parts.append(f"at {event.timestamp.isoformat(sep=' ')}")
    said = event.reply or event.reason
    if said:
        parts.append(f"said: {said}")
    return shown(", ".join(parts))


def ours_text(s: Situation) -> str:
    known = [f"IPv{f} {a}" for f, a in ((4, s.current4), (6, s.current6)) if a is not None]
    return ", ".join(known) or "none known yet: pass --address"


def _queued(failure: QueuedFailure) -> str:
    return shown(f"{failure.queue_name} {failure.queue_id}: {failure.reason[:300]}")


def situation_from_state(
    store: Store, addresses: Sequence[str], read_queue: bool
) -> tuple[Situation, str | None]:
    """Our addresses and the reconnect record from the state (`Store`), the given addresses
    overriding; and a note when the state could not be read."""
    situation = Situation(read_queue=read_queue)
    note = None
    try:
        state = store.load()
    except DdnsagentError as exc:
        note = f"the state cannot be read ({exc}); our addresses are unknown"
    else:
        situation.relay_state = state.relay
        for family, d in state.detected.items():
            if family == 4:
                situation.current4 = d.address or None
            elif family == 6:
                situation.current6 = d.address or None
    for address in addresses:
        if ":" in address:
            situation.current6 = address
        else:
            situation.current4 = address
    return situation, note


def render(rows: Sequence[Explained]) -> str:
    out = []
    for row in rows:
        out.append(f"{row.number:>3}  {row.shown}")
        out.append(f"     parser:   {row.parsed}")
        out.append(f"     watchdog: {row.verdict}")
    return "\n".join(out) + ("\n" if out else "")
