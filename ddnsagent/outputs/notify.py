"""Notifications to people — chat, mail, push — through apprise, the optional `notify` extra.

What is worth a message (`[notify] events`): `address` (the WAN address changed), `stopped` (a
target stopped on a fatal answer and needs you), `reconnect` (a reconnect ran for a new address),
`backscatter` (this server generated too many bounces in an hour).

apprise is synchronous, so messages go through a bounded queue to one worker thread, which exists
only while there is something to send. `event()` returns at once, never raises, and a full queue
drops the message with a warning: a slow chat service never delays a sync. Each request is bounded
by `timeout` (apprise's connect and read timeouts).

Apprise URLs are secrets — `tgram://BOT_TOKEN/CHAT_ID`, `json://user:password@host/` — so they
are best kept out of the main configuration (`urls_file`, mode 0600, or `urls_env`), and before
any URL is handed to apprise its credential-like parts are registered with ddnsagent.secrets, so
our log formatter masks them in apprise's own log records too. ddnsagent never logs a URL: a
target is named by its position and scheme ("#2 (tgram)").
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import ipaddress
import logging
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from ddnsagent.errors import ConfigError, SecretUnavailable
from ddnsagent.secrets import Secret, check_private_file, redact, register, register_basic_auth

if TYPE_CHECKING:
    from ddnsagent.outcome import SyncReport
    from ddnsagent.table import Table

log = logging.getLogger(__name__)

EVENTS = ("address", "stopped", "reconnect", "backscatter")
LEVELS = ("info", "success", "warning", "failure")  # apprise's notification types
INSTALL_HINT = "pip install 'ddnsagent[notify]'"
DEFAULT_TIMEOUT = 10.0
QUEUE_SIZE = 32  # messages waiting; more are dropped
IDLE_EXIT = 10.0  # seconds the worker thread waits for more before it ends
MAX_TITLE = 250
MAX_BODY = 4000

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# Query keys whose value is a credential whatever it looks like.
_SECRET_KEYS = {
    "apikey",
    "api_key",
    "key",
    "pass",
    "password",
    "pw",
    "secret",
    "token",
    "access_token",
    "webhook",
    "user",
    "userkey",
}


# -- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyConfig:
    """[notify]: where to send (a Secret holding apprise URLs, one a line) and what."""

    urls: Secret
    events: frozenset[str] = field(default_factory=lambda: frozenset(EVENTS))
    timeout: float = DEFAULT_TIMEOUT


def apprise_available() -> bool:
    if "apprise" in sys.modules:
        return sys.modules["apprise"] is not None
    return importlib.util.find_spec("apprise") is not None


def parse_notify(t: Table) -> NotifyConfig:
    """Read [notify]: exactly one of `urls`, `urls_file`, `urls_env`; `events`; `timeout`.

    Inline URLs are checked now (and need the configuration file to be private); URLs from a
    file or the environment are read when the daemon starts. Raises ConfigError when apprise
    is not installed.
    """
    given = [k for k in ("urls", "urls_file", "urls_env") if t.has(k)]
    if len(given) > 1:
        raise t.error(given[1], f"conflicts with {t.key(given[0])}", "keep only one")
    if not given:
        raise t.error(
            "urls",
            "is required but missing",
            'add urls_file = "/etc/ddnsagent/notify.urls" (mode 0600, one apprise URL a line), '
            'urls_env = "VAR", or urls = ["…"]',
        )
    if given[0] == "urls":
        urls = t.str_list("urls")
        if not urls:
            raise t.error("urls", "is empty", "give at least one apprise URL, or remove [notify]")
        for i, url in enumerate(urls):
            if not _SCHEME.match(url.strip()):
                # Never echo the value: it may be a token.
                raise t.error(f"urls[{i}]", "is not an apprise URL", "write SCHEME://…")
            register_url_secrets(url.strip())
        check_private_file(t.file, f"{t.key('urls')} holds secrets inline")
        urls_secret = Secret.inline("\n".join(u.strip() for u in urls), t.key("urls"))
    else:
        secret = t.secret("urls")
        assert secret is not None
        urls_secret = secret
    events = t.str_list("events", list(EVENTS))
    if not events:
        raise t.error("events", "is empty", "list what to send, or remove [notify]")
    for i, event in enumerate(events):
        if event not in EVENTS:
            close = difflib.get_close_matches(event, EVENTS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise t.error(f"events[{i}]", f"found {event!r}; valid: {', '.join(EVENTS)}", hint)
    timeout = t.duration("timeout", DEFAULT_TIMEOUT)
    if timeout < 1:
        raise t.error("timeout", "must be at least 1s")
    t.finish()
    if not apprise_available():
        raise ConfigError(
            t.file, t.path, "needs the apprise library, which is not installed", INSTALL_HINT
        )
    return NotifyConfig(urls_secret, frozenset(events), timeout)


def split_urls(text: str) -> list[str]:
    """URLs from a file or variable: whitespace-separated, `#` starts a comment line."""
    urls: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.extend(line.split())
    return urls


# -- keeping URLs out of the logs ----------------------------------------------------------------


def _looks_secret(part: str) -> bool:
    """A token rather than a word: long, or with digits, mixed case or punctuation.

    Plain words ("notify", "hooks") stay readable: masking them would garble every log line.
    """
    if len(part) < 6:
        return False
    if len(part) >= 20:
        return True
    has_digit = any(c.isdigit() for c in part)
    mixed = any(c.isupper() for c in part) and any(c.islower() for c in part)
    other = any(not (c.isalpha() or c in "-_.") for c in part)
    return has_digit or mixed or other


def _is_host(hostport: str) -> bool:
    """A real host[:port] — an address, localhost or a dotted DNS name — not a token."""
    host = hostport
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :]
        if end < 0 or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return False
        host = host[1:end]
    elif ":" in host:
        host, _, port = host.rpartition(":")
        if not port.isdigit():
            return False
    if host.lower() == "localhost":
        return True
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    labels = host.rstrip(".").split(".")
    return len(labels) > 1 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def url_secret_parts(url: str) -> set[str]:
    """The parts of an apprise URL that may be credentials, raw and percent-decoded."""
    parts: set[str] = set()

    def add(value: str, always: bool = False) -> None:
        for form in {value, unquote(value)}:
            if form and (always or _looks_secret(form)):
                parts.add(form)

    try:
        split = urlsplit(url)
    except ValueError:
        add(url, always=True)  # unparseable: mask it whole
        return parts
    userinfo, at, hostport = split.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        add(user)
        if colon:
            add(password, always=True)
    if hostport and not _is_host(hostport):
        add(hostport, always=True)  # e.g. tgram://BOT_TOKEN/…: the "host" is the token
        for piece in hostport.split(":"):
            add(piece)
    for segment in split.path.split("/"):
        add(segment)
    for key, value in parse_qsl(split.query, keep_blank_values=False):
        add(value, always=key.lower() in _SECRET_KEYS)
    add(split.fragment)
    return parts


def register_url_secrets(url: str) -> None:
    """Register every credential-like part of `url` with the log redactor."""
    for part in url_secret_parts(url):
        register(part)
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return
    userinfo, at, _ = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon and password:
        register_basic_auth(unquote(user), unquote(password))  # user:password and its base64


def describe(index: int, url: str) -> str:
    """How ddnsagent names a target in its messages: never the URL."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"#{index} ({scheme})"


# -- sending -------------------------------------------------------------------------------------


class _ReconnectOutcome(Protocol):
    """relay.watchdog.ReconnectOutcome, as far as a notification needs it."""

    @property
    def done(self) -> bool: ...
    @property
    def message(self) -> str: ...
    @property
    def old(self) -> str | None: ...
    @property
    def new(self) -> str | None: ...


@dataclass(frozen=True)
class _Message:
    kind: str
    title: str
    body: str
    level: str


class Notifier:
    """Sends the configured events through apprise; every method returns at once."""

    def __init__(
        self,
        targets: Any = None,  # an apprise.Apprise with at least one URL, or None: disabled
        events: Iterable[str] = EVENTS,
        host: str | None = None,
    ) -> None:
        self.targets = targets
        self.events = frozenset(events)
        self.host = host or socket.gethostname()
        self._queue: queue.Queue[_Message | None] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._said_full = False
        self._stopped: set[tuple[str, int]] = set()  # targets already reported stopped

    @property
    def enabled(self) -> bool:
        return self.targets is not None

    @classmethod
    def from_config(cls, cfg: NotifyConfig, previous: Notifier | None = None) -> Notifier:
        """Read the URLs and load them into apprise. Never raises: on trouble the error is
        logged and the notifier is disabled (notifications are not worth a dead daemon).
        `previous` (on reload) passes on which stops were already reported."""
        notifier = cls(None, cfg.events)
        if previous is not None:
            notifier._stopped = set(previous._stopped)
        try:
            text = cfg.urls.reveal()
        except SecretUnavailable as exc:
            log.error("notifications are off: %s", exc)
            return notifier
        urls = split_urls(text)
        for url in urls:
            register_url_secrets(url)  # before apprise sees them, and may log them
        try:
            import apprise
        except ImportError:
            log.error("notifications are off: apprise is not installed (%s)", INSTALL_HINT)
            return notifier
        quiet_apprise()
        targets = apprise.Apprise()
        for i, url in enumerate(urls, 1):
            before = len(targets)
            if not _SCHEME.match(url):
                log.error("[notify] URL %s is not an apprise URL; skipped", describe(i, url))
            elif not targets.add(url):
                log.error("[notify] URL %s is not understood by apprise; skipped", describe(i, url))
            else:
                _bound_time([targets[n] for n in range(before, len(targets))], url, cfg.timeout)
        if len(targets) == 0:
            log.error("notifications are off: no usable URL in %s", cfg.urls.origin)
            return notifier
        notifier.targets = targets
        log.info("notifications (%s) to %d target(s)", ", ".join(sorted(cfg.events)), len(targets))
        return notifier

    @classmethod
    async def load(cls, cfg: NotifyConfig, previous: Notifier | None = None) -> Notifier:
        """from_config() in a thread: apprise's first use loads all its plugins, which takes
        a few hundred milliseconds that the event loop should not wait for."""
        import asyncio

        return await asyncio.to_thread(cls.from_config, cfg, previous)

    # -- the events

    def event(self, kind: str, title: str, body: str, level: str = "info") -> bool:
        """Queue a message if `kind` is one the user wants; True when queued."""
        if kind not in self.events or self.targets is None or self._closed:
            return False
        message = _Message(kind, redact(title)[:MAX_TITLE], redact(body)[:MAX_BODY], _level(level))
        with self._lock:
            if self._queue.qsize() >= QUEUE_SIZE:
                if not self._said_full:
                    log.warning("notification queue full; dropping %s messages for now", kind)
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

    def observe_sync(self, report: SyncReport) -> None:
        """`address` for each family whose address changed, `stopped` for a target that
        stopped (once per stop, until it runs again)."""
        for family in report.changed:
            detection = report.detections.get(family)
            if detection is None or detection.address is None:
                continue
            lines = [f"IPv{family} is now {detection.address} (from {detection.source})."]
            for t in report.targets:
                if t.family == family:
                    lines.append(f"{t.name}: {t.action}: {t.message}")
            self.event(
                "address",
                f"{self.host}: new IPv{family} address {detection.address}",
                "\n".join(lines),
                "info",
            )
        for t in report.targets:
            key = (t.name, t.family)
            if t.action != "stopped":
                self._stopped.discard(key)
                continue
            if key in self._stopped:
                continue
            self._stopped.add(key)
            body = t.message + (f"\nTo fix: {t.fix}" if t.fix else "")
            self.event("stopped", f"{self.host}: {t.name} (IPv{t.family}) stopped", body, "failure")

    def observe_reconnect(self, outcome: _ReconnectOutcome) -> None:
        """A reconnect that ran; one refused by the cooldown or daily cap is only logged."""
        if not outcome.done:
            return
        if outcome.new is not None and outcome.new != outcome.old:
            title, level = f"{self.host}: reconnected, new address {outcome.new}", "success"
        else:
            title, level = f"{self.host}: reconnect did not change the address", "warning"
        self.event("reconnect", title, outcome.message, level)

    def backscatter(self, rate: int, limit: int) -> None:
        self.event(
            "backscatter",
            f"{self.host}: {rate} bounces in the last hour",
            f"This server generated {rate} bounces in the last hour (warning above {limit}). "
            "Bounces to forged senders use up the relay's per-address limit; check the "
            "recipient restrictions (`ddnsagent doctor`).",
            "warning",
        )

    # -- the worker

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

    def _send(self, message: _Message) -> None:
        started = time.monotonic()
        try:
            # The type as a plain string: apprise 1.x has no NotifyType enum, 2.x converts.
            ok = bool(
                self.targets.notify(
                    body=message.body, title=message.title, notify_type=message.level
                )
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
        """No more events; the worker sends what is queued, then ends. Waits up to `timeout`
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
        import asyncio

        return await asyncio.to_thread(self.close, timeout)


def _level(level: str) -> str:
    return level if level in LEVELS else "info"


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
