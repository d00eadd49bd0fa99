"""`ddnsagent run`: the agent on a schedule, in the foreground, for systemd.

Signals: SIGHUP reloads the configuration (a broken new file is reported and the old one kept),
SIGUSR1 asks for a sync now, SIGTERM/SIGINT end the daemon cleanly. A sync in flight when the
daemon stops is cancelled; every outcome already written stays written, because the state is
saved after each target and replaced atomically.

SIGTERM ends the process within `EXIT_WITHIN` seconds whatever is blocked. The orderly shutdown
is bounded step by step; a worker thread that is still blocked after it (an abandoned zone apply
in a FIFO read, a provider call in a thread) is not waited for: the process leaves with
`os._exit`. And should the event loop itself be blocked, so that the orderly shutdown cannot even
begin, a thread armed by the signal handler ends the process at the deadline. Leaving that way
is safe because every file the agent writes is replaced atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ddnsagent import config as config_mod
from ddnsagent import control as control_mod
from ddnsagent import logsetup
from ddnsagent.ctlclient import config_stamp
from ddnsagent.errors import ConfigError, DdnsagentError, SecretUnavailable
from ddnsagent.exitcodes import EXIT_CONFIG, EXIT_OK, EXIT_RETRY, EXIT_STOPPED
from ddnsagent.outcome import SyncReport
from ddnsagent.outputs import heartbeat, metrics, notify, sdnotify
from ddnsagent.schedule import sync_trigger
from ddnsagent.secrets import Secret, redact
from ddnsagent.store import StateLock, Store, note_heartbeat
from ddnsagent.sync import Agent, SyncOptions

log = logging.getLogger(__name__)

EXIT_WITHIN = 8.0  # seconds from SIGTERM to the end of the process, whatever is blocked
NOTIFY_CLOSE = 2.0  # seconds for notifications still being sent at shutdown
TASKS_END = 3.0  # seconds for cancelled tasks (a sync, the relay watch) to end
THREADS_END = 1.0  # seconds for worker threads to end before the process leaves without them


class Daemon:
    def __init__(self, path: Path, cfg: config_mod.Config) -> None:
        self.path = path
        self.agent = Agent(cfg)
        # The version of the file the running configuration came from: notify-now delegates
        # only when it sees the same one (else it syncs itself, and reports the file's mistakes).
        self.config_stamp = config_stamp(path)
        self.stopping = asyncio.Event()
        self.scheduler: Any = None
        self.watcher: Any = None
        self._relay_task: asyncio.Future[None] | None = None
        self._watched: set[str] = set()
        self._said_no_netlink = False
        self._tasks: list[asyncio.Future[Any]] = []
        self.sd = sdnotify.Notifier.from_env(unset=True)
        self.metrics = metrics.Metrics()
        self.notifier = notify.Notifier()  # disabled until [notify] is loaded
        # Read here, not with the other outputs: the first sync may start before those load.
        self.heartbeat = heartbeat.Heartbeat.from_config(
            cfg.heartbeat, user_agent=cfg.agent.user_agent, record=self._record_heartbeat
        )
        self._metrics_server: Any = None
        self._textfile: asyncio.Future[None] | None = None
        self._flush: asyncio.Future[None] | None = None  # the mail queue's flush after a change
        self.agent.on_report.append(self._observe)
        self.agent.on_start.append(lambda reason: self.heartbeat.sync_started(reason))
        self.agent.on_failure.append(lambda error: self.heartbeat.sync_failed(error))
        self._deadline = _ExitDeadline(EXIT_WITHIN)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dnsbl: Any = None  # the DNSBL check (ddnsagent.dnsbl.watch), with [dnsbl] only
        self._dnsbl_daily: asyncio.Future[None] | None = None
        self._dnsbl_checks: set[asyncio.Future[None]] = set()

    def healthy(self) -> bool:
        """What the systemd watchdog pings for (besides a loop that runs the ping at all): the
        scheduler runs and no sync has outlived the sum of its parts' limits."""
        return bool(self.scheduler is not None and self.scheduler.running) and (
            not self.agent.overdue()
        )

    def _on_stop_signal(self, *_: Any) -> None:
        """SIGTERM/SIGINT, as a Python handler rather than `loop.add_signal_handler`: Python runs
        it in the main thread even when the event loop is blocked (the blocking call is
        interrupted, the handler runs, the call resumes). It arms the exit deadline and asks the
        loop to stop; it takes no lock and starts no thread (either could deadlock here)."""
        self._deadline.arm()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the exit is under way
                self._loop.call_soon_threadsafe(self.stopping.set)

    # -- what the outside world hears ------------------------------------------------------------

    def _observe(self, report: SyncReport) -> None:
        _log_detections(report)
        if self._dnsbl is not None:  # a changed address is checked against the blocklists
            task = self._dnsbl.observe(report)
            if task is not None:
                self._dnsbl_checks.add(task)
                task.add_done_callback(self._dnsbl_checks.discard)
        self.metrics.observe_sync(report)
        self.notifier.observe_sync(report)
        self.heartbeat.observe_sync(report)
        addresses = ", ".join(
            f"IPv{f} {d.address}" for f, d in sorted(report.detections.items()) if d.address
        )
        worst = {
            EXIT_OK: "ok",
            EXIT_RETRY: "some targets will retry",
            EXIT_CONFIG: "configuration problem",
            EXIT_STOPPED: "a target is stopped",
        }[report.exit_code]
        self.sd.status(f"{addresses or 'no address'}; last sync: {worst}")

    def relay_signal(self, kind: str) -> None:
        self.metrics.observe_signal(kind)

    def backscatter(self, rate: int, limit: int) -> None:
        self.notifier.backscatter(rate, limit)

    def relay_problem(self, kind: str, check: str, line: str) -> None:
        self.notifier.relay_problem(kind, check, line)

    def dnsbl_found(self, address: str, verdict: str, text: str) -> None:
        self.notifier.dnsbl(address, verdict, text)

    def bounce_guard(self, text: str) -> None:
        """The bounce guard's one notice of an episode (relay/guard.py), as a `relay` event."""
        self.notifier.event("relay", f"{self.notifier.host}: bounces put on hold", text, "warning")

    def reconnected(self, outcome: Any) -> None:
        self.metrics.observe_reconnect(metrics.reconnect_result(outcome))
        self.notifier.observe_reconnect(outcome)

    async def _start_outputs(self, old: config_mod.Config | None) -> None:
        """Metrics endpoint / textfile and notifications, (re)built when their settings change."""
        cfg = self.agent.config
        if old is None or old.metrics != cfg.metrics:
            if self._metrics_server is not None:
                self._metrics_server.close()
                self._metrics_server = None
            if self._textfile is not None:
                self._textfile.cancel()
                self._textfile = None
            m = cfg.metrics
            if m is not None:
                from ddnsagent.outputs import exporter  # lazy: the exposition only with [metrics]
            if m is not None and m.listen is not None:
                try:
                    self._metrics_server = await exporter.serve(self.metrics, *m.listen)
                    log.info("metrics on http://%s:%d/metrics", *m.listen)
                except OSError as exc:
                    log.warning("no metrics endpoint at %s:%d: %s", *m.listen, exc.strerror)
            if m is not None and m.textfile is not None:
                self._textfile = asyncio.ensure_future(
                    exporter.textfile_loop(self.metrics, m.textfile)
                )
        previous = self.notifier
        if cfg.notify is not None:
            self.notifier = await notify.Notifier.load(cfg.notify, previous)
        else:
            self.notifier = notify.Notifier()
        if previous is not self.notifier:
            previous.close()
        if old is not None and old.heartbeat is not cfg.heartbeat:
            before = self.heartbeat
            self.heartbeat = heartbeat.Heartbeat.from_config(
                cfg.heartbeat, user_agent=cfg.agent.user_agent, record=self._record_heartbeat
            )
            # the pings of the old one still queued may go out, bounded by its own timeout
            self._tasks.append(asyncio.ensure_future(before.aclose(before.timeout)))

    def _record_heartbeat(self, result: heartbeat.PingResult, preset: str) -> None:
        """In a worker thread: the ping's result in the state, for `status`."""
        with Store.of(self.agent.config.agent).edit() as state:
            note_heartbeat(state, result.time, result.kind, result.ok, result.result, preset)

    async def tick(self, reason: str = "schedule") -> None:
        """One scheduled sync; a failure is logged and the schedule goes on."""
        try:
            report = await self.agent.sync(SyncOptions(reason=reason))
        except asyncio.CancelledError:
            log.info("sync (%s) cancelled: the daemon is stopping", reason)
            return
        except DdnsagentError as exc:
            log.error("sync failed: %s", exc)
            return
        except Exception:
            log.exception("sync failed unexpectedly; will try again at the next interval")
            return
        # What was found and sent is logged once, where it happened: each send, failure and
        # stop by the agent (sync.py), the detection by `_observe`, for every sync alike.
        await self._after_change(report)

    async def _after_change(self, report: Any) -> None:
        """A new address: the relay knows it now, so deferred mail can go (when [relay] is set).

        The flush waits `settle` first, in a task of its own: the sync that asked for it is
        done, so a trigger arriving meanwhile is not skipped. A newer change starts the wait
        again (the relay must learn that address too); a flush is only a nudge to the queue
        manager, so cutting one short loses nothing."""
        if report.changed and self.agent.config.relay is not None:
            # lazy: the relay code (~20 ms, and its memory) only when [relay] is set
            from ddnsagent.relay.reconnect import flush_queue

            if self._flush is not None:
                self._flush.cancel()
            self._flush = asyncio.ensure_future(flush_queue(self.agent.config))

    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Requests from hook scripts and `ddnsagent reconnect`, answered when done. What may be
        asked is checked in control.parse_request (raises control.BadRequest, which the listener
        answers): addresses pass the same accept policy as detected ones."""
        cfg = self.agent.config
        asked = control_mod.parse_request(request, cfg.detect.accept, cfg.families)
        if isinstance(asked, control_mod.SyncRequest):
            if asked.config_stamp is not None and asked.config_stamp != self.config_stamp:
                return {
                    "ok": False,
                    "stale_config": True,
                    "error": f"{self.path} changed since the daemon loaded it",
                }
            options = SyncOptions(
                reason=asked.reason,
                force=asked.force,
                dry_run=asked.dry_run,
                addresses=asked.addresses,
            )
            report = await self.agent.sync(options)
            if not asked.dry_run:  # a dry run changes nothing, not even the mail queue
                await self._after_change(report)
            # masked here, where the secrets are known: the client (notify-now) never reads them
            return {"ok": True, "report": _masked(report.as_dict())}
        # lazy: the reconnect procedure only when someone asks for one
        from ddnsagent.relay.reconnect import reconnect

        outcome = await reconnect(
            self.agent, "requested by hand", ignore_cooldown=asked.ignore_cooldown
        )
        self.reconnected(outcome)
        return {"ok": outcome.done, "message": outcome.message}

    def _on_sync_signal(self) -> None:
        """SIGUSR1: say that it arrived (the sync it asks for may wait behind a running one)."""
        log.info("SIGUSR1 received: syncing now")
        self._trigger("signal")

    def _trigger(self, reason: str) -> None:
        """A sync as soon as possible. One may wait behind a running one (max_instances=2), so a
        request that arrives during a sync is not lost; it never expires (no misfire grace)."""
        self.scheduler.add_job(
            self.tick,
            args=[reason],
            id=f"now-{reason}",
            replace_existing=True,
            max_instances=2,
            misfire_grace_time=None,
            next_run_time=datetime.now(),
        )

    def _watch_relay(self) -> None:
        """(Re)start reading the mail log when [relay] is set; a reload that changes [relay]
        restarts it (the log position is kept in the state, so nothing is read twice)."""
        if self._relay_task is not None:
            self._relay_task.cancel()
            self._relay_task = None
        if self.agent.config.relay is None:
            return
        # lazy: the relay code (~20 ms, and its memory) only when [relay] is set
        from ddnsagent.relay.watch import RelayWatch

        relay_watch = RelayWatch(self.agent, events=self)
        self.metrics.set_bounce_rate(lambda: relay_watch.decider.bounce_rate(time.time()))
        self._relay_task = asyncio.ensure_future(relay_watch.run())

    def _watch_dnsbl(self) -> None:
        """(Re)start the DNSBL check when [dnsbl] is set and enabled: after each change (see
        `_observe`) and daily; a reload that removes or disables it stops it."""
        cfg = self.agent.config.dnsbl
        if cfg is None or not cfg.enabled:
            if self._dnsbl_daily is not None:
                self._dnsbl_daily.cancel()
            self._dnsbl = self._dnsbl_daily = None
            return
        if self._dnsbl is None:
            # lazy: the DNSBL check (and its DNS code) only when [dnsbl] is set
            from ddnsagent.dnsbl.watch import DnsblWatch

            self._dnsbl = DnsblWatch(self.agent, events=self)
        if self._dnsbl_daily is None:
            self._dnsbl_daily = asyncio.ensure_future(self._dnsbl.daily())

    async def _watch_interfaces(self) -> None:
        """Learn of address changes on `interface:` sources from the kernel, and sync at once.

        Where netlink cannot be used, say so once; the interval schedule still polls.
        """
        cfg = self.agent.config.detect
        names = {s.arg for f in (4, 6) for s in cfg.sources(f) if s.kind == "interface"}
        if names == self._watched:
            return
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        self._watched = names
        if not names:
            return
        # lazy: the netlink watcher (and its memory) only when an `interface:` source is set
        from ddnsagent.detect import netlink

        watcher = netlink.AddressWatcher(names, lambda: self._trigger("address"), debounce=0.15)
        try:
            await watcher.start()
        except netlink.NetlinkUnavailable as exc:
            if not self._said_no_netlink:
                log.warning(
                    "cannot watch %s for address changes (%s); checking every interval instead",
                    ", ".join(sorted(names)),
                    exc,
                )
                self._said_no_netlink = True
            return
        self.watcher = watcher
        log.info("watching %s for address changes", ", ".join(sorted(names)))

    def reload(self) -> None:
        self.sd.reloading()
        stamp = config_stamp(self.path)  # before reading: a later edit makes it stale, not lost
        try:
            new = config_mod.load(self.path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.sd.ready("reload refused; running with the previous configuration")
            return
        except Exception:
            log.exception("reload refused, keeping the running configuration")
            self.sd.ready("reload refused; running with the previous configuration")
            return
        old = self.agent.config
        self.agent.config = new
        self.config_stamp = stamp
        if (old.relay, old.reconnect) != (new.relay, new.reconnect):
            self._watch_relay()
        if old.dnsbl != new.dnsbl:
            self._watch_dnsbl()
        self._tasks.append(asyncio.ensure_future(self._start_outputs(old)))
        self.sd.ready(f"configuration reloaded; every {int(new.agent.interval)}s")
        logsetup.set_level(new.agent.log_level, new.agent.debug_libraries)
        warn_unset_secrets(new, self.agent.unreadable)
        self._schedule(now=False)  # the new interval counts from here; the sync is below
        log.info("configuration reloaded from %s", self.path)
        self._tasks.append(asyncio.ensure_future(self._watch_interfaces()))
        self._trigger("reload")

    def _schedule(self, now: bool = True) -> None:
        a = self.agent.config.agent
        trigger = sync_trigger(a.interval, a.jitter)
        first = {"next_run_time": datetime.now()} if now else {}
        self.scheduler.add_job(
            self.tick,
            trigger,
            id="sync",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(a.interval),
            **first,
        )

    async def main(self) -> int:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        self._loop = loop
        self.scheduler = AsyncIOScheduler(event_loop=loop)
        StateLock.give_up_waiting(False)
        # Handlers first: a signal that arrives during start-up must not kill the process.
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR1, self._on_sync_signal)
        self._deadline.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        self._watch_dnsbl()  # before the first sync, whose change it checks
        self._schedule()
        self.scheduler.start()
        a = self.agent.config.agent
        log.info(
            "ddnsagent running: every %ss (±%ss), state in %s",
            int(a.interval),
            int(a.jitter),
            a.state_dir,
        )
        warn_unset_secrets(self.agent.config, self.agent.unreadable)
        socket_path = self.agent.config.agent.control_socket or control_mod.default_socket_path()
        server = None
        try:
            server = await control_mod.serve(socket_path, self.control)
        except OSError as exc:
            log.warning(
                "no control socket at %s (%s); hooks will sync on their own",
                socket_path,
                exc.strerror,
            )
        await self._watch_interfaces()
        self._watch_relay()
        with contextlib.suppress(DdnsagentError):
            known = Store.of(a).load().detected
            self.metrics.seed_addresses(
                {f: (d.address, d.since) for f, d in known.items() if d.address}
            )
        await self._start_outputs(None)
        self.sd.ready(f"checking every {int(a.interval)}s")
        self._tasks.append(asyncio.ensure_future(sdnotify.watchdog_loop(self.sd, self.healthy)))
        await self.stopping.wait()
        log.info("stopping")
        self.sd.stopping()
        if self._metrics_server is not None:
            self._metrics_server.close()
        await asyncio.gather(
            self.notifier.aclose(NOTIFY_CLOSE), self.heartbeat.aclose(NOTIFY_CLOSE)
        )
        if server is not None:
            server.close()
            with contextlib.suppress(OSError):
                socket_path.unlink()
        if self._relay_task is not None:
            self._relay_task.cancel()
        if self.watcher is not None:
            self.watcher.close()
        self.scheduler.shutdown(wait=False)
        # A sync waiting for the state lock waits in a thread, which asyncio.run would join:
        # make it give up, or the exit would take up to lock_timeout.
        StateLock.give_up_waiting()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=TASKS_END)
        return 0


class _ExitDeadline:
    """A daemon thread that ends the process `seconds` after `arm()`, whatever else is blocked.

    `arm()` is called from a signal handler, so it only writes a byte to a pipe: no lock, no
    thread start, nothing that could wait for the interrupted code.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._pipe: tuple[int, int] | None = None

    def start(self) -> None:
        if self._pipe is not None:
            return
        self._pipe = os.pipe()
        threading.Thread(target=self._wait, name="exit deadline", daemon=True).start()

    def arm(self) -> None:
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe[1], b"!")

    def _wait(self) -> None:
        assert self._pipe is not None
        os.read(self._pipe[0], 1)
        time.sleep(self.seconds)
        # Say why, if logging is still usable; a blocked log handler must not hold the exit back.
        said = threading.Thread(
            target=log.error,
            args=("still not stopped %gs after the signal; leaving now", self.seconds),
            daemon=True,
        )
        said.start()
        said.join(0.5)
        os._exit(EXIT_OK)


def _log_detections(report: SyncReport) -> None:
    """One line per family that matters: no address found is a warning (nothing is sent for
    it), so is a disagreement of the sources; sources that failed beside one that answered are
    worth an info line."""
    for family, d in sorted(report.detections.items()):
        notes = "; ".join(d.notes)
        if d.address is None:
            log.warning(
                "no IPv%d address found%s; nothing sent for IPv%d",
                family,
                f" ({notes})" if notes else "",
                family,
            )
        elif notes:
            log.info("IPv%d %s (from %s); besides: %s", family, d.address, d.source, notes)


def warn_unset_secrets(cfg: config_mod.Config, said: dict[str, str]) -> None:
    """At start and on reload: every secret the configuration names is read once, and one
    that cannot be (an unset variable, a missing file or credential) is named now rather than
    at the first update that needs it. `said` (the agent's `unreadable`) learns it, so the
    sends that fail for it do not say it again."""
    owners: list[tuple[str, str, Any]] = [("provider", p.name, p.secrets()) for p in cfg.providers]
    owners += [
        ("zone", z.name, [getattr(z, f.name) for f in dataclasses.fields(z)]) for z in cfg.zones
    ]
    for kind, name, secrets in owners:
        for secret in secrets:
            if not isinstance(secret, Secret):
                continue
            try:
                secret.reveal()
            except SecretUnavailable as exc:
                log.warning("%s %s: %s; its updates fail until it is set", kind, name, exc)
                if kind == "provider":
                    said.setdefault(name, str(exc))  # the first is what a send meets


def _masked(value: Any) -> Any:
    """Every string in a reply through the secret mask, as the printed report is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _leave_without_stuck_threads(code: int) -> None:
    """Wait a moment for worker threads; when some are still blocked, leave without them.

    The interpreter would join them at exit (ThreadPoolExecutor's workers are not daemon
    threads, and `asyncio.to_thread` cannot be interrupted), which for a thread blocked in a FIFO
    read is for ever."""
    deadline = time.monotonic() + THREADS_END
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in threading.enumerate() if t is not main and t.is_alive() and not t.daemon]
    if not stuck:
        return
    log.warning(
        "%d worker thread(s) still blocked (an abandoned zone apply or provider call); "
        "leaving without them",
        len(stuck),
    )
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run(path: Path, cfg: config_mod.Config) -> int:
    """`asyncio.run`, except that the end waits for worker threads only `THREADS_END` seconds
    (asyncio.run waits for them without a limit)."""
    daemon = Daemon(path, cfg)
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(daemon.main())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()  # tells idle workers to end; does not wait for busy ones
    _leave_without_stuck_threads(code)
    return code
