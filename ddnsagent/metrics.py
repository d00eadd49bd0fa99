"""Prometheus metrics: what the daemon did, in the text exposition format (version 0.0.4).

The format is written by hand: the few metrics here do not justify a client library in a daemon
that should stay small. `Metrics` is updated by the daemon on its event loop and rendered when
scraped, so no lock is needed. Two ways out, both optional:

- `[metrics] listen = "127.0.0.1:9787"`: a minimal HTTP/1.1 server answers `GET /metrics`.
  There is no authentication. A non-loopback address is allowed — it is the user's choice, e.g.
  for a Prometheus on another host — and the start-up log line says the endpoint is reachable
  from the network. The metrics name the WAN address and the providers, nothing secret.
- `[metrics] textfile = "/var/lib/node_exporter/textfile_collector/ddnsagent.prom"`: the same
  text, replaced atomically after every change and every minute, for node_exporter's textfile
  collector. Between writes `ddnsagent_seconds_since_last_change` is stale; in PromQL prefer
  `time() - ddnsagent_last_change_timestamp_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ddnsagent import __version__

if TYPE_CHECKING:
    from ddnsagent.outcome import SyncReport
    from ddnsagent.store import Detected
    from ddnsagent.table import Table

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PORT = 9787
MAX_REQUEST_HEAD = 8 * 1024  # bytes of request line and headers; more is refused
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request and read the answer
MAX_CONNECTIONS = 16  # at once; more are closed without an answer
TEXTFILE_EVERY = 60.0  # seconds between textfile writes when nothing changed
RECONNECT_RESULTS = ("ok", "unchanged", "skipped")


# -- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: at least one of `listen` and `textfile`."""

    listen: tuple[str, int] | None = None
    textfile: Path | None = None


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPV6]:PORT`, HOST an address literal or `localhost`; raises ValueError."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ipaddress.ip_address(host).version != 6:
            raise ValueError(f"{text!r}: only IPv6 addresses are written in brackets")
    elif host != "localhost":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: the host must be an address or localhost") from None
        if address.version == 6:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9787")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def parse_metrics(t: Table) -> MetricsConfig:
    """Read [metrics]; ConfigError naming the key on any mistake."""
    listen_text = t.string("listen", None)
    textfile_text = t.string("textfile", None)
    t.finish()
    if listen_text is None and textfile_text is None:
        raise t.error(
            "listen",
            "neither listen nor textfile is set",
            f'add listen = "127.0.0.1:{DEFAULT_PORT}" or textfile = '
            '"/var/lib/node_exporter/textfile_collector/ddnsagent.prom", or remove [metrics]',
        )
    listen = None
    if listen_text is not None:
        try:
            listen = parse_listen(listen_text)
        except ValueError as exc:
            raise t.error(
                "listen", str(exc), f'write e.g. "127.0.0.1:{DEFAULT_PORT}" or "[::1]:9787"'
            ) from None
    textfile = None
    if textfile_text is not None:
        textfile = Path(textfile_text)
        if not textfile.is_absolute():
            textfile = t.file.parent / textfile
        if textfile.suffix != ".prom" or textfile.name == ".prom":
            raise t.error(
                "textfile",
                f"{textfile_text!r} does not end in .prom",
                "node_exporter's textfile collector reads only *.prom files",
            )
    return MetricsConfig(listen, textfile)


# -- the metrics ---------------------------------------------------------------------------------


class _ReconnectOutcome(Protocol):
    """relay.watchdog.ReconnectOutcome, as far as a label needs it."""

    @property
    def done(self) -> bool: ...
    @property
    def old(self) -> str | None: ...
    @property
    def new(self) -> str | None: ...


def reconnect_result(outcome: _ReconnectOutcome) -> str:
    """The `result` label for a relay.watchdog.ReconnectOutcome."""
    if not outcome.done:
        return "skipped"  # cooldown, daily cap, another reconnect running
    if outcome.new is not None and outcome.new != outcome.old:
        return "ok"
    return "unchanged"


class Metrics:
    """Counters and gauges the daemon updates; `render()` is what a scrape returns."""

    def __init__(self, version: str = __version__, clock: Callable[[], float] = time.time) -> None:
        self.version = version
        self.clock = clock
        self.updates: dict[tuple[str, str, str], int] = {}
        self.reconnects: dict[str, int] = dict.fromkeys(RECONNECT_RESULTS, 0)
        self.signals: dict[str, int] = {}
        self.bounces_last_hour: int | Callable[[], int] | None = None
        self.addresses: dict[str, str] = {}  # "ipv4" → address
        self.last_change: dict[str, float] = {}  # "ipv4" → UNIX time
        self.last_sync: float | None = None
        self._changed: asyncio.Event | None = None

    # -- what the daemon reports

    def observe_sync(self, report: SyncReport) -> None:
        """One per target and family per sync, labelled with its action (sent, unchanged, …)."""
        now = self.clock()
        self.last_sync = now
        for target in report.targets:
            key = (target.name, f"ipv{target.family}", target.action)
            self.updates[key] = self.updates.get(key, 0) + 1
        for family, detection in report.detections.items():
            if detection.address is None:
                continue  # keep the last address known; the failure shows in updates_total
            label = f"ipv{family}"
            self.addresses[label] = str(detection.address)
            if family in report.changed or label not in self.last_change:
                self.last_change[label] = now
        self._touch()

    def observe_reconnect(self, result: str) -> None:
        """`result`: see reconnect_result()."""
        self.reconnects[result] = self.reconnects.get(result, 0) + 1
        self._touch()

    def observe_signal(self, kind: str) -> None:
        """One relay event read from the mail log (relay.logparse.EventKind values)."""
        self.signals[kind] = self.signals.get(kind, 0) + 1
        self._touch()

    def set_bounce_rate(self, n: int | Callable[[], int]) -> None:
        """The bounce count, or a function that counts at scrape time (so the gauge falls as
        the hour passes even when no mail-log event arrives)."""
        if n != self.bounces_last_hour:
            self.bounces_last_hour = n
            self._touch()

    def seed_from_state(self, detected: Mapping[int, Detected]) -> None:
        """Addresses and the time they were first seen, from the state, so that a restart does
        not reset `last_change` to the restart's time."""
        for family, entry in detected.items():
            if not entry.address:
                continue
            label = f"ipv{family}"
            self.addresses[label] = entry.address
            self.last_change[label] = float(entry.since)
        self._touch()

    # -- the exposition format

    def render(self, now: float | None = None, *, up: bool = True) -> str:
        """The exposition text; `up=False` for the last textfile written before the exit."""
        now = self.clock() if now is None else now
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {_escape_help(help_text)}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, value: float, **labels: str) -> None:
            out.append(f"{name}{_labels(labels)} {_number(value)}")

        family("ddnsagent_up", "gauge", "1 while the daemon runs, 0 once it has stopped.")
        sample("ddnsagent_up", 1 if up else 0)
        family("ddnsagent_build_info", "gauge", "The running version, as labels; always 1.")
        sample("ddnsagent_build_info", 1, version=self.version, python=platform.python_version())
        family(
            "ddnsagent_updates_total",
            "counter",
            "Outcomes per provider and address family, one per sync "
            "(sent, unchanged, failed, waiting, stopped, no-address, config).",
        )
        for (provider, fam, outcome), n in sorted(self.updates.items()):
            sample("ddnsagent_updates_total", n, provider=provider, family=fam, outcome=outcome)
        family("ddnsagent_last_sync_timestamp_seconds", "gauge", "When the last sync ended (UNIX).")
        if self.last_sync is not None:
            sample("ddnsagent_last_sync_timestamp_seconds", self.last_sync)
        family("ddnsagent_address_info", "gauge", "The WAN address last detected; always 1.")
        for fam, address in sorted(self.addresses.items()):
            sample("ddnsagent_address_info", 1, family=fam, address=address)
        family(
            "ddnsagent_last_change_timestamp_seconds",
            "gauge",
            "When the WAN address of this family was first seen (UNIX time).",
        )
        for fam, when in sorted(self.last_change.items()):
            sample("ddnsagent_last_change_timestamp_seconds", when, family=fam)
        family(
            "ddnsagent_seconds_since_last_change",
            "gauge",
            "Seconds since the WAN address of this family changed, at the time of the scrape.",
        )
        for fam, when in sorted(self.last_change.items()):
            sample("ddnsagent_seconds_since_last_change", max(now - when, 0.0), family=fam)
        family(
            "ddnsagent_reconnects_total",
            "counter",
            "Reconnects for a new WAN address: ok (new address), unchanged, skipped (cooldown, "
            "daily cap, already running).",
        )
        for result, n in sorted(self.reconnects.items()):
            sample("ddnsagent_reconnects_total", n, result=result)
        family("ddnsagent_relay_signals_total", "counter", "Relay events read from the mail log.")
        for kind, n in sorted(self.signals.items()):
            sample("ddnsagent_relay_signals_total", n, kind=kind)
        family(
            "ddnsagent_bounces_last_hour",
            "gauge",
            "Bounces this server generated in the last hour (backscatter uses up the relay's "
            "per-address limit).",
        )
        bounces = self.bounces_last_hour
        if callable(bounces):
            try:
                bounces = bounces()
            except Exception:
                log.exception("cannot count the bounces of the last hour")
                bounces = None
        if bounces is not None:
            sample("ddnsagent_bounces_last_hour", bounces)
        return "\n".join(out) + "\n"

    # -- change notification, for the textfile writer

    def _touch(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_changed(self, timeout: float) -> bool:
        """Wait until something is observed, at most `timeout` seconds; True if it was."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._changed.clear()
        return True


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed are the characters the format escapes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


# -- the HTTP endpoint ---------------------------------------------------------------------------


async def serve(metrics: Metrics, host: str, port: int) -> asyncio.Server:
    """Start answering `GET /metrics` on host:port; close the returned server to stop.

    One request per connection, request head at most MAX_REQUEST_HEAD bytes, REQUEST_TIMEOUT to
    send it; raises OSError when the address cannot be bound.
    """
    active = 0

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        if active >= MAX_CONNECTIONS:
            writer.close()
            return
        active += 1
        try:
            answer = await _answer(reader, metrics)
            if answer is not None:
                writer.write(answer)
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (OSError, TimeoutError):
            pass  # the client went away or stalled: nothing to tell anyone
        finally:
            active -= 1
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), REQUEST_TIMEOUT)

    server = await asyncio.start_server(
        on_client, host, port, limit=MAX_REQUEST_HEAD, reuse_address=True
    )
    shown = f"[{host}]" if ":" in host else host
    if is_loopback(host):
        log.info("metrics at http://%s:%d/metrics", shown, port)
    else:
        log.info(
            "metrics at http://%s:%d/metrics, reachable from the network without authentication",
            shown,
            port,
        )
    return server


async def _answer(reader: asyncio.StreamReader, metrics: Metrics) -> bytes | None:
    """The whole response to one request, or None when the client sent nothing usable."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
    except (asyncio.LimitOverrunError, ValueError):
        return _response(431, "Request Header Fields Too Large", "request head too large\n")
    except asyncio.IncompleteReadError:
        return None
    except TimeoutError:
        return _response(408, "Request Timeout", "no request received in time\n")
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _response(400, "Bad Request", "not an HTTP/1.x request\n")
    method, target, _ = parts
    if target.split("?", 1)[0] != "/metrics":
        return _response(404, "Not Found", "not found; the metrics are at /metrics\n")
    if method not in ("GET", "HEAD"):
        return _response(405, "Method Not Allowed", "use GET\n", {"Allow": "GET, HEAD"})
    return _response(200, "OK", metrics.render(), head_only=method == "HEAD")


def _response(
    status: int,
    reason: str,
    body: str,
    headers: dict[str, str] | None = None,
    *,
    head_only: bool = False,
) -> bytes:
    payload = body.encode("utf-8")
    content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + payload


# -- the textfile --------------------------------------------------------------------------------


def write_textfile(metrics: Metrics, path: Path, *, up: bool = True) -> None:
    """Replace `path` atomically (temp file in the same directory, then rename); mode 0644, for
    node_exporter runs as another user. No fsync: the file is rewritten within a minute anyway.
    Raises OSError."""
    text = metrics.render(up=up)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.prom: never collected
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o644)  # whatever the umask
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


async def textfile_loop(metrics: Metrics, path: Path, every: float = TEXTFILE_EVERY) -> None:
    """Write the textfile now, after each change and every `every` seconds, until cancelled;
    the last write says `ddnsagent_up 0`."""
    failing = False
    try:
        while True:
            try:
                write_textfile(metrics, path)
            except OSError as exc:
                if not failing:
                    log.error("cannot write the metrics textfile %s: %s", path, exc.strerror)
                failing = True
            else:
                if failing:
                    log.info("metrics textfile %s written again", path)
                failing = False
            await metrics.wait_changed(every)
    finally:
        with contextlib.suppress(OSError):
            write_textfile(metrics, path, up=False)
