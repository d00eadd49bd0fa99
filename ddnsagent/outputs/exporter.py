"""The metrics, exposed: an HTTP endpoint answering `GET /metrics`, and the node_exporter
textfile. Both are optional and both show the same `Metrics.render()` text.

- `[metrics] listen = "127.0.0.1:9787"`: a minimal HTTP/1.1 server answers `GET /metrics`.
  There is no authentication. A non-loopback address is allowed — it is the user's choice, e.g.
  for a Prometheus on another host — and the start-up log line says the endpoint is reachable
  from the network. The metrics name the WAN address and the providers, nothing secret.
- `[metrics] textfile = "/var/lib/node_exporter/textfile_collector/ddnsagent.prom"`: the same
  text, replaced atomically after every change and every minute, for node_exporter's textfile
  collector. Between writes `ddnsagent_seconds_since_last_change` is stale; in PromQL prefer
  `time() - ddnsagent_last_change_timestamp_seconds`.

The server is written by hand: one path, one request per connection, bounded in size and time,
does not justify an HTTP framework in a daemon that should stay small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ddnsagent.address import is_loopback_host
from ddnsagent.errors import UnsafeFile
from ddnsagent.outputs.metrics import Metrics
from ddnsagent.safefile import Directory

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_HEAD = 8 * 1024  # bytes of request line and headers; more is refused
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request and read the answer
MAX_CONNECTIONS = 16  # at once; more are closed without an answer
TEXTFILE_EVERY = 60.0  # seconds between textfile writes when nothing changed


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
    if is_loopback_host(host):
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
    """Replace `path` atomically, mode 0644 (node_exporter runs as another user): a new
    temporary file with a random name in the opened directory (never *.prom, so never
    collected half-written), renamed there — the collector's directory may be writable by
    others, so no name of ours in it is predictable or followed. Raises OSError, or UnsafeFile
    when the directory cannot be opened safely."""
    with Directory(path.parent) as directory:
        directory.replace(path.name, metrics.render(up=up).encode("utf-8"), 0o644)


async def textfile_loop(metrics: Metrics, path: Path, every: float = TEXTFILE_EVERY) -> None:
    """Write the textfile now, after each change and every `every` seconds, until cancelled;
    the last write says `ddnsagent_up 0`."""
    failing = False
    try:
        while True:
            try:
                write_textfile(metrics, path)
            except (OSError, UnsafeFile) as exc:
                if not failing:
                    why = exc.strerror if isinstance(exc, OSError) else str(exc)
                    log.error("cannot write the metrics textfile %s: %s", path, why)
                failing = True
            else:
                if failing:
                    log.info("metrics textfile %s written again", path)
                failing = False
            await metrics.wait_changed(every)
    finally:
        with contextlib.suppress(OSError, UnsafeFile):
            write_textfile(metrics, path, up=False)
