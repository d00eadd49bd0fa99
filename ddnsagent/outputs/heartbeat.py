"""Heartbeat pings to a monitoring service (healthchecks.io, an Uptime Kuma push monitor, or a
plain URL): the service calls this server down when the pings stop or say so.

One ping per sync, in the form the service documents (the forms and the facts behind them are
in `form()` and `judge()`; tests/fakes/heartbeat.py enforces them):

- healthchecks.io: `<url>/start` before a sync, `<url>` after one that ended well, `<url>/fail`
  after one that did not (a target failed, waits or is stopped, no address was found, or the
  sync itself failed), each with the same run id (`rid`) so the service pairs start and end; the
  end ping POSTs a short text body saying what happened.
- Uptime Kuma: no start signal; `?status=up&msg=OK&ping=<ms>` or `?status=down&msg=<what>`.
- plain: a GET after a sync that ended well, nothing otherwise (the missing ping is the alarm).

Nothing here ever delays or fails a sync: the observer methods only queue (at most
`MAX_PENDING` pings; the oldest is dropped), one worker task sends them in order, each bounded
by `[heartbeat] timeout`, never retried. A ping that is not accepted is a warning once per
episode, then debug until one is accepted again. The URL is never logged (it is registered with
the mask all the same, for httpx's own debug lines).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ddnsagent import http
from ddnsagent.errors import DdnsagentError, SecretUnavailable
from ddnsagent.exitcodes import EXIT_FOR, EXIT_OK
from ddnsagent.outcome import SyncReport
from ddnsagent.outputs.heartbeat_settings import HeartbeatConfig, describe, resolve
from ddnsagent.secrets import redact

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

KINDS = ("start", "up", "fail")
MAX_PENDING = 4  # pings waiting to be sent; a slow service makes the oldest go, not the syncs wait
ANSWER_LIMIT = 4096  # bytes of an answer read: "OK" or {"ok":true} is all there is to read
# healthchecks.io stores the first 100 kB of a ping's body (hosted) or PING_BODY_LIMIT (10 kB
# by default, self-hosted) and says how much in a Ping-Body-Limit header; ours stays well below.
BODY_LIMIT = 2000
MSG_LIMIT = 200  # characters of Uptime Kuma's `msg`, which travels in the query string
# Uptime Kuma refuses a `ping` above 24 hours in milliseconds (api-router.js MAX_PING_VALUE).
MAX_PING_MS = 86_400_000
SHOWN = 100  # characters of a refusing answer quoted in a log line or `status`


@dataclass(frozen=True)
class Ping:
    """One request: what kind of signal, and exactly what goes on the wire."""

    kind: str  # one of KINDS
    method: str
    url: str
    body: bytes = b""


@dataclass(frozen=True)
class PingResult:
    """What came of one ping, as `status` shows it."""

    time: float
    kind: str
    ok: bool
    result: str


def supports_start(preset: str) -> bool:
    """Only healthchecks.io has a start signal (it measures the run and notices one that hangs);
    Uptime Kuma's push monitor has only up and down."""
    return preset == "healthchecks"


def form(
    preset: str,
    url: str,
    kind: str,
    message: str = "",
    *,
    run_id: str | None = None,
    ping_ms: int | None = None,
    body_limit: int = BODY_LIMIT,
) -> Ping | None:
    """The request for one signal, or None when the service has no such signal."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if preset == "healthchecks":
        # healthchecks.io "Pinging API": HEAD|GET|POST PING_ENDPOINT<uuid>[/start|/fail]; an
        # optional rid=<uuid> pairs a start with its end; a POST body is stored as the event's
        # text. A query the URL already has (create=1 on a slug URL) is kept.
        path = parts.path.rstrip("/") + {"start": "/start", "up": "", "fail": "/fail"}[kind]
        if run_id is not None:
            query = [(k, v) for k, v in query if k != "rid"] + [("rid", run_id)]
        target = urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))
        if kind == "start":
            return Ping(kind, "GET", target)
        return Ping(kind, "POST", target, _cut(message.encode(), max(0, body_limit)))
    if preset == "uptime-kuma":
        # Uptime Kuma (server/routers/api-router.js): any method on /api/push/:pushToken;
        # status "up" is up and anything else down, msg defaults to "OK", ping is an optional
        # number of milliseconds. The URL the interface shows already carries
        # ?status=up&msg=OK&ping= (older versions: status=true, which reads as down): ours replace
        # them.
        if kind == "start":
            return None
        up = kind == "up"
        words = " ".join(message.split())[:MSG_LIMIT] or ("OK" if up else "sync failed")
        ping = "" if ping_ms is None or not up else str(min(max(ping_ms, 0), MAX_PING_MS))
        query = [(k, v) for k, v in query if k not in ("status", "msg", "ping")]
        query += [("status", "up" if up else "down"), ("msg", words), ("ping", ping)]
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        return Ping(kind, "GET", target)
    if kind == "up":  # plain: the URL as it is, after a sync that ended well
        return Ping(kind, "GET", url)
    return None


def judge(preset: str, status: int, body: str) -> tuple[bool, str]:
    """(accepted, what to show) for an answer. Nothing is trusted beyond the documented form: a
    captive portal's 200 page is not healthchecks' "OK"."""
    text = " ".join(body.split())
    if preset == "healthchecks":
        # 200 "OK"; 201 "Created" for a slug auto-provisioned with create=1; 404 "not found"
        # (no such check), 409 "ambiguous slug", 400 "invalid url format" / "invalid uuid format"
        if (status, text) in ((200, "OK"), (201, "Created")):
            return True, text[:SHOWN]
        return False, _refusal(status, text)
    if preset == "uptime-kuma":
        # {"ok":true}; {"ok":false,"msg":"Monitor not found or not active."} with 404 (1.x) or
        # 500 (2.x), {"ok":false,"msg":"Invalid ping value…"} with 400
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            if 200 <= status < 300 and answer.get("ok") is True:
                return True, "OK"
            if isinstance(answer.get("msg"), str):
                return False, f"HTTP {status}: {answer['msg'][:SHOWN]}"
        return False, _refusal(status, text)
    if 200 <= status < 300:
        return True, f"HTTP {status}"
    return False, _refusal(status, text)


def _refusal(status: int, text: str) -> str:
    return f"HTTP {status}: {text[:SHOWN]}" if text else f"HTTP {status}"


def _cut(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes, not cutting a UTF-8 character in two."""
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", errors="ignore").encode()


def summary(report: SyncReport) -> tuple[bool, str]:
    """(ended well, what to say): well when every target is sent or unchanged and every
    family's address was found — what exit code 0 means."""
    addresses = ", ".join(
        f"IPv{f} {d.address}" for f, d in sorted(report.detections.items()) if d.address
    )
    if report.exit_code == EXIT_OK:
        names = len({t.name for t in report.targets})
        return True, f"{addresses or 'no address'}; {names} target(s) up to date"
    lines = [
        f"no IPv{f} address found" for f, d in sorted(report.detections.items()) if not d.address
    ]
    for t in report.targets:
        if EXIT_FOR.get(t.action, EXIT_OK) != EXIT_OK:
            family = f" IPv{t.family}" if t.family else ""
            lines.append(f"{t.name}{family}: {t.action}: {t.message}".rstrip(": "))
    return False, redact("\n".join(lines) or f"sync ended with exit code {report.exit_code}")


class Heartbeat:
    """Pings after (and, where the service has it, before) every sync; disabled when
    [heartbeat] is not set or its URL cannot be read."""

    def __init__(
        self,
        url: str | None = None,
        preset: str = "plain",
        timeout: float = 10.0,
        *,
        user_agent: str | None = None,
        record: Callable[[PingResult, str], None] | None = None,
    ) -> None:
        self.url = url
        self.preset = preset
        self.timeout = timeout
        self.user_agent = user_agent
        self.record = record  # called in a thread with each result (the store, for `status`)
        self.name = describe(url, preset) if url else "heartbeat"
        self._pending: collections.deque[Ping] = collections.deque(maxlen=MAX_PENDING)
        self._worker: asyncio.Future[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._failing = False
        self._run_id: str | None = None
        self._started: float | None = None
        self._body_limit = BODY_LIMIT

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @classmethod
    def from_config(
        cls,
        cfg: HeartbeatConfig | None,
        *,
        user_agent: str | None = None,
        record: Callable[[PingResult, str], None] | None = None,
    ) -> Heartbeat:
        """Read the URL and settle the preset. Never raises: on trouble the error is logged
        once and the heartbeat is off (a monitoring ping is not worth a dead daemon)."""
        if cfg is None:
            return cls()
        try:
            url = cfg.url.reveal()
            preset = resolve(url, cfg.preset, cfg.insecure_http)
        except SecretUnavailable as exc:
            log.error("heartbeat is off: %s", exc)
            return cls()
        except ValueError as exc:
            problem, _, fix = str(exc).partition("\n")
            hint = f"; {fix}" if fix else ""
            log.error("heartbeat is off: [heartbeat] url (%s) %s%s", cfg.url.origin, problem, hint)
            return cls()
        beat = cls(url, preset, cfg.timeout, user_agent=user_agent, record=record)
        log.info("heartbeat to %s after every sync", beat.name)
        return beat

    # -- the observer side: each returns at once and never raises

    def sync_started(self, reason: str = "") -> None:
        """Before a sync: a new run id, the start time, and `/start` where the service has it."""
        del reason  # every sync is pinged alike
        if not self.enabled or self._closed:
            return
        self._run_id = str(uuid.uuid4())
        self._started = time.monotonic()
        if supports_start(self.preset):
            self._queue("start", "")

    def observe_sync(self, report: SyncReport) -> None:
        """After a sync that produced a report: up when it ended well, the failure form else."""
        if not self.enabled or self._closed:
            return
        well, words = summary(report)
        self._queue("up" if well else "fail", words)

    def sync_failed(self, error: str) -> None:
        """After a sync that raised (the state lock timed out, the state cannot be saved)."""
        if not self.enabled or self._closed:
            return
        self._queue("fail", redact(f"sync failed: {error}"))

    def _queue(self, kind: str, message: str) -> None:
        assert self.url is not None
        ping_ms = None
        if kind != "start" and self._started is not None:
            ping_ms = int((time.monotonic() - self._started) * 1000)
        ping = form(
            self.preset,
            self.url,
            kind,
            message,
            run_id=self._run_id,
            ping_ms=ping_ms,
            body_limit=self._body_limit,
        )
        if kind != "start":
            self._run_id = self._started = None
        if ping is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            log.debug("heartbeat %s ping dropped: no event loop to send it from", kind)
            return
        if len(self._pending) == self._pending.maxlen:
            log.debug("heartbeat: %d pings waiting; the oldest is dropped", len(self._pending))
        self._pending.append(ping)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        for _ in range(10_000):  # bounded; the deque holds at most MAX_PENDING at a time
            if not self._pending:
                return
            ping = self._pending.popleft()
            result = await self.send(ping)
            if self.record is not None:
                await self._record(result)

    # -- sending

    async def send(self, ping: Ping) -> PingResult:
        """One ping, at most `timeout` seconds; never raises (but for cancellation)."""
        ok, text = False, ""
        try:
            async with asyncio.timeout(self.timeout):
                answer = await http.fetch(
                    self._http(),
                    ping.method,
                    ping.url,
                    limit=ANSWER_LIMIT,
                    content=ping.body if ping.method == "POST" else None,
                    headers={"Content-Type": "text/plain; charset=utf-8"}
                    if ping.method == "POST"
                    else {},
                )
            ok, text = judge(self.preset, answer.status, answer.body)
            self._learn_body_limit(answer.headers)
        except TimeoutError:
            text = f"no answer within {self.timeout:g}s"
        except DdnsagentError as exc:
            text = str(exc)
        except Exception as exc:  # a ping must never take the daemon down
            text = f"{type(exc).__name__}: {exc}"
        text = redact(text)
        self._tell(ping.kind, ok, text)
        return PingResult(time.time(), ping.kind, ok, text)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = http.client(None, self.timeout, self.user_agent)
        return self._client

    def _learn_body_limit(self, headers: Any) -> None:
        """healthchecks.io's `Ping-Body-Limit: <n>` says how much of a body it keeps."""
        value = headers.get("ping-body-limit") if headers is not None else None
        if value and value.strip().isdigit():
            self._body_limit = min(BODY_LIMIT, int(value.strip()))

    def _tell(self, kind: str, ok: bool, text: str) -> None:
        if ok:
            if self._failing:
                log.info("heartbeat: %s accepts pings again (%s ping)", self.name, kind)
            else:
                log.debug("heartbeat %s ping to %s: %s", kind, self.name, text)
            self._failing = False
            return
        if self._failing:
            log.debug("heartbeat %s ping to %s still failing: %s", kind, self.name, text)
            return
        self._failing = True
        log.warning(
            "heartbeat %s ping to %s failed: %s; the syncs go on (said once until a ping "
            "gets through)",
            kind,
            self.name,
            text,
        )

    async def _record(self, result: PingResult) -> None:
        assert self.record is not None
        try:
            await asyncio.to_thread(self.record, result, self.preset)
        except DdnsagentError as exc:
            log.debug("heartbeat: the result of the %s ping is not recorded: %s", result.kind, exc)
        except Exception as exc:
            log.warning("heartbeat: recording the %s ping failed: %s", result.kind, exc)

    # -- the end

    def drain_limit(self) -> float:
        """How long the pings of one sync (a start and an end) may take to go out."""
        return 2 * self.timeout + 2.0

    async def aclose(self, timeout: float) -> bool:
        """No more pings; what is queued may still go out within `timeout` seconds, then it is
        abandoned. True when nothing was left unsent."""
        self._closed = True
        worker = self._worker
        done = True
        if worker is not None and not worker.done():
            finished, _ = await asyncio.wait([worker], timeout=max(timeout, 0.0))
            if not finished:
                done = False
                worker.cancel()
                await asyncio.wait([worker], timeout=1.0)
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.aclose()
            except Exception as exc:
                log.debug("heartbeat: closing the HTTP client: %s", exc)
        return done
