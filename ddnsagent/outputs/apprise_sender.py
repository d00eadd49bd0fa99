"""Delivering messages through apprise (the optional `notify` extra) without ever delaying
the daemon.

apprise is synchronous, so messages go through a bounded queue to one worker thread, which
exists only while there is something to send. `submit()` returns at once and never raises; a
full queue drops the message with a warning, so a slow chat service never delays a sync. Each
request is bounded by `[notify] timeout` (apprise's connect and read timeouts).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ddnsagent.errors import SecretUnavailable
from ddnsagent.outputs.apprise_urls import (
    describe,
    is_apprise_url,
    register_url_secrets,
    split_urls,
)
from ddnsagent.outputs.notify_settings import INSTALL_HINT, NotifyConfig
from ddnsagent.secrets import redact

log = logging.getLogger(__name__)

LEVELS = ("info", "success", "warning", "failure")  # apprise's notification types
QUEUE_SIZE = 32  # messages waiting; more are dropped
IDLE_EXIT = 10.0  # seconds the worker thread waits for more before it ends


@dataclass(frozen=True)
class Message:
    kind: str  # the event, for our own log lines
    title: str
    body: str
    level: str  # one of LEVELS; anything else is sent as "info"


class AppriseSender:
    """Sends messages to apprise targets from a worker thread; every method returns at once."""

    def __init__(self, targets: Any) -> None:
        # An apprise.Apprise with at least one URL (or anything with its notify()).
        self.targets = targets
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._said_full = False

    def submit(self, message: Message) -> bool:
        """Queue `message`; False when the queue is full or the sender closed."""
        if self._closed:
            return False
        with self._lock:
            if self._queue.qsize() >= QUEUE_SIZE:
                if not self._said_full:
                    log.warning(
                        "notification queue full; dropping %s messages for now", message.kind
                    )
                    self._said_full = True
                return False
            self._said_full = False
            self._queue.put_nowait(message)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="ddnsagent-notify", daemon=True
                )
                self._worker.start()
        return True

    def _work(self) -> None:
        while True:
            try:
                message = self._queue.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            if message is None:
                with self._lock:
                    self._worker = None
                return
            self._send(message)

    def _send(self, message: Message) -> None:
        started = time.monotonic()
        level = message.level if message.level in LEVELS else "info"
        try:
            # The type as a plain string: apprise 1.x has no NotifyType enum, 2.x converts.
            ok = bool(
                self.targets.notify(body=message.body, title=message.title, notify_type=level)
            )
        except Exception as exc:
            log.warning("%s notification failed: %s", message.kind, redact(str(exc)) or exc)
            return
        took = time.monotonic() - started
        if ok:
            log.info("%s notification sent (%.1fs)", message.kind, took)
        else:
            log.warning(
                "%s notification not delivered to every target (%.1fs); apprise said why above",
                message.kind,
                took,
            )

    def close(self, timeout: float = 0.0) -> bool:
        """No more messages; the worker sends what is queued, then ends. Waits up to `timeout`
        seconds for that; True when nothing is left to send."""
        with self._lock:
            self._closed = True
            worker = self._worker
            if worker is None:
                return True
            self._queue.put_nowait(None)
        if timeout > 0:
            worker.join(timeout)
        return not worker.is_alive()

    async def aclose(self, timeout: float) -> bool:
        """close() without blocking the event loop: for the daemon's exit."""
        return await asyncio.to_thread(self.close, timeout)


def load_targets(cfg: NotifyConfig) -> Any | None:
    """Read the URLs and load them into an apprise.Apprise. Never raises: on trouble the error
    is logged and None returned (notifications are not worth a dead daemon)."""
    try:
        text = cfg.urls.reveal()
    except SecretUnavailable as exc:
        log.error("notifications are off: %s", exc)
        return None
    urls = split_urls(text)
    for url in urls:
        register_url_secrets(url)  # before apprise sees them, and may log them
    try:
        # lazy: apprise is optional, and loading it and its plugins takes hundreds of ms
        import apprise
    except ImportError:
        log.error("notifications are off: apprise is not installed (%s)", INSTALL_HINT)
        return None
    quiet_apprise()
    targets = apprise.Apprise()
    for i, url in enumerate(urls, 1):
        before = len(targets)
        if not is_apprise_url(url):
            log.error("[notify] URL %s is not an apprise URL; skipped", describe(i, url))
        elif not targets.add(url):
            log.error("[notify] URL %s is not understood by apprise; skipped", describe(i, url))
        else:
            _bound_time([targets[n] for n in range(before, len(targets))], url, cfg.timeout)
    if len(targets) == 0:
        log.error("notifications are off: no usable URL in %s", cfg.urls.origin)
        return None
    return targets


def _bound_time(services: list[Any], url: str, timeout: float) -> None:
    """`timeout` for each service's connect and read, unless its URL sets cto=/rto= itself."""
    query = dict(parse_qsl(urlsplit(url).query)) if "?" in url else {}
    for service in services:
        if "cto" not in query:
            service.socket_connect_timeout = timeout
        if "rto" not in query:
            service.socket_read_timeout = timeout


def quiet_apprise() -> None:
    """apprise (and the requests/urllib3 under it) speak at our debug level only, as httpx does
    in ddnsagent.logsetup; the redacting formatter masks whatever they say."""
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    level = logging.DEBUG if debug else logging.WARNING
    for name in ("apprise", "urllib3"):
        logging.getLogger(name).setLevel(level)
