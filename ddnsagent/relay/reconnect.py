"""The reconnect procedure: when the relay refuses our address, get a new one (PPPoE
reconnect), tell the providers, and flush the deferred mail.

In order, because each step depends on the one before: exclusive lock → cooldown and daily cap
(persisted) → the reconnect command (through ddnsagent.process: its own process group, killed as
a whole at the timeout) → wait for the WAN address to change → sync the providers with reason
"reconnect" → wait `settle` → flush the queue. The next message sent through the relay marks
the recovery (relay/watch.py records it).

Addresses are asked of the agent (what it last recorded, or a fresh detection), never read
around it. A PPPoE reconnect renews the IPv4 address; IPv6 on FLET'S comes over IPoE and does
not change with it, so the procedure watches IPv4 (`FAMILY`).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from pathlib import Path

from ddnsagent import history, process
from ddnsagent.config import Config
from ddnsagent.outcome import ReconnectOutcome
from ddnsagent.schedule import recent_attempts, refusal_to_reconnect
from ddnsagent.store import ReconnectRecord, Store, open_lock_file
from ddnsagent.sync import Agent, SyncOptions

log = logging.getLogger(__name__)

ADDRESS_POLL = 3.0
FLUSH_TIMEOUT = 60.0
FAMILY = 4  # the family a PPPoE reconnect renews


class ReconnectLock:
    """One reconnect at a time across processes (`ddnsagent reconnect` and the daemon).

    The lock file lives in the state directory, which the service user owns and root uses too:
    it is opened as the store opens its own lock (no link followed, regular file, trusted
    owner; UnsafeFile otherwise), never truncated."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        fd = open_lock_file(self.directory, "reconnect.lock")
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


async def reconnect(agent: Agent, reason: str, ignore_cooldown: bool = False) -> ReconnectOutcome:
    """The whole procedure; never raises for operational trouble, reports it instead."""
    cfg = agent.config
    rc = cfg.reconnect
    if rc is None:
        return ReconnectOutcome(False, "no [reconnect] section in the configuration")
    lock = ReconnectLock(cfg.agent.state_dir)
    if not lock.try_acquire():
        return ReconnectOutcome(False, "another reconnect is running")
    try:
        now = time.time()
        async with Store.of(cfg.agent).edit_async() as state:
            why = None if ignore_cooldown else refusal_to_reconnect(state.relay, rc, now)
            if why is None:  # counted before running: a crash still counts
                state.relay.attempts = [*recent_attempts(state.relay, now), now]
        if why:
            log.warning("reconnect not run (%s): %s", reason, why)
            return ReconnectOutcome(False, f"not run: {why}")
        old = agent.known_address(FAMILY)
        if old is None:  # nothing synced yet: learn the address we are about to leave
            old = await _detect(agent)
        log.warning("reconnecting (%s): running %s", reason, " ".join(rc.command))
        result = await _run(rc.command, rc.timeout, "reconnect")
        new = await _wait_for_new_address(agent, old, rc.wait_for_address)
        if new is None or new == old:
            message = f"address did not change from {old} within {int(rc.wait_for_address)}s"
            if result.timed_out:
                message += " (the command timed out)"
            elif result.problem:
                message += f" (the command {result.problem})"
            elif result.returncode:
                message += f" (the command exited with status {result.returncode})"
            await _record(cfg, reason, old, new, "unchanged", message, started=now)
            log.error("reconnect: %s; next try after the cooldown", message)
            return ReconnectOutcome(True, message, old, new)
        log.warning("reconnect: new address %s (was %s)", new, old)
        await agent.sync(SyncOptions(reason="reconnect"))
        await flush_queue(cfg)
        message = f"new address {new} (was {old}); providers notified, queue flushed"
        await _record(cfg, reason, old, new, "ok", message, started=now)
        return ReconnectOutcome(True, message, old, new)
    finally:
        lock.release()


async def renotify(agent: Agent, reason: str, family: int | None = None) -> None:
    """The relay does not know our address: tell the providers again (only `family`'s when
    given), then flush."""
    which = f"IPv{family} " if family is not None else ""
    log.warning("re-notifying the %sproviders (%s)", which, reason)
    families = (family,) if family is not None else None
    await agent.sync(SyncOptions(reason="relay-denied", force=True, families=families))
    await flush_queue(agent.config)


async def flush_queue(cfg: Config) -> None:
    relay = cfg.relay
    if relay is None or not relay.flush:
        return
    await asyncio.sleep(relay.settle)
    result = await _run(relay.flush, FLUSH_TIMEOUT, "flush")
    if result.ok:
        log.info("mail queue flushed (%s)", " ".join(relay.flush))


async def _wait_for_new_address(agent: Agent, old: str | None, limit: float) -> str | None:
    deadline = time.monotonic() + limit
    latest: str | None = None
    while True:
        found = await _detect(agent)
        if found is not None:
            latest = found
            if latest != old:
                return latest
        if time.monotonic() + ADDRESS_POLL > deadline:
            return latest
        await asyncio.sleep(ADDRESS_POLL)


async def _detect(agent: Agent) -> str | None:
    found = await agent.detect(FAMILY)
    return str(found.address) if found.address is not None else None


async def _run(argv: tuple[str, ...], timeout: float, label: str) -> process.Outcome:
    """Run a reconnect or flush command; its output goes to the log line by line."""
    result = await process.run_async(
        argv, timeout, on_line=lambda line: log.info("%s: %s", label, line)
    )
    if not result.ok:
        log.error("%s: %s", label, result.describe())
    return result


async def _record(
    cfg: Config,
    reason: str,
    old: str | None,
    new: str | None,
    result: str,
    message: str,
    started: float | None = None,
) -> None:
    async with Store.of(cfg.agent).edit_async() as state:
        state.relay.last_reconnect = ReconnectRecord(time.time(), reason, old, new, result, message)
        if result == "unchanged":
            state.relay.unchanged += 1
        # The address history (issue 14): the reconnect on the time line, and the address it
        # brought marked as the reconnect's, whichever sync saw it first.
        history.note_event(
            state, "reconnect", result, reason, time.time(), old=old, new=new, family=FAMILY
        )
        if result == "ok" and new is not None and started is not None:
            history.note_reconnect(state, FAMILY, new, started)
