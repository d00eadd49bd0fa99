"""`ddnsagent run`: the agent on a schedule, in the foreground, for systemd.

Signals: SIGHUP reloads the configuration (a broken new file is reported and the old one kept),
SIGUSR1 asks for a sync now, SIGTERM/SIGINT end the daemon cleanly. A sync in flight when the
daemon stops is cancelled; every outcome already written stays written, because the state is
saved after each target and replaced atomically.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

from ddnsagent import config as config_mod
from ddnsagent import logsetup
from ddnsagent.agent import Agent, SyncOptions
from ddnsagent.errors import ConfigError, DdnsagentError

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, path: Path, cfg: config_mod.Config) -> None:
        self.path = path
        self.agent = Agent(cfg)
        self.stopping = asyncio.Event()
        self.scheduler: Any = None

    async def tick(self, reason: str = "schedule") -> None:
        """One scheduled sync; a failure is logged and the schedule goes on."""
        try:
            report = await self.agent.sync(SyncOptions(reason=reason))
        except DdnsagentError as exc:
            log.error("sync failed: %s", exc)
            return
        except Exception:
            log.exception("sync failed unexpectedly; will try again at the next interval")
            return
        for d in report.detections.values():
            for note in d.notes:
                (log.warning if d.conflict else log.info)("IPv%d: %s", d.family, note)
        for t in report.targets:
            if t.action not in ("unchanged",):
                log.info("%s IPv%d: %s: %s", t.name, t.family, t.action, t.message)

    def _trigger(self, reason: str) -> None:
        self.scheduler.add_job(
            self.tick,
            args=[reason],
            id=f"now-{reason}",
            replace_existing=True,
            next_run_time=datetime.now(),
        )

    def reload(self) -> None:
        try:
            new = config_mod.load(self.path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        self.agent.config = new
        logsetup.set_level(new.agent.log_level)
        self._schedule()
        log.info("configuration reloaded from %s", self.path)
        self._trigger("reload")

    def _schedule(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        a = self.agent.config.agent
        trigger = IntervalTrigger(seconds=a.interval, jitter=int(a.jitter) or None)
        self.scheduler.add_job(
            self.tick,
            trigger,
            id="sync",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(a.interval),
            next_run_time=datetime.now(),
        )

    async def main(self) -> int:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        self.scheduler = AsyncIOScheduler(event_loop=loop)
        self._schedule()
        self.scheduler.start()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self._trigger, "signal")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        a = self.agent.config.agent
        log.info(
            "ddnsagent running: every %ss (±%ss), state in %s",
            int(a.interval),
            int(a.jitter),
            a.state_dir,
        )
        await self.stopping.wait()
        log.info("stopping")
        self.scheduler.shutdown(wait=False)
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()
        return 0


def run(path: Path, cfg: config_mod.Config) -> int:
    return asyncio.run(Daemon(path, cfg).main())
