"""The daemon's eye on the mail log: lines from a source (relay/sources.py) go through the
parser (logparse) to the decider (decide); a decision starts the procedure (reconnect) or a
re-notify. Runs until cancelled; the log position and the bounce rate are kept in the state
(written only when they changed), so a restart neither reads a line twice nor forgets the last
hour.

A log line is a hint: any local user can write one (`logger -t postfix/smtp …`). Before a
reconnect the watch asks Postfix's queue (`[relay] queue`, `postqueue -j`) whether mail is
really held back by the relay, and for connections the relay never answered it tries one of its
own (if it connects, it is not a block). The queue is read at most once per `CHECK_EVERY`; a
claim nothing confirms is named in one warning (at most one per `WARN_EVERY`). A re-notify is
harmless and may follow a line alone, at most once per `RENOTIFY_EVERY`. In journald mode only
records journald attributes to Postfix's unit or user count at all.

Failures no new address cures (TLS, SASL) are named in one warning per episode, recorded as the
last signal for `status` and sent as a `relay` notification; they start nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import pwd
import time
from pathlib import Path
from typing import Any

from ddnsagent import history, process
from ddnsagent.errors import DdnsagentError
from ddnsagent.relay import guard
from ddnsagent.relay.decide import Decider, Decision, backing, claim
from ddnsagent.relay.logparse import (
    DEFAULT_RATE_PATTERNS,
    EventKind,
    QueuedFailure,
    RelayEvent,
    compile_rate_patterns,
    parse_journal_json,
    parse_line,
    relay_address,
)
from ddnsagent.relay.reconnect import FAMILY, reconnect, renotify
from ddnsagent.relay.sources import (
    FollowPosition,
    FollowStats,
    JournalReader,
    LogFollower,
    probe,
    read_queue,
)
from ddnsagent.store import Guard, LogPosition, Recovery, RelaySignal, Store
from ddnsagent.sync import Agent

log = logging.getLogger(__name__)

POLL_EVERY = 2.0  # seconds between looks at the log file
SAVE_POSITION_EVERY = 30.0  # at most one save of the position per this many seconds
CHECK_EVERY = 30.0  # at most one look at the queue (and one probe) per this many seconds
PROBE_TIMEOUT = 10.0  # our own connection attempt to the relay
MAX_PROBES = 2  # distinct relay addresses tried
WARN_EVERY = 600.0  # one warning of a kind per this many seconds
RENOTIFY_EVERY = 600.0  # a re-notify on a log line alone at most this often
BOUNCED_SAVE_EVERY = 60.0  # the last hard bounce is written to the state at most this often
IPV6 = 6
HOLD_TIMEOUT = 90.0  # `[relay] bounce_hold` (systemctl start waits for the oneshot)
HOLD_RUNS = 20  # runs of one hold task: the first, then one per batch of bounces meanwhile


class RelayWatch:
    """The daemon's eye on the mail log. Runs until cancelled."""

    def __init__(self, agent: Agent, events: Any = None) -> None:
        cfg = agent.config
        assert cfg.relay is not None
        self.cfg = cfg
        self.agent = agent
        self.events = events  # the daemon: relay_signal(), backscatter(), reconnected()
        relay = cfg.relay
        self.patterns = DEFAULT_RATE_PATTERNS + compile_rate_patterns(relay.patterns)
        self.decider = Decider(relay.threshold, relay.window, relay.settle, relay.reconnect_on_ipv6)
        self.action: asyncio.Task[None] | None = None
        self._notes: set[asyncio.Task[None]] = set()  # state writes that start nothing
        self._bounced_saved = -BOUNCED_SAVE_EVERY  # monotonic time of the last write
        self._last_warned_rate = 0.0
        self._next_check = 0.0  # monotonic: when the queue may be read again
        self._renotified: tuple[float, float] | None = None  # (monotonic, wall) of the last
        self._warned: dict[str, float] = {}  # kind → monotonic time of its last warning
        self._unsaid: dict[str, int] = {}  # kind → warnings held back since then
        self.episode = guard.Episode(relay.bounce_limit)
        self._hold_task: asyncio.Task[None] | None = None
        self._hold_again = False  # a bounce arrived while a hold ran: hold once more
        # The log position and bounce count last written to (or found in) the state: a save
        # that would write the same is skipped, so a quiet log rewrites nothing.
        self._written: tuple[LogPosition, int] | None = None

    async def run(self) -> None:
        assert self.cfg.relay is not None
        kept = Store.of(self.cfg.agent).load().guard
        if kept is not None and kept.since is not None:
            self.episode.resume(kept.since, kept.time)
        if self.cfg.relay.log == "journal":
            await self._run_journal()
        else:
            await self._run_file(Path(self.cfg.relay.log))

    async def _run_file(self, path: Path) -> None:
        kept = Store.of(self.cfg.agent).load().relay
        saved = kept.position
        position = None
        if saved is not None and saved.path == str(path):
            position = FollowPosition(saved.device, saved.inode, saved.offset)
            self._written = (saved, kept.bounce_rate)
        follower = LogFollower(path, position)
        last_saved = time.monotonic()
        losses = _losses(follower.stats)
        try:
            while True:
                for line in follower.poll():
                    self.feed(parse_line(line, self._host(), self.patterns))
                if _losses(follower.stats) != losses:
                    losses = _losses(follower.stats)
                    log.warning(
                        "mail log %s: the follower %s; a refusal in those lines is not seen",
                        path,
                        _describe_losses(follower.stats),
                    )
                if follower.position and time.monotonic() - last_saved > SAVE_POSITION_EVERY:
                    await self._save_position(follower.position, str(path))
                    last_saved = time.monotonic()
                await asyncio.sleep(POLL_EVERY)
        finally:
            if follower.position:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._save_position(follower.position, str(path)))
            follower.close()

    async def _save_position(self, position: FollowPosition, path: str) -> None:
        """The position and the bounce count for `status`, when either differs from what was
        last written (the count also changes by decaying: an hour-old bounce leaves it)."""
        value = (
            LogPosition(path, position.device, position.inode, position.offset),
            self.decider.bounce_rate(time.time()),
        )
        if value == self._written:
            return
        async with Store.of(self.cfg.agent).edit_async() as state:
            state.relay.position, state.relay.bounce_rate = value
        self._written = value

    async def _run_journal(self) -> None:
        assert self.cfg.relay is not None
        reader = JournalReader(self.cfg.relay.journal_identifiers)
        uids = postfix_uids(self.cfg.relay.postfix_user)
        try:
            async for record in reader.records():
                self.feed(
                    parse_journal_json(record, self._host(), self.patterns, postfix_uids=uids)
                )
        except OSError as exc:
            log.error("relay watch: cannot run journalctl: %s", exc.strerror)

    def _host(self) -> str:
        assert self.cfg.relay is not None
        return self.cfg.relay.host

    def feed(self, event: RelayEvent | None) -> None:
        if event is None:
            return
        if self.events is not None:
            self.events.relay_signal(event.kind.value)
        now = time.time()
        current6 = None
        if event.limited_ip is not None and ":" in event.limited_ip:
            current6 = self.agent.known_address(IPV6)  # only asked when the line names one
        decision = self.decider.observe(
            event, self.agent.known_address(FAMILY), now, current6=current6
        )
        self._check_bounces(now)
        self._guard_bounces(now, event.kind is EventKind.BOUNCE_GENERATED)
        if event.status == "bounced" and (event.dsn or "").startswith("5"):
            self._note_bounced(event, now)
        if decision is None:
            return
        if decision.action == "warn":
            self._warn_problem(decision)
            return
        if decision.action == "recovered":
            log.info("relay recovered after %.1fs: %s", decision.duration, decision.reason)
            self._spawn(self._note_recovery(decision))
            return
        if self.action is not None and not self.action.done():
            return  # a recovery is already under way
        if decision.action == "reconnect":  # only a hint until the queue confirms it
            log.info("relay signal: %s → looking at the queue", decision.reason)
        else:
            log.warning("relay signal: %s → %s", decision.reason, decision.action)
        self._spawn(self._act(decision))

    def _spawn(self, coro: Any) -> None:
        self.action = asyncio.ensure_future(coro)

    def _note(self, coro: Any) -> None:
        """A state write beside whatever recovery runs; kept until done."""
        task = asyncio.ensure_future(coro)
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    def _warn_problem(self, decision: Decision) -> None:
        """A failure no reconnect cures: say what to check, once per episode (the decider
        keeps the count), show it in `status`, and notify."""
        kind = decision.signal.value if decision.signal is not None else "relay"
        log.warning("relay: %s (%s)", decision.reason, decision.claim)
        if self.events is not None and hasattr(self.events, "relay_problem"):
            self.events.relay_problem(kind, decision.reason, decision.claim)
        self._note(self._record_signal(RelaySignal(decision.at, kind, decision.reason)))

    def _note_bounced(self, event: RelayEvent, now: float) -> None:
        """The relay refused mail for good: `doctor` then points to soft_bounce."""
        if time.monotonic() - self._bounced_saved < BOUNCED_SAVE_EVERY:
            return
        self._bounced_saved = time.monotonic()
        record = RelaySignal(now, event.kind.value, claim(event))

        async def save() -> None:
            async with Store.of(self.cfg.agent).edit_async() as state:
                state.relay.last_bounced = record

        self._note(save())

    async def _record_signal(self, signal: RelaySignal) -> None:
        try:
            async with Store.of(self.cfg.agent).edit_async() as state:
                state.relay.last_signal = signal
                history.note_event(state, "relay", signal.action, signal.reason, signal.time)
        except DdnsagentError as exc:
            log.error("relay watchdog: cannot record the signal: %s", exc)

    async def _act(self, decision: Decision) -> None:
        try:
            if decision.action == "renotify" and self._renotified is not None:
                since, at = self._renotified
                if time.monotonic() - since < RENOTIFY_EVERY:
                    log.info("relay: re-notified %ds ago; not again yet", time.monotonic() - since)
                    self.decider.renotified_earlier(at)  # a denial after it may escalate
                    return
            if decision.action == "reconnect" and not await self._confirmed(decision):
                self.decider.dismissed()
                return
            action = decision.action
            if decision.family == IPV6:
                action += "-ipv6"  # `status` tells an IPv6 refusal from the usual kind
            async with Store.of(self.cfg.agent).edit_async() as state:
                state.relay.last_signal = RelaySignal(decision.at, action, decision.reason)
                history.note_event(
                    state, "relay", action, decision.reason, decision.at, family=decision.family
                )
            self.decider.acted(decision.action, time.time())
            if decision.action == "renotify":
                self._renotified = (time.monotonic(), time.time())
                await renotify(self.agent, decision.reason, decision.family)
            else:
                outcome = await reconnect(self.agent, decision.reason)
                if self.events is not None:
                    self.events.reconnected(outcome)
                if not outcome.done:
                    log.warning("relay: %s", outcome.message)
        except DdnsagentError as exc:  # e.g. a state file someone replaced: said in one line
            log.error("relay watchdog: the recovery failed: %s", exc)
        except Exception:
            log.exception("relay watchdog: the recovery failed")

    async def _confirmed(self, decision: Decision) -> bool:
        """Whether Postfix's queue (and, for unanswered connections, our own attempt) confirms
        what the log line claims. At most one look per CHECK_EVERY: a flood of forged lines
        costs one `postqueue -j` per half minute, and a real block is still seen at the next."""
        relay = self.cfg.relay
        assert relay is not None
        wait = self._next_check - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next_check = time.monotonic() + CHECK_EVERY
        reading = await read_queue(relay.queue, relay.host, self.patterns)
        if reading.problem is not None:
            self._warn(
                "queue",
                "relay: not reconnecting on %s: Postfix's queue, which would confirm it, cannot "
                "be read: %s (the service user needs group postdrop; see [relay] queue)",
                decision.claim,
                reading.problem,
            )
            return False
        current6 = self.agent.known_address(IPV6) if relay.reconnect_on_ipv6 else None
        outright, unanswered = backing(
            decision, reading.failures, self.agent.known_address(FAMILY), current6
        )
        if outright is not None:
            log.warning("relay: the queue confirms it: %s", _queued(outright))
            return True
        if unanswered:
            return await self._unreachable(decision, unanswered)
        self._warn(
            "unconfirmed",
            "relay: not reconnecting: no mail in Postfix's queue (`%s`) is held back by the "
            "relay, so this log line is not confirmed: %s",
            " ".join(relay.queue),
            decision.claim,
        )
        return False

    async def _unreachable(self, decision: Decision, unanswered: list[QueuedFailure]) -> bool:
        """The queue holds mail whose connections went unanswered: a block only if ours does
        not get through either."""
        assert self.cfg.relay is not None
        name, port = relay_address(self.cfg.relay.host)
        targets: list[tuple[str, int]] = []
        for failure in unanswered:
            target = (_ip(failure.relay_ip) or name, failure.relay_port or port)
            if target not in targets:
                targets.append(target)
        failed = []
        for host, target_port in targets[:MAX_PROBES]:
            why = await probe(host, target_port, PROBE_TIMEOUT)
            if why is None:
                self._warn(
                    "reachable",
                    "relay: not reconnecting on %s: the queue holds mail the relay did not "
                    "answer (%s), but %s port %d accepts our connection now: not a block",
                    decision.claim,
                    _queued(unanswered[0]),
                    host,
                    target_port,
                )
                return False
            failed.append(f"{host} port {target_port}: {why}")
        log.warning(
            "relay: the queue confirms it (%s) and our own connection failed too (%s)",
            _queued(unanswered[0]),
            "; ".join(failed),
        )
        return True

    def _warn(self, kind: str, message: str, *args: object) -> None:
        """One warning of each kind per WARN_EVERY; the next says how many were held back."""
        now = time.monotonic()
        last = self._warned.get(kind)
        if last is not None and now - last < WARN_EVERY:
            self._unsaid[kind] = self._unsaid.get(kind, 0) + 1
            log.debug(message, *args)
            return
        self._warned[kind] = now
        held = self._unsaid.pop(kind, 0)
        if held:
            message += f" ({held} more like it since the last warning)"
        log.warning(message, *args)

    async def _note_recovery(self, decision: Decision) -> None:
        async with Store.of(self.cfg.agent).edit_async() as state:
            state.relay.last_recovery = Recovery(decision.at, decision.duration or 0.0)
            took = f"after {decision.duration or 0.0:.1f}s: {decision.reason}"
            history.note_event(state, "recovery", "recovered", took, decision.at)

    def _check_bounces(self, now: float) -> None:
        assert self.cfg.relay is not None
        rate = self.decider.bounce_rate(now)
        limit = self.cfg.relay.bounce_warn
        if limit and rate > limit and now - self._last_warned_rate > 3600:
            self._last_warned_rate = now
            if self.events is not None:
                self.events.backscatter(rate, limit)
            log.warning(
                "this server generated %d bounces in the last hour (warning above %d): "
                "backscatter uses up the relay's per-address limit — see `ddnsagent doctor`",
                rate,
                limit,
            )

    # -- the bounce guard (relay/guard.py) ------------------------------------------------------

    def _guard_bounces(self, now: float, new_bounce: bool) -> None:
        """Past `bounce_limit` bounces an hour, each new bounce asks root to hold what waits."""
        action = self.episode.observe(self.decider.bounce_rate(now), now, new_bounce)
        if action in ("start", "hold"):
            if self._hold_task is not None and not self._hold_task.done():
                self._hold_again = True
                return
            task = asyncio.ensure_future(self._hold(action == "start", now))
            self._hold_task = task
        elif action == "end":
            log.info(
                "bounce guard: %d bounces in the last hour, an hour under the limit (%d); held "
                "bounces stay on hold until `ddnsagent bounces release`",
                self.decider.bounce_rate(now),
                self.episode.limit,
            )
            self._note(self._record_guard(None, now, None))

    async def _hold(self, start: bool, since: float) -> None:
        relay = self.cfg.relay
        assert relay is not None
        try:
            for _ in range(HOLD_RUNS):
                self._hold_again = False
                result = await process.run_async(relay.bounce_hold, HOLD_TIMEOUT)
                problem = None if result.ok else result.describe()
                if problem is not None:
                    self._warn(
                        "hold",
                        "bounce guard: past the limit, but the hold failed: %s (see README, "
                        "'Bounce guard': the root oneshot ddnsagent-bounce-hold.service)",
                        problem,
                    )
                if start:
                    await self._notify_episode(since, problem)
                    start = False
                else:
                    await self._record_guard(since, time.time(), problem)
                if not self._hold_again:
                    break
        except DdnsagentError as exc:
            log.error("bounce guard: %s", exc)
        except Exception:
            log.exception("bounce guard: the hold failed")

    async def _notify_episode(self, since: float, problem: str | None) -> None:
        """The episode's one notice: log, the `relay` notification, `status`."""
        relay = self.cfg.relay
        assert relay is not None
        reading = await guard.read_bounces(relay.queue)
        on_hold = guard.held(reading.bounces)
        text = guard.notice(self.decider.bounce_rate(time.time()), relay.bounce_limit, on_hold)
        if problem is not None:
            text += f". The hold failed: {problem}"
        log.warning("%s", text)
        if self.events is not None and hasattr(self.events, "bounce_guard"):
            self.events.bounce_guard(text)
        record = Guard(since, time.time(), len(on_hold), guard.top_domains(on_hold), text, problem)
        await self._save_guard(record)

    async def _record_guard(self, since: float | None, now: float, problem: str | None) -> None:
        """After a later hold (or the episode's end): the count and domains held now."""
        relay = self.cfg.relay
        assert relay is not None
        reading = await guard.read_bounces(relay.queue)
        on_hold = guard.held(reading.bounces)
        previous = Store.of(self.cfg.agent).load().guard
        record = Guard(
            since,
            now,
            len(on_hold),
            guard.top_domains(on_hold),
            previous.notice if previous is not None else "",
            problem,
        )
        await self._save_guard(record)

    async def _save_guard(self, record: Guard) -> None:
        try:
            async with Store.of(self.cfg.agent).edit_async() as state:
                state.guard = record
        except DdnsagentError as exc:
            log.error("bounce guard: cannot record the episode: %s", exc)


def postfix_uids(user: str) -> frozenset[int]:
    """The uid of `[relay] postfix_user` (a name or a number): journald records from it count,
    besides those from Postfix's own unit."""
    if user.isascii() and user.isdigit():
        return frozenset({int(user)})
    try:
        return frozenset({pwd.getpwnam(user).pw_uid})
    except KeyError:
        log.warning(
            "[relay] postfix_user: there is no user %r here; only journal records from "
            "Postfix's systemd unit count",
            user,
        )
        return frozenset()


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _queued(failure: QueuedFailure) -> str:
    text = f"{failure.queue_name} {failure.queue_id}: {failure.reason[:300]}"
    return "".join(c if c.isprintable() else "?" for c in text)


def _losses(stats: FollowStats) -> tuple[int, int, int, int]:
    """What the follower could not read: backlog skipped, over-long lines, cut-off last lines,
    rotated files it could not find."""
    return (stats.skipped_bytes, stats.long_lines, stats.partial_lines, stats.lost_files)


def _describe_losses(stats: FollowStats) -> str:
    said = []
    if stats.skipped_bytes:
        said.append(f"skipped {stats.skipped_bytes} bytes of backlog")
    if stats.long_lines:
        said.append(f"dropped {stats.long_lines} over-long lines")
    if stats.partial_lines:
        said.append(f"dropped {stats.partial_lines} unterminated lines")
    if stats.lost_files:
        said.append(f"lost track of {stats.lost_files} rotated files")
    return ", ".join(said) + " so far"
