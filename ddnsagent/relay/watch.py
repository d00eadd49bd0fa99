"""The daemon's eye on the mail log: lines from a source (relay/sources.py) go through the
parser (logparse) to the decider (decide); a decision starts the procedure (reconnect) or a
re-notify. Runs until cancelled; the log position and the bounce rate are kept in the state, so
a restart neither reads a line twice nor forgets the last hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from ddnsagent.relay.decide import Decider, Decision
from ddnsagent.relay.logparse import (
    DEFAULT_RATE_PATTERNS,
    RelayEvent,
    compile_rate_patterns,
    parse_journal_json,
    parse_line,
)
from ddnsagent.relay.reconnect import FAMILY, reconnect, renotify
from ddnsagent.relay.sources import FollowPosition, FollowStats, JournalReader, LogFollower
from ddnsagent.store import LogPosition, Recovery, RelaySignal, Store
from ddnsagent.sync import Agent

log = logging.getLogger(__name__)

POLL_EVERY = 2.0  # seconds between looks at the log file
SAVE_POSITION_EVERY = 30.0


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
        self.decider = Decider(relay.threshold, relay.window, relay.settle)
        self.action: asyncio.Task[None] | None = None
        self._last_warned_rate = 0.0

    async def run(self) -> None:
        assert self.cfg.relay is not None
        if self.cfg.relay.log == "journal":
            await self._run_journal()
        else:
            await self._run_file(Path(self.cfg.relay.log))

    async def _run_file(self, path: Path) -> None:
        saved = Store.of(self.cfg.agent).load().relay.position
        position = None
        if saved is not None and saved.path == str(path):
            position = FollowPosition(saved.device, saved.inode, saved.offset)
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
        async with Store.of(self.cfg.agent).edit_async() as state:
            state.relay.position = LogPosition(
                path, position.device, position.inode, position.offset
            )
            state.relay.bounce_rate = self.decider.bounce_rate(time.time())

    async def _run_journal(self) -> None:
        assert self.cfg.relay is not None
        reader = JournalReader(self.cfg.relay.journal_identifiers)
        try:
            async for record in reader.records():
                self.feed(parse_journal_json(record, self._host(), self.patterns))
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
        decision = self.decider.observe(event, self.agent.known_address(FAMILY), now)
        self._check_bounces(now)
        if decision is None:
            return
        if decision.action == "recovered":
            log.warning("relay recovered after %.1fs: %s", decision.duration, decision.reason)
            self._spawn(self._note_recovery(decision))
            return
        if self.action is not None and not self.action.done():
            return  # a recovery is already under way
        log.warning("relay signal: %s → %s", decision.reason, decision.action)
        self._spawn(self._act(decision))

    def _spawn(self, coro: Any) -> None:
        self.action = asyncio.ensure_future(coro)

    async def _act(self, decision: Decision) -> None:
        try:
            async with Store.of(self.cfg.agent).edit_async() as state:
                state.relay.last_signal = RelaySignal(decision.at, decision.action, decision.reason)
            self.decider.acted(decision.action, time.time())
            if decision.action == "renotify":
                await renotify(self.agent, decision.reason)
            else:
                outcome = await reconnect(self.agent, decision.reason)
                if self.events is not None:
                    self.events.reconnected(outcome)
                if not outcome.done:
                    log.warning("relay: %s", outcome.message)
        except Exception:
            log.exception("relay watchdog: the recovery failed")

    async def _note_recovery(self, decision: Decision) -> None:
        async with Store.of(self.cfg.agent).edit_async() as state:
            state.relay.last_recovery = Recovery(decision.at, decision.duration or 0.0)

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
