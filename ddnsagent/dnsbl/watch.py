"""The DNSBL check in the daemon: after every address change, of the first address it sees after
a start (unless the state holds a check of it younger than a day), daily, and what a listing
leads to.

One check at a time (an asyncio lock); an address checked in the last `RECHECK` seconds is not
asked again for a change (the reconnect's own sync reports the address this procedure already
checked). A listing on a non-policy list, with `[dnsbl] reconnect = true`, reconnects through
relay/reconnect.reconnect — its cooldown and daily cap apply — and checks the new address. It
never loops: an address is reconnected away from at most once (remembered in the state), and
the address a DNSBL reconnect brought is not reconnected away from automatically even if it is
listed too (that is said, with what to do).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any, Protocol

from ddnsagent.dnsbl import check as dnsbl_check
from ddnsagent.dnsbl.lists import DAILY
from ddnsagent.outcome import ReconnectOutcome, SyncReport
from ddnsagent.store import MAX_ACTED_ON, Store
from ddnsagent.sync import Agent

log = logging.getLogger(__name__)

RECHECK = 600.0  # seconds in which a change to an address just checked does not check it again
WAKE = 3600.0  # the daily check looks every hour for an address whose last check is a day old
FIRST_WAKE = 30.0  # after start: an address not checked for a day is checked soon
RECONNECT_FAMILY = 4  # what a PPPoE reconnect renews (relay/reconnect.FAMILY)


class Events(Protocol):
    """What the daemon hears of the check (notifications, metrics)."""

    def dnsbl_found(self, address: str, verdict: str, text: str) -> None: ...

    def reconnected(self, outcome: Any) -> None: ...


class DnsblWatch:
    def __init__(self, agent: Agent, events: Events | None = None) -> None:
        self.agent = agent
        self.events = events
        self._lock = asyncio.Lock()
        self._checked: dict[str, float] = {}  # address → monotonic time of its last check
        self._seen: dict[int, str] = {}  # family → the address the last sync reported

    def observe(self, report: SyncReport) -> asyncio.Future[None] | None:
        """A sync's report (Agent.on_report): a task checking each changed address, and each
        address this process has not seen yet (the first detection, after a start) unless the
        state holds a check of it younger than a day."""
        addresses = {f: str(d.address) for f, d in report.detections.items() if d.address}
        found = {
            f: a for f, a in addresses.items() if f in report.changed or self._seen.get(f) != a
        }
        if not found or not self._on():
            return None
        self._seen.update(found)
        changed = {f: a for f, a in found.items() if f in report.changed}
        return asyncio.ensure_future(self._after_sync(found, changed))

    async def _after_sync(self, found: dict[int, str], changed: dict[int, str]) -> None:
        for family, address in sorted(found.items()):
            if family in changed:
                await self.check(address, "address change")
            elif await self._stale(family, address):
                await self.check(address, "first sight")

    async def _stale(self, family: int, address: str) -> bool:
        """No check of `address` in the state younger than a day."""
        try:
            state = await asyncio.to_thread(Store.of(self.agent.config.agent).load)
        except Exception as exc:
            log.warning("DNSBL check: cannot read the state: %s", exc)
            return True
        last = state.dnsbl.checks.get(family)
        return last is None or last.address != address or last.time < time.time() - DAILY

    async def daily(self) -> None:
        """Check each known address whose last check is older than a day (or was of another
        address); runs for ever, until cancelled."""
        wait = FIRST_WAKE
        while True:
            await asyncio.sleep(wait)
            wait = WAKE
            if not self._on():
                continue
            try:
                state = await asyncio.to_thread(Store.of(self.agent.config.agent).load)
            except Exception as exc:
                log.warning("DNSBL check: cannot read the state: %s", exc)
                continue
            for family, detected in sorted(state.detected.items()):
                if await self._stale(family, detected.address):
                    await self.check(detected.address, "daily", force=True)

    def _on(self) -> bool:
        cfg = self.agent.config.dnsbl
        return cfg is not None and cfg.enabled

    async def check(
        self, address: str, reason: str, force: bool = False
    ) -> dnsbl_check.Report | None:
        """Check `address` and act on the result; None when it was not checked (off, or just
        checked)."""
        async with self._lock:
            return await self._check(address, reason, force, may_reconnect=True)

    async def _check(
        self, address: str, reason: str, force: bool, may_reconnect: bool
    ) -> dnsbl_check.Report | None:
        cfg = self.agent.config.dnsbl
        if cfg is None or not cfg.enabled:
            return None
        last = self._checked.get(address)
        if not force and last is not None and time.monotonic() - last < RECHECK:
            log.debug("DNSBL check of %s skipped: checked moments ago", address)
            return None
        ip = ipaddress.ip_address(address)
        report = await asyncio.to_thread(dnsbl_check.check, cfg, ip)
        self._checked[address] = time.monotonic()
        said = dnsbl_check.lines(report)
        for level, text in said:
            log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", text)
        if not said:
            log.info("%s (DNSBL check, %s)", dnsbl_check.summary(report), reason)
        if self.events is not None and report.verdict in ("listed", "refused"):
            text = "\n".join(t for level, t in said if level == "warning")
            self.events.dnsbl_found(address, report.verdict, text)
        action: str | None = None
        outcome: ReconnectOutcome | None = None
        if report.verdict == "listed":
            action, outcome = await self._act(report, may_reconnect)
            log.warning("DNSBL: %s", action)
        await self._record(report, action)
        if outcome is not None:
            await self._check_new_address(outcome)
        return report

    async def _act(
        self, report: dnsbl_check.Report, may_reconnect: bool
    ) -> tuple[str, ReconnectOutcome | None]:
        """What a listing leads to, in words, and the reconnect's outcome when one ran."""
        cfg = self.agent.config
        address = report.address
        removal = "ask each list for removal on its page (above)"
        if cfg.dnsbl is None or not cfg.dnsbl.reconnect:
            return f"no reconnect ([dnsbl] reconnect = false): {removal}", None
        if report.family != RECONNECT_FAMILY:
            return f"no reconnect: a reconnect renews the IPv4 address only; {removal}", None
        if cfg.reconnect is None:
            return f"no reconnect (no [reconnect] section): {removal}", None
        store = Store.of(cfg.agent)
        async with store.edit_async() as state:
            if address in state.dnsbl.acted_on:
                return (
                    f"no reconnect: the check acted on {address} before (one reconnect per "
                    f"listed address, so it never loops); {removal}, or run `ddnsagent "
                    "reconnect` by hand",
                    None,
                )
            # Remembered before running: a crash during the reconnect still counts.
            state.dnsbl.acted_on = [*state.dnsbl.acted_on, address][-MAX_ACTED_ON:]
        if not may_reconnect:
            return (
                f"no second reconnect: {address} came from the reconnect for a listed address, "
                f"and the check reconnects once per listing (it never loops); {removal}, or run "
                "`ddnsagent reconnect` by hand",
                None,
            )
        # lazy: the reconnect procedure only when a listing asks for it
        from ddnsagent.relay.reconnect import reconnect

        zones = ", ".join(f.zone for f in report.findings if f.verdict == "listed")
        outcome = await reconnect(self.agent, f"DNSBL: {address} listed on {zones}")
        if self.events is not None:
            self.events.reconnected(outcome)
        if not outcome.done:  # the cooldown, the daily cap, another reconnect: not acted on
            async with store.edit_async() as state:
                state.dnsbl.acted_on = [a for a in state.dnsbl.acted_on if a != address]
            return (
                f"no reconnect now ({outcome.message}); the next daily check tries once more, "
                f"within the cooldown and daily cap; meanwhile {removal}",
                outcome,
            )
        if outcome.new is None or outcome.new == address:
            return (
                f"reconnected, but the address stayed {address} ({outcome.message}); not again "
                f"for this address: {removal}",
                outcome,
            )
        return f"reconnected: new address {outcome.new} (was {address}), checked next", outcome

    async def _check_new_address(self, outcome: ReconnectOutcome) -> None:
        if outcome.done and outcome.new is not None and outcome.new != outcome.old:
            await self._check(outcome.new, "after the DNSBL reconnect", True, may_reconnect=False)

    async def _record(self, report: dnsbl_check.Report, action: str | None) -> None:
        try:
            async with Store.of(self.agent.config.agent).edit_async() as state:
                state.dnsbl.checks[report.family] = dnsbl_check.record(report, action)
        except Exception as exc:
            log.warning("DNSBL check: cannot record the result: %s", exc)
