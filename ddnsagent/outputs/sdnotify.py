"""systemd's notification protocol (sd_notify(3)), on a stdlib socket.

Under `Type=notify` the daemon says when it is ready, what it is doing (`systemctl status` shows
it), and when it stops; under `WatchdogSec=` it must also say "still alive" in time, or systemd
restarts it. Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

The watchdog ping is sent by a task on the daemon's own event loop, so a loop that hangs stops
pinging and systemd restarts the process: that is the point of the watchdog. When no watchdog is
configured, no timer runs at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping

from ddnsagent.secrets import redact

log = logging.getLogger(__name__)

MAX_STATUS = 200  # characters; `systemctl status` shows one line


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3) recommends.

    None when no watchdog is set, when the value is not a positive integer, or when
    `$WATCHDOG_PID` names another process (the variables were inherited, not meant for us).
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "").strip()
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID", "").strip()
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def _address(value: str) -> str | bytes | None:
    """The socket address `$NOTIFY_SOCKET` names: a path, or `@name` for the abstract namespace."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None  # vsock: and other forms are not supported


class Notifier:
    """Sends state changes to the service manager; never raises, never blocks."""

    def __init__(self, address: str | bytes | None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog if address is not None else None
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = False
    ) -> Notifier:
        """From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID`.

        With `unset`, the variables are removed from `environ` (default: the process
        environment) so that commands the daemon starts do not inherit them.
        """
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = _address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a form ddnsagent supports; not notifying", raw)
        notifier = cls(address, watchdog_interval(env))
        if unset:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields in one datagram; False when it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full queue drops the message, never waits
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:  # once: the manager may be gone for good
                log.warning("cannot notify the service manager: %s", exc.strerror or exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.send("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        return self.send(*self._status(text))

    def reloading(self, status: str | None = None) -> bool:
        """A reload begins; send `ready()` when it is done (required under Type=notify-reload)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *self._status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status(text: str | None) -> list[str]:
        if text is None:
            return []
        line = " ".join(redact(text).split())
        if len(line) > MAX_STATUS:
            line = line[: MAX_STATUS - 1] + "…"
        return [f"STATUS={line}"]


async def watchdog_loop(
    notifier: Notifier, healthy: Callable[[], bool], interval: float | None = None
) -> None:
    """Ping the watchdog every `interval` (default: the notifier's) while `healthy()` says so.

    Returns at once when there is no watchdog to ping. Runs until cancelled. When `healthy()`
    is false, or raises, no ping is sent, and systemd restarts the daemon once its
    `WatchdogSec=` has passed without one.
    """
    every = interval if interval is not None else notifier.watchdog_interval
    if not notifier.enabled or not every:
        return
    log.debug("pinging the systemd watchdog every %.3gs", every)
    said_unhealthy = False
    while True:
        try:
            ok = healthy()
        except Exception:
            log.exception("the health check failed; not pinging the watchdog")
            ok = False
        if ok:
            notifier.watchdog()
            said_unhealthy = False
        elif not said_unhealthy:
            log.error("unhealthy: not pinging the systemd watchdog, which will restart ddnsagent")
            said_unhealthy = True
        await asyncio.sleep(every)
