"""One sync: detect → compare with the state → send where needed → record each outcome at once.

This is the only module that decides *whether* to talk to a provider. It is polite by
construction: nothing is sent when the address is what the provider already has (unless the
keepalive is due or the user forces it), a stopped target gets no request at all, and a target
in back-off waits out its time even across restarts, because all of it lives in the state.

Every part of a sync has a hard time limit, so one stuck part never holds the sync (and with it
the state lock and every later sync) hostage: detection (`detect_limit`), each provider call
(`provider_limit`), each zone apply (the zone's `timeout` key). A part past its limit is
abandoned with an error in the report and the state, and the sync goes on with the rest. A zone
apply runs in a thread of its own with its own event loop (`Apart`), because a backend may block
in ways no cancellation reaches (a FIFO read, a blocking call on the loop itself): that thread
may stay blocked, but it holds neither lock, and the zone is not applied again until it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ddnsagent import history, http
from ddnsagent.address import IPAddress
from ddnsagent.config import Config
from ddnsagent.detect import nat
from ddnsagent.detect.finder import crosscheck, detect
from ddnsagent.errors import FatalAnswer, SecretUnavailable, TransientError, ZoneApplyError
from ddnsagent.outcome import Detection, SyncReport, TargetReport
from ddnsagent.providers import client_for
from ddnsagent.providers.base import Common, Provider, user_agent_for
from ddnsagent.schedule import backoff
from ddnsagent.secrets import Secret, SecretSourceError, redact
from ddnsagent.store import (
    AgentState,
    Backoff,
    Detected,
    NatCheck,
    Sent,
    Stopped,
    Store,
    Target,
    ZoneRecord,
)

if TYPE_CHECKING:  # the zone code loads only when a [[zone]] is configured
    from ddnsagent.zones.base import ZoneBackend, ZoneCommon

log = logging.getLogger(__name__)

# Seconds a sync may take beyond the sum of its parts' limits (state writes, observers), before
# the daemon calls it stuck and stops pinging the systemd watchdog.
SYNC_SLACK = 30.0
# tenacity's wait between two tries is at most this (see `_send_with_retries`).
RETRY_WAIT_MAX = 30.0


@dataclass
class SyncOptions:
    reason: str = "schedule"
    force: bool = False
    dry_run: bool = False
    addresses: dict[int, IPAddress] | None = None  # given by a hook instead of detecting
    families: tuple[int, ...] | None = None  # send only these families (None: all)


class Agent:
    """Holds the configuration and runs syncs; the daemon swaps `config` on reload."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._running = asyncio.Lock()
        # Called with every real sync's report (metrics, notifications, systemd status); here
        # and not in the daemon, because the relay watchdog syncs through the agent directly.
        self.on_report: list[Callable[[SyncReport], None]] = []
        # Called before every real sync with its reason, and with the error of one that raised
        # instead of producing a report (the heartbeat's /start and failure form).
        self.on_start: list[Callable[[str], None]] = []
        self.on_failure: list[Callable[[str], None]] = []
        # Zone applies abandoned at their limit whose thread has not ended yet, by zone name.
        self._applying: dict[str, Apart] = {}
        self._since: float | None = None  # monotonic start of the sync in progress
        # A secret that cannot be read, as last logged per provider: said once as a warning
        # (by the daemon at start, or at the first send), then at debug until it changes or
        # a send goes through.
        self.unreadable: dict[str, str] = {}

    async def sync(self, options: SyncOptions) -> SyncReport:
        """One sync at a time in this process, and one across processes via the state lock."""
        async with self._running:
            cfg = self.config
            store = Store.of(cfg.agent)
            if not options.dry_run:
                _tell(self.on_start, options.reason)
            self._since = time.monotonic()
            try:
                async with store.edit_async(save=not options.dry_run) as state:
                    report = await self._sync_locked(cfg, store, state, options)
            except Exception as exc:
                if not options.dry_run:
                    _tell(self.on_failure, redact(str(exc)) or type(exc).__name__)
                raise
            finally:
                self._since = None
        if not options.dry_run:
            for observer in self.on_report:
                try:
                    observer(report)
                except Exception:
                    log.exception("a report observer failed")
        return report

    def overdue(self) -> bool:
        """True when the sync in progress has run past `longest_sync`: something no limit
        covers is stuck (a bug), and the daemon stops pinging the systemd watchdog."""
        since = self._since
        return since is not None and time.monotonic() - since > longest_sync(self.config)

    def known_address(self, family: int) -> str | None:
        """The address last detected for `family`, as recorded in the state."""
        entry = Store.of(self.config.agent).load().detected.get(family)
        return entry.address if entry is not None and entry.address else None

    async def detect(self, family: int) -> Detection:
        """A fresh detection of `family` from the configured sources (nothing recorded)."""
        return await detect(self.config.detect, family)

    async def _sync_locked(
        self, cfg: Config, store: Store, state: AgentState, options: SyncOptions
    ) -> SyncReport:
        report = SyncReport(options.reason)
        now = time.time()
        if options.addresses is not None:
            for family, address in options.addresses.items():
                report.detections[family] = Detection(family, address, "given on the command line")
        else:
            families = cfg.families
            found = await asyncio.gather(*(_detect_bounded(cfg, f) for f in families))
            report.detections = dict(zip(families, found, strict=True))
        for family, d in report.detections.items():
            remember = d.address is not None and not options.dry_run
            if remember:  # before the detected record is replaced: it closes the entry before
                kind, detail = history.origin(
                    options.reason, options.addresses is not None, d.source
                )
                history.note_detection(state, family, str(d.address), kind, detail, now)
            if remember and _remember_detection(state, family, d, now):
                report.changed.append(family)

        jobs = [self._provider(cfg, store, state, s, report, options) for s in cfg.providers]
        jobs += [self._zone(store, state, z, report, options) for z in cfg.zones]
        jobs.append(self._nat(cfg, state, report, options))
        await asyncio.gather(*jobs)
        return report

    async def _nat(
        self, cfg: Config, state: AgentState, report: SyncReport, options: SyncOptions
    ) -> None:
        """Compare an interface source with the echoes (detect/nat.py): for free when the
        echoes answered this sync, else after a change and once a day; a NAT episode is a
        warning once, then debug lines until the verdict or the pair changes."""
        if options.dry_run or options.addresses is not None:
            return
        now = time.time()
        for family, d in report.detections.items():
            last = state.nat.get(family)
            sources = cfg.detect.sources(family)
            changed = family in report.changed
            found = str(d.address) if d.address else None
            how = nat.due(sources, d.source if found else None, found, last, changed, now)
            if how is None:
                continue
            limit = detect_limit(cfg, family)
            try:
                async with asyncio.timeout(limit):
                    echo = d.address if how == "free" else None
                    verdict, notes = await crosscheck(cfg.detect, family, echo)
            except TimeoutError:
                verdict, notes = None, [f"no answer within {limit:g}s"]
            except Exception:  # a side check: never the reason a sync fails
                log.exception("IPv%d: comparing the interface with the echoes failed", family)
                verdict, notes = None, ["failed"]
            _record_nat(state, family, verdict, notes, now)

    async def _provider(
        self,
        cfg: Config,
        store: Store,
        state: AgentState,
        settings: Common,
        report: SyncReport,
        options: SyncOptions,
    ) -> None:
        target = state.target(settings.name)
        again = _check_fingerprint(state.salt, target, settings)
        provider: Provider = client_for(settings)
        # A provider that sends both families or many names in one request (dyndns2) is shown
        # this sync's addresses, what each family last sent, and the names stopped alone.
        prepare = getattr(provider, "prepare", None)
        if prepare is not None:
            prepare(
                {f: d.address for f, d in report.detections.items() if d.address is not None},
                {f: sent.address for f, sent in target.sent.items()},
                set(target.stopped_names),
            )
        for family in settings.families():
            if options.families is not None and family not in options.families:
                continue  # e.g. the relay refused our IPv6 address: only IPv6 is re-sent
            detection = report.detections.get(family)
            if detection is None:
                continue  # the family is not detected at all: nothing to say
            entry = TargetReport(settings.name, settings.type, family, None, "no-address", "")
            report.targets.append(entry)
            if detection.address is None:
                entry.message = f"no IPv{family} address detected; nothing sent"
                continue
            address = detection.address
            entry.address = str(address)
            await self._one(cfg, store, target, provider, family, address, entry, options, again)
            if entry.action == "sent" and family in target.sent:
                history.note_sent(
                    state, family, str(address), settings.name, target.sent[family].time
                )

    async def _one(
        self,
        cfg: Config,
        store: Store,
        target: Target,
        provider: Provider,
        family: int,
        address: IPAddress,
        entry: TargetReport,
        options: SyncOptions,
        again: bool = False,
    ) -> None:
        """Send one family to one provider if due. `again`: the user changed the secret of a
        stopped target, so the next send goes out even for an address already sent."""
        now = time.time()
        settings: Common = provider.settings
        name = settings.name
        stopped = target.stopped
        if stopped:
            entry.action, entry.message = "stopped", f"stopped since {_ts(stopped.since)}: "
            entry.message += stopped.reason
            entry.fix = f"{stopped.fix}, then run `ddnsagent reset {name}`"
            if options.force:  # a re-notify (relay) or --force must not skip it in silence
                log.warning("%s: not notified, %s — %s", name, entry.message, entry.fix)
            return
        trouble = target.backoff.get(family)
        if trouble is not None and trouble.retry_after > now:
            entry.action = "waiting"
            entry.message = f"waiting until {_ts(trouble.retry_after)} after: {trouble.last_error}"
            return
        sent = target.sent.get(family)
        due, why = _due(sent, str(address), settings.keepalive, now, options.force)
        if not due and again:
            due, why = True, "the secret changed; trying it"
        if not due:
            entry.action, entry.message = "unchanged", f"already has {address}"
            return
        # The secrets are read before a dry run says "would send", so that it fails as the
        # real run would, naming the source and how to set it.
        missing = _unavailable(settings.secrets())
        if missing is not None:
            entry.action, entry.message, entry.fix = "config", str(missing), _fix_of(missing)
            self._say_unreadable(name, family, entry)
            return
        if options.dry_run:
            entry.action = "dry-run"
            entry.message = f"would send ({why}): {provider.describe(family, address)}"
            return
        limit = provider_limit(cfg, settings)
        try:
            try:
                async with asyncio.timeout(limit):
                    message = await self._send_with_retries(cfg, provider, family, address)
            except TimeoutError:
                raise TransientError(
                    f"no complete answer within {limit:g}s (the provider's limit per sync, from "
                    "[detect] timeout and [agent] retries); abandoned"
                ) from None
        except SecretUnavailable as exc:
            entry.action, entry.message, entry.fix = "config", str(exc), _fix_of(exc)
            self._say_unreadable(name, family, entry)
            return
        except FatalAnswer as exc:
            # Answers are quoted in messages and kept in the state, which `status` prints from
            # another process that never read the secret: mask them before they are stored.
            reason = redact(str(exc))
            target.stopped = Stopped(reason, exc.fix, now)
            entry.action, entry.message = "stopped", reason
            entry.fix = f"{exc.fix}, then run `ddnsagent reset {name}`"
            log.error("%s: STOPPED: %s — %s", name, exc, entry.fix)
            store.checkpoint()
            return
        except TransientError as exc:
            failures = (trouble.failures if trouble is not None else 0) + 1
            wait = max(backoff(failures), exc.min_wait)
            error = redact(str(exc))
            target.backoff[family] = Backoff(failures, now + wait, error)
            entry.action = "failed"
            entry.message = f"{error}; next try after {_ts(now + wait)}"
            log.warning("%s: IPv%d update failed: %s", name, family, entry.message)
            store.checkpoint()
            return
        # A provider whose answer can say what the service recorded tells when it did not.
        unconfirmed = getattr(provider, "unconfirmed", None)
        target.sent[family] = Sent(str(address), time.time(), unconfirmed)
        target.backoff.pop(family, None)
        self.unreadable.pop(name, None)
        entry.action, entry.message = "sent", redact(f"{why}: {message}")
        log.info("%s: IPv%d %s sent (%s)", name, family, address, entry.message)
        # Names the service refused one by one (the rest of the batch went through).
        for host, (reason, fix) in getattr(provider, "name_stops", {}).items():
            target.stopped_names[host] = Stopped(redact(reason), fix, now)
            log.error(
                "%s: %s STOPPED: %s — %s, then run `ddnsagent reset %s`",
                name,
                host,
                redact(reason),
                fix,
                name,
            )
            entry.fix = f"{fix}, then run `ddnsagent reset {name}`"
        store.checkpoint()

    def _say_unreadable(self, name: str, family: int, entry: TargetReport) -> None:
        """An unreadable secret is a warning the first time, debug detail while it stays so."""
        said = self.unreadable.get(name) == entry.message
        (log.debug if said else log.warning)(
            "%s: IPv%d not sent: %s — %s", name, family, entry.message, entry.fix
        )
        self.unreadable[name] = entry.message

    async def _send_with_retries(
        self, cfg: Config, provider: Provider, family: int, address: IPAddress
    ) -> str:
        """A few quick retries for passing trouble; never for an answer that asks us to wait."""
        # lazy: only a sync that sends needs tenacity; status and check-config do not
        from tenacity import (
            AsyncRetrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
            wait_random,
        )

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, TransientError) and exc.min_wait == 0

        delay = cfg.agent.retry_delay
        # Only services that read the address from the connection need the family's route.
        bound = family if getattr(provider, "BIND_FAMILY", False) else None
        agent = user_agent_for(provider.settings, cfg.agent.user_agent)
        async with http.client(bound, cfg.detect.timeout, agent) as client:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(cfg.agent.retries),
                wait=wait_exponential(multiplier=delay, max=RETRY_WAIT_MAX) + wait_random(0, delay),
                retry=retry_if_exception(retryable),
                reraise=True,
            ):
                with attempt:
                    return await provider.update(family, address, client)
        raise AssertionError("unreachable")

    async def _zone(
        self,
        store: Store,
        state: AgentState,
        settings: ZoneCommon,
        report: SyncReport,
        options: SyncOptions,
    ) -> None:
        """Keep one local zone in step. Independent of providers: a failing zone blocks
        nothing else, and is tried again at every sync until it succeeds."""
        addresses = {f: d.address for f, d in report.detections.items() if d.address is not None}
        if not addresses:
            return
        shown = ", ".join(str(a) for _, a in sorted(addresses.items()))
        entry = TargetReport(settings.name, f"zone:{settings.type}", 0, shown, "unchanged", "")
        report.targets.append(entry)
        last = state.zones.get(settings.name, ZoneRecord())
        applied = dict(last.addresses or {})
        wanted = {f: str(a) for f, a in addresses.items()}
        fingerprint = repr(settings)
        if (
            not options.force
            and last.result == "ok"
            and last.fingerprint == fingerprint
            and all(applied.get(f) == a for f, a in wanted.items())
        ):
            entry.message = f"already holds {shown}"
            return
        # lazy: the zone code only when a [[zone]] is configured
        from ddnsagent.zones.base import desired
        from ddnsagent.zones.registry import backend_for  # lazy: as above

        backend: ZoneBackend = backend_for(settings)
        want = desired(settings, addresses)
        if options.dry_run:
            missing = _unavailable(_zone_secrets(settings))
            if missing is not None:  # the real apply fails so: say it now, with the fix
                entry.action, entry.message, entry.fix = "failed", str(missing), _fix_of(missing)
                return
            entry.action, entry.message = "dry-run", f"would apply: {backend.describe(want)}"
            return
        limit = settings.time_limit
        try:
            running = self._applying.get(settings.name)
            if running is not None and running.busy():
                raise ZoneApplyError(
                    f"the apply abandoned {time.monotonic() - running.started:.0f}s ago is still "
                    "blocked; not starting another until it ends (look for what blocks it: a "
                    "FIFO or a hung command)"
                )
            self._applying.pop(settings.name, None)
            apart = Apart(f"zone {settings.name}", lambda: backend.apply(want))
            try:
                message = await apart.result(limit)
            except TimeoutError:
                self._applying[settings.name] = apart
                raise ZoneApplyError(
                    f"the apply did not finish within {limit:g}s and was abandoned; find what "
                    "blocks it (a FIFO, a hung command or server), or raise the zone's `timeout` "
                    "key if it is really that slow"
                ) from None
        except (ZoneApplyError, SecretUnavailable, OSError) as exc:
            entry.action, entry.message = "failed", redact(str(exc))
            state.zones[settings.name] = replace(
                last, result="failed", error=entry.message, time=time.time()
            )
            log.warning("zone %s: %s", settings.name, entry.message)
            store.checkpoint()
            return
        entry.action, entry.message = "sent", message
        for family, address in wanted.items():
            history.note_sent(state, family, address, f"zone:{settings.name}", time.time())
        state.zones[settings.name] = ZoneRecord(
            result="ok",
            addresses={**applied, **wanted},
            fingerprint=fingerprint,
            time=time.time(),
            message=message,
        )
        log.info("zone %s: %s", settings.name, message)
        store.checkpoint()


class Apart:
    """One piece of async work run in a thread of its own, on an event loop of its own.

    The agent's loop only waits for the result, at most a given time: work that blocks its
    thread (a FIFO read in a worker, a blocking call made on the loop itself) cannot block the
    daemon, its signals or its watchdog. Past the limit the work is cancelled on its own loop
    (which ends a command run through `process.run_async`, group and all) and abandoned; its
    thread may stay blocked (no thread can be killed), which `busy()` tells. The thread is a
    daemon thread, and holds no lock of the agent's: it only ever returns a value.
    """

    def __init__(self, label: str, work: Callable[[], Awaitable[Any]]) -> None:
        self.started = time.monotonic()
        self._outer = asyncio.get_running_loop()
        self._done: asyncio.Future[Any] = self._outer.create_future()
        self._inner: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None
        self._cancel = False
        self._thread = threading.Thread(target=self._main, args=(work,), name=label, daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        """Whether the thread still runs (its work, or a worker thread the work started)."""
        return self._thread.is_alive()

    async def result(self, limit: float) -> Any:
        """The work's result or exception; TimeoutError (and the work cancelled) after `limit`."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), limit)
        except BaseException:  # the limit, or the agent's own sync cancelled (SIGTERM)
            self.cancel()
            raise

    def cancel(self) -> None:
        self._cancel = True
        if self._inner is not None:
            loop, task = self._inner
            with contextlib.suppress(RuntimeError):  # that loop has ended already
                loop.call_soon_threadsafe(task.cancel)

    def _main(self, work: Callable[[], Awaitable[Any]]) -> None:
        loop = asyncio.new_event_loop()
        workers = _DaemonWorkers()
        loop.set_default_executor(workers)
        outcome: tuple[Any, BaseException | None]
        try:
            task = asyncio.ensure_future(work(), loop=loop)
            self._inner = (loop, task)
            if self._cancel:
                task.cancel()
            outcome = (loop.run_until_complete(task), None)
        except BaseException as exc:  # delivered to the agent's loop, raised there
            outcome = (None, exc)
        finally:
            workers.shutdown()  # `busy()` until the worker threads the work started end too
            loop.close()
        with contextlib.suppress(RuntimeError):  # the agent's loop is closed: it has stopped
            self._outer.call_soon_threadsafe(self._deliver, outcome)

    def _deliver(self, outcome: tuple[Any, BaseException | None]) -> None:
        if self._cancel or self._done.done():
            return  # abandoned: nobody waits for it any more
        value, exc = outcome
        if exc is not None:
            self._done.set_exception(exc)
        else:
            self._done.set_result(value)


class _DaemonWorkers(concurrent.futures.ThreadPoolExecutor):
    """`asyncio.to_thread` for `Apart`: each call in a daemon thread of its own. The pool's own
    workers are joined when the interpreter exits, so one blocked for ever in a FIFO read would
    keep a `notify-now` or a hook from ever ending."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)  # starts no thread; `submit` below starts them
        self._started: list[threading.Thread] = []

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)

        thread = threading.Thread(target=call, daemon=True)
        self._started.append(thread)
        thread.start()
        return future

    def shutdown(self, wait: bool = True, **_: Any) -> None:
        if wait:
            for thread in self._started:
                thread.join()


def _tell(observers: list[Callable[[str], None]], what: str) -> None:
    """Each observer hears `what`; one that fails is logged, never the sync's problem."""
    for observer in observers:
        try:
            observer(what)
        except Exception:
            log.exception("a sync observer failed")


def detect_limit(cfg: Config, family: int) -> float:
    """How long detecting `family` may take in all: every source asked in turn, each within
    three `[detect] timeout`s (an HTTP request may spend one connecting, one sending and one
    waiting for the answer), plus one more for good measure."""
    return 3 * cfg.detect.timeout * (len(cfg.detect.sources(family)) + 1)


def provider_limit(cfg: Config, settings: Common) -> float:
    """How long one provider call (one family, its retries included) may take in all.

    The HTTP timeout (`[detect] timeout`) bounds each connect, send and wait for a byte, but not
    a request as a whole: a server that trickles its answer a byte at a time keeps it alive for
    ever, as would a provider whose own code hangs. So the whole call also has a limit, never
    shorter than what the timeouts and retries allow on their own: each try three HTTP timeouts
    (or the provider's own `timeout` plus 5 s, when it has one and it is longer), and the
    longest wait tenacity makes between tries. A provider's share of a sync is at most this per
    family it updates.
    """
    per_try = 3 * cfg.detect.timeout
    own = getattr(settings, "timeout", None)  # lexicon and rfc2136 have their own
    if isinstance(own, int | float):
        per_try = max(per_try, own + 5)
    a = cfg.agent
    waits = sum(
        min(RETRY_WAIT_MAX, a.retry_delay * 2**k) + a.retry_delay for k in range(a.retries - 1)
    )
    return a.retries * per_try + waits


def longest_sync(cfg: Config) -> float:
    """The longest a sync can take with every part at its limit (see `Agent.overdue`)."""
    detection = max((detect_limit(cfg, f) for f in cfg.families), default=0.0)
    parts = [provider_limit(cfg, p) * len(p.families()) for p in cfg.providers]
    parts += [z.time_limit for z in cfg.zones]
    parts.append(detection)  # the NAT comparison (detect/nat.py) runs beside them
    return cfg.agent.lock_timeout + detection + max(parts, default=0.0) + SYNC_SLACK


async def _detect_bounded(cfg: Config, family: int) -> Detection:
    limit = detect_limit(cfg, family)
    try:
        async with asyncio.timeout(limit):
            return await detect(cfg.detect, family)
    except TimeoutError:
        note = f"detection did not finish within {limit:g}s and was abandoned"
        log.warning("IPv%d: %s", family, note)
        return Detection(family, None, None, [note])


def _due(
    sent: Sent | None, address: str, keepalive: float, now: float, force: bool
) -> tuple[bool, str]:
    if force:
        return True, "forced"
    if sent is None:
        return True, "first update"
    if sent.address != address:
        return True, f"address changed from {sent.address}"
    if keepalive and now - sent.time >= keepalive:
        return True, "keepalive"
    return False, ""


# Marks a config fingerprint that leaves out where the secrets come from; one without it was
# kept by an earlier version, over the settings with the secrets' origins.
CONFIG_FP_FORM = "2:"


def _check_fingerprint(salt_hex: str, target: Target, settings: Common) -> bool:
    """A changed configuration or secret lifts a stop and a back-off: the user acted.

    A changed configuration (hosts, server, …) also forgets what was sent, since the new names
    or server have not been told anything yet. A changed secret keeps what was sent: the
    service still holds those addresses. Moving a secret to another source (environment, file,
    credential) with the same value changes neither. True when a secret change lifted a stop or
    back-off, so that the new secret is tried at once."""
    salt = bytes.fromhex(salt_hex)

    def digest(data: str) -> str:
        return hashlib.blake2b(data.encode(), key=salt, digest_size=16).hexdigest()

    config_fp = CONFIG_FP_FORM + digest(_config_data(settings))
    secret_fp = None
    try:
        h = hashlib.blake2b(key=salt, digest_size=16)
        for secret in settings.secrets():
            h.update(secret.reveal().encode() + b"\0")
        secret_fp = h.hexdigest()
    except SecretUnavailable:
        pass
    old_config, old_secret = target.config_fp, target.secret_fp
    if old_config is not None and not old_config.startswith(CONFIG_FP_FORM):
        config_changed = old_config != digest(settings.fingerprint_data())  # an earlier form
    else:
        config_changed = old_config is not None and old_config != config_fp
    secret_changed = old_secret is not None and secret_fp is not None and old_secret != secret_fp
    lifted = False
    if (config_changed or secret_changed) and (
        target.stopped or target.backoff or target.stopped_names
    ):
        what = "configuration" if config_changed else "secret"
        log.info("%s: %s changed; lifting its stop/back-off", settings.name, what)
        target.stopped = None
        target.backoff.clear()
        target.stopped_names.clear()
        lifted = True
    if config_changed:
        target.sent.clear()  # a new host list or server has not been told anything yet
    target.config_fp = config_fp
    if secret_fp is not None:
        target.secret_fp = secret_fp
    return lifted and not config_changed


def _config_data(settings: Common) -> str:
    """The provider's settings as `fingerprint_data` gives them, with each secret's origin
    left out: moving a password from the environment to a credential changes no setting."""
    data = settings.fingerprint_data()
    for secret in settings.secrets():
        data = data.replace(repr(secret), "Secret(…)").replace(repr(secret.origin), "'…'")
    return data


def _unavailable(secrets: list[Secret]) -> SecretUnavailable | None:
    """The first of `secrets` that cannot be read, as its error; None when all can."""
    for secret in secrets:
        try:
            secret.reveal()
        except SecretUnavailable as exc:
            return exc
    return None


def _fix_of(exc: SecretUnavailable) -> str | None:
    """How to set the secret up; None when the message says it already (`chmod 600`)."""
    return exc.fix if isinstance(exc, SecretSourceError) else None


def _zone_secrets(settings: ZoneCommon) -> list[Secret]:
    """The secrets a zone's settings hold (rfc2136's TSIG secret), in field order."""
    return [v for f in fields(settings) if isinstance(v := getattr(settings, f.name), Secret)]


def _remember_detection(state: AgentState, family: int, d: Detection, now: float) -> bool:
    """Store the detected address; True when it differs from the one known before."""
    old = state.detected.get(family)
    address = str(d.address)
    if old is None or old.address != address:
        previous = old.address if old is not None else None
        state.detected[family] = Detected(address, now, d.source, now, previous)
        return old is not None
    state.detected[family] = replace(old, source=d.source, checked=now)
    return False


def _record_nat(
    state: AgentState, family: int, verdict: nat.Verdict | None, notes: list[str], now: float
) -> None:
    """Keep the comparison; say a new NAT episode (a new verdict or pair) once, and its end."""
    last = state.nat.get(family)
    if verdict is None:
        if last is None:
            state.nat[family] = NatCheck(tried=now)
        else:
            last.tried = now
        log.debug("IPv%d: interface and echoes not compared: %s", family, "; ".join(notes))
        return
    local = ",".join(verdict.local)
    pair = (verdict.kind, verdict.interface, local, verdict.echo)
    same = last is not None and (last.result, last.interface, last.local, last.echo) == pair
    since = last.since if last is not None and same else now
    kind, interface, _, echo = pair
    state.nat[family] = NatCheck(now, kind, now, interface, local, echo, since)
    if same:
        log.debug("IPv%d: %s and the echoes: %s, as before", family, interface, kind)
    elif verdict.nat:
        message, fix = nat.words(verdict.kind, verdict.interface, local, verdict.echo)
        log.warning("IPv%d: BEHIND ANOTHER NAT: %s — %s", family, message, fix)
    elif last is not None and last.result in nat.NAT_KINDS:
        log.info(
            "IPv%d: %s (%s) and the echoes (%s) agree now: no other NAT in the way any more",
            family,
            verdict.interface,
            local,
            verdict.echo,
        )


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def reset(store: Store, name: str) -> bool:
    """Forget a target's stop, back-off and what was sent, so the next sync starts clean."""
    with store.edit() as state:
        return state.targets.pop(name, None) is not None
