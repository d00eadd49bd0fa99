"""The relay watchdog: reads the mail log, and when the relay refuses our address, gets a new
one (PPPoE reconnect), tells the providers, and flushes the deferred mail.

The procedure, in order, because each step depends on the one before:
exclusive lock → cooldown and daily cap (persisted) → the reconnect command in its own process
group (a timeout kills the whole group) → wait for the WAN address to change → sync providers
with reason "reconnect" → wait `settle` → flush the queue → the next message sent through the
relay marks the recovery, and its duration is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddnsagent.config import Config, ReconnectConfig
from ddnsagent.outcome import ReconnectOutcome
from ddnsagent.relay.decide import Decider, Decision
from ddnsagent.relay.follow import FollowPosition, LogFollower
from ddnsagent.relay.logparse import (
    DEFAULT_RATE_PATTERNS,
    RelayEvent,
    compile_rate_patterns,
    parse_journal_json,
    parse_line,
)
from ddnsagent.store import RawState as State
from ddnsagent.store import StateLock, give_to_directory_owner

log = logging.getLogger(__name__)

DAY = 86400.0
POLL_EVERY = 2.0  # seconds between looks at the log file
SAVE_POSITION_EVERY = 30.0
ADDRESS_POLL = 3.0
FLUSH_TIMEOUT = 60.0


# -- commands ------------------------------------------------------------------------------------


@dataclass
class CommandResult:
    returncode: int | None  # None: killed after the timeout
    output: str


async def run_command(argv: tuple[str, ...], timeout: float, label: str) -> CommandResult:
    """Run argv without a shell, in its own process group; log its output; kill the group on
    timeout (pppd helpers like `pon` leave children behind)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        log.error("%s: cannot run %s: %s", label, argv[0], exc.strerror)
        return CommandResult(127, f"cannot run {argv[0]}: {exc.strerror}")
    assert proc.stdout is not None
    chunks: list[bytes] = []

    async def drain() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            if sum(map(len, chunks)) < 64 * 1024:
                chunks.append(line)
            log.info("%s: %s", label, line.decode(errors="replace").rstrip())

    reader = asyncio.create_task(drain())
    try:
        await asyncio.wait_for(proc.wait(), timeout)
        returncode: int | None = proc.returncode
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        returncode = None
        log.error("%s: no exit within %gs; its process group was killed", label, timeout)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    if returncode:
        log.error("%s: exited with status %d", label, returncode)
    return CommandResult(returncode, b"".join(chunks).decode(errors="replace"))


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- the reconnect procedure ---------------------------------------------------------------------


class ReconnectLock:
    """One reconnect at a time across processes (`ddnsagent reconnect` and the daemon)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "reconnect.lock"
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        give_to_directory_owner(fd, self.path.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


async def edit_state(cfg: Config, change: Any) -> dict[str, Any]:
    """Load, change and save the state under its lock; returns the relay section."""
    lock = StateLock(cfg.agent.state_dir, cfg.agent.lock_timeout)
    await asyncio.to_thread(lock.acquire)
    try:
        state = State(cfg.agent.state_dir).load()
        relay = state.data.setdefault("relay", {})
        change(relay)
        state.save()
        return dict(relay)
    finally:
        lock.release()


def current_address(cfg: Config) -> str | None:
    detected = State(cfg.agent.state_dir).load().data.get("detected", {})
    entry = detected.get("4") or {}
    address = entry.get("address")
    return str(address) if address else None


def refusal_to_reconnect(relay: dict[str, Any], rc: ReconnectConfig, now: float) -> str | None:
    """Why a reconnect may not run now (cooldown, daily cap), or None."""
    attempts = [t for t in relay.get("attempts", []) if t > now - DAY]
    if attempts and now < attempts[-1] + rc.cooldown:
        left = int(attempts[-1] + rc.cooldown - now)
        return f"in cooldown for {left}s more (cooldown = {int(rc.cooldown)}s)"
    if len(attempts) >= rc.max_per_day:
        return f"already {len(attempts)} reconnects in 24 h (max_per_day = {rc.max_per_day})"
    return None


async def reconnect(
    cfg: Config, agent: Any, reason: str, ignore_cooldown: bool = False
) -> ReconnectOutcome:
    """The whole procedure; never raises for operational trouble, reports it instead."""
    from ddnsagent.detect import detect
    from ddnsagent.sync import SyncOptions

    rc = cfg.reconnect
    if rc is None:
        return ReconnectOutcome(False, "no [reconnect] section in the configuration")
    lock = ReconnectLock(cfg.agent.state_dir)
    if not lock.try_acquire():
        return ReconnectOutcome(False, "another reconnect is running")
    try:
        now = time.time()
        refused: list[str] = []

        def check_and_count(relay: dict[str, Any]) -> None:
            why = None if ignore_cooldown else refusal_to_reconnect(relay, rc, now)
            if why:
                refused.append(why)
                return
            attempts = [t for t in relay.get("attempts", []) if t > now - DAY]
            relay["attempts"] = [*attempts, now]  # counted before running: a crash still counts

        await edit_state(cfg, check_and_count)
        if refused:
            log.warning("reconnect not run (%s): %s", reason, refused[0])
            return ReconnectOutcome(False, f"not run: {refused[0]}")
        old = current_address(cfg)
        if old is None:  # nothing synced yet: learn the address we are about to leave
            found = await detect(cfg.detect, 4)
            old = str(found.address) if found.address is not None else None
        log.warning("reconnecting (%s): running %s", reason, " ".join(rc.command))
        result = await run_command(rc.command, rc.timeout, "reconnect")
        new = await _wait_for_new_address(cfg, old, rc.wait_for_address, detect)
        if new is None or new == old:
            message = f"address did not change from {old} within {int(rc.wait_for_address)}s"
            if result.returncode:
                message += f" (the command exited with status {result.returncode})"
            elif result.returncode is None:
                message += " (the command timed out)"
            await _record(cfg, reason, old, new, "unchanged", message)
            log.error("reconnect: %s; next try after the cooldown", message)
            return ReconnectOutcome(True, message, old, new)
        log.warning("reconnect: new address %s (was %s)", new, old)
        await agent.sync(SyncOptions(reason="reconnect"))
        await flush_queue(cfg)
        message = f"new address {new} (was {old}); providers notified, queue flushed"
        await _record(cfg, reason, old, new, "ok", message)
        return ReconnectOutcome(True, message, old, new)
    finally:
        lock.release()


async def renotify(cfg: Config, agent: Any, reason: str) -> None:
    """The relay does not know our address: tell the providers again, then flush."""
    from ddnsagent.sync import SyncOptions

    log.warning("re-notifying the providers (%s)", reason)
    await agent.sync(SyncOptions(reason="relay-denied", force=True))
    await flush_queue(cfg)


async def flush_queue(cfg: Config) -> None:
    relay = cfg.relay
    if relay is None or not relay.flush:
        return
    await asyncio.sleep(relay.settle)
    result = await run_command(relay.flush, FLUSH_TIMEOUT, "flush")
    if result.returncode == 0:
        log.info("mail queue flushed (%s)", " ".join(relay.flush))


async def _wait_for_new_address(
    cfg: Config, old: str | None, limit: float, detect: Any
) -> str | None:
    deadline = time.monotonic() + limit
    latest: str | None = None
    while True:
        found = await detect(cfg.detect, 4)
        if found.address is not None:
            latest = str(found.address)
            if latest != old:
                return latest
        if time.monotonic() + ADDRESS_POLL > deadline:
            return latest
        await asyncio.sleep(ADDRESS_POLL)


async def _record(
    cfg: Config, reason: str, old: str | None, new: str | None, result: str, message: str
) -> None:
    def change(relay: dict[str, Any]) -> None:
        relay["last_reconnect"] = {
            "time": time.time(),
            "reason": reason,
            "old": old,
            "new": new,
            "result": result,
            "message": message,
        }
        if result == "unchanged":
            relay["unchanged"] = int(relay.get("unchanged", 0)) + 1

    await edit_state(cfg, change)


# -- reading the log -----------------------------------------------------------------------------


class RelayWatch:
    """The daemon's eye on the mail log. Runs until cancelled."""

    def __init__(self, cfg: Config, agent: Any, events: Any = None) -> None:
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
        saved = State(self.cfg.agent.state_dir).load().data.get("relay", {}).get("position")
        position = None
        if isinstance(saved, dict) and saved.get("path") == str(path):
            with contextlib.suppress(ValueError, KeyError):
                position = FollowPosition.from_dict(saved)
        follower = LogFollower(path, position)
        last_saved = time.monotonic()
        try:
            while True:
                for line in follower.poll():
                    self.feed(parse_line(line, self._host(), self.patterns))
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
        def change(relay: dict[str, Any]) -> None:
            relay["position"] = {**position.to_dict(), "path": path}
            relay["bounce_rate"] = self.decider.bounce_rate(time.time())

        await edit_state(self.cfg, change)

    async def _run_journal(self) -> None:
        assert self.cfg.relay is not None
        argv = ["journalctl", "--follow", "--output=json", "--lines=0"]
        for ident in self.cfg.relay.journal_identifiers:
            argv += ["-t", ident]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.error("relay watch: cannot run journalctl: %s", exc.strerror)
            return
        assert proc.stdout is not None
        try:
            async for raw in proc.stdout:
                line = raw[:1_000_000].decode(errors="replace")
                self.feed(parse_journal_json(line, self._host(), self.patterns))
        finally:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()

    def _host(self) -> str:
        assert self.cfg.relay is not None
        return self.cfg.relay.host

    def feed(self, event: RelayEvent | None) -> None:
        if event is None:
            return
        if self.events is not None:
            self.events.relay_signal(event.kind.value)
        now = time.time()
        decision = self.decider.observe(event, current_address(self.cfg), now)
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
        def note(relay: dict[str, Any]) -> None:
            relay["last_signal"] = {
                "time": decision.at,
                "action": decision.action,
                "reason": decision.reason,
            }

        try:
            await edit_state(self.cfg, note)
            self.decider.acted(decision.action, time.time())
            if decision.action == "renotify":
                await renotify(self.cfg, self.agent, decision.reason)
            else:
                outcome = await reconnect(self.cfg, self.agent, decision.reason)
                if self.events is not None:
                    self.events.reconnected(outcome)
                if not outcome.done:
                    log.warning("relay: %s", outcome.message)
        except Exception:
            log.exception("relay watchdog: the recovery failed")

    async def _note_recovery(self, decision: Decision) -> None:
        def change(relay: dict[str, Any]) -> None:
            relay["last_recovery"] = {"time": decision.at, "seconds": decision.duration}

        await edit_state(self.cfg, change)

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
