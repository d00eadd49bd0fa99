"""Strict local emulators of the two heartbeat services ddnsagent has presets for: the
healthchecks.io Pinging API and Uptime Kuma's push monitor.

healthchecks.io, as its "Pinging API" page describes it (healthchecks.io/docs/http_api/, the
source of which is templates/docs/http_api.md in github.com/healthchecks/healthchecks) and its
view answers (hc/api/views.py `ping`, `ping_by_slug`):

- `HEAD|GET|POST PING_ENDPOINT<uuid>` success, `…/start`, `…/fail`, `…/log`,
  `…/<exit-status>` (0-255; above: 400 "invalid url format"); the same after
  `PING_ENDPOINT<ping-key>/<slug>`. A self-hosted instance's PING_ENDPOINT is SITE_ROOT + "/ping/"
  (hc/settings.py), which this fake serves; hc-ping.com serves the same paths at its root.
- A success answers "200 OK" with the body "OK"; an unknown check "404 not found"; an
  ambiguous slug "409 ambiguous slug"; a slug with `create=1` that did not exist "201 Created".
- `rid=<uuid>` (optional) pairs a start with its end; a value that is not a UUID in the
  canonical form answers 400 "invalid uuid format".
- A POST body is stored, cut to PING_BODY_LIMIT bytes (hosted: 100 kB; self-hosted default
  10000, hc/settings.py), and every answer says the limit in `Ping-Body-Limit: <n>`. The fake
  keeps the cut body too, and notes a violation for a body over the limit: the header exists so
  that clients send no more.

Uptime Kuma, as its push route answers (server/routers/api-router.js in
github.com/louislam/uptime-kuma, `router.all("/api/push/:pushToken")`):

- any method; `status` "up" is up and any other value down (the default is "up"), `msg`
  defaults to "OK", `ping` is an optional number of milliseconds, empty allowed.
- `{"ok":true}` when accepted; an unknown or inactive token `{"ok":false,"msg":"Monitor not
  found or not active."}` with 404 (1.x; 2.x answers 500: `unknown_status`); a `ping` that is
  not a number from 0 to 86400000 answers 400 `{"ok":false,"msg":"Invalid ping value: …"}`
  (2.x).
- The interface shows the push URL as `…/api/push/<token>?status=up&msg=OK&ping=`; 1.15 showed
  `status=true`, which the route reads as down (louislam/uptime-kuma issue 1593). The fake notes
  a violation for a `status` other than "up" or "down": a client should say what it means.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from ._server import FakeServer, RecordedRequest, Response, method_not_allowed, not_found, text

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HC_METHODS = ("HEAD", "GET", "POST")
HC_PARAMETERS = frozenset({"rid", "create"})
HOSTED_BODY_LIMIT = 100_000  # hc-ping.com; self-hosted default PING_BODY_LIMIT is 10000
KUMA_PARAMETERS = frozenset({"status", "msg", "ping"})
KUMA_MAX_PING = 86_400_000
NOT_ACTIVE = "Monitor not found or not active."


@dataclass(frozen=True)
class HcPing:
    """One ping healthchecks.io accepted."""

    check: str  # the UUID, or "ping-key/slug"
    kind: str  # "success", "start", "fail", "log", or "exit:N"
    rid: str | None
    body: bytes
    method: str


class HealthchecksServer(FakeServer):
    """healthchecks.io's ping endpoint under /ping/.

    `checks`: the UUIDs of existing checks; `slugs`: "ping-key/slug" of existing checks.
    Knobs, besides those of `FakeServer`: `body_limit` (PING_BODY_LIMIT).
    """

    def __init__(
        self,
        checks: Iterable[str] = (),
        slugs: Iterable[str] = (),
        *,
        body_limit: int = HOSTED_BODY_LIMIT,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.body_limit = body_limit
        self._state = threading.Lock()
        self._checks = set(checks)
        self._slugs = set(slugs)
        self._pings: list[HcPing] = []

    def ping_url(self, check: str) -> str:
        return f"{self.url}/ping/{check}"

    @property
    def pings(self) -> list[HcPing]:
        with self._state:
            return list(self._pings)

    def handle(self, request: RecordedRequest) -> Response:
        headers = {"Ping-Body-Limit": str(self.body_limit), "Access-Control-Allow-Origin": "*"}
        if request.method not in HC_METHODS:
            self.violation(f"{request.method} is not a ping method (HEAD, GET, POST)")
            return method_not_allowed(*HC_METHODS)
        if not request.path.startswith("/ping/"):
            return not_found()
        for name in request.query:
            if name not in HC_PARAMETERS:
                self.violation(f"parameter {name!r} is not one the Pinging API takes")
        parts = request.path.removeprefix("/ping/").split("/")
        kind = "success"
        if len(parts) > 1 and (parts[-1] in ("start", "fail", "log") or parts[-1].isdigit()):
            last = parts.pop()
            if last.isdigit():
                if int(last) > 255:
                    return text(400, "invalid url format", headers=headers)
                kind = "success" if int(last) == 0 else f"exit:{last}"
            else:
                kind = last
        check = "/".join(parts)
        created = False
        with self._state:
            if len(parts) == 1 and UUID.fullmatch(check):
                known = check in self._checks
            elif len(parts) == 2:
                known = check in self._slugs
                if not known and request.query.get("create") == "1":
                    self._slugs.add(check)
                    known = created = True
            else:
                known = False
            if not known:
                return text(404, "not found", headers=headers)
        rid = request.query.get("rid")
        if rid is not None and not UUID.fullmatch(rid):
            return text(400, "invalid uuid format", headers=headers)
        if len(request.body) > self.body_limit:
            self.violation(
                f"a body of {len(request.body)} bytes, over the Ping-Body-Limit of "
                f"{self.body_limit}"
            )
        body = request.body[: self.body_limit] if request.method == "POST" else b""
        with self._state:
            self._pings.append(HcPing(check, kind, rid, body, request.method))
        if created:
            return text(201, "Created", headers=headers)
        return text(200, "OK", headers=headers)


@dataclass(frozen=True)
class Beat:
    """One heartbeat Uptime Kuma recorded."""

    token: str
    up: bool
    msg: str
    ping: float | None
    status: str | None  # the parameter as sent


class UptimeKumaServer(FakeServer):
    """Uptime Kuma's `/api/push/:pushToken`.

    `monitors`: push token → active. Knobs, besides those of `FakeServer`: `unknown_status`
    (404 as in 1.x, 500 as in 2.x), `validate_ping` (2.x's check of `ping`).
    """

    def __init__(
        self,
        monitors: dict[str, bool],
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.unknown_status = 404
        self.validate_ping = True
        self._state = threading.Lock()
        self._monitors = dict(monitors)
        self._beats: list[Beat] = []

    def push_url(self, token: str) -> str:
        """The URL as the interface shows it."""
        return f"{self.url}/api/push/{token}?status=up&msg=OK&ping="

    @property
    def beats(self) -> list[Beat]:
        with self._state:
            return list(self._beats)

    def handle(self, request: RecordedRequest) -> Response:
        match = re.fullmatch(r"/api/push/([^/]+)", request.path)
        if match is None:
            return text(404, f"Cannot {request.method} {request.path}")
        token = match.group(1)
        for name in request.query:
            if name not in KUMA_PARAMETERS:
                self.violation(f"parameter {name!r} is not one the push route reads")
        if request.body:
            self.violation("a body: the push route reads only the query")
        status = request.query.get("status")
        if status not in (None, "up", "down"):
            self.violation(f"status={status!r} reads as down; say up or down")
        msg = request.query.get("msg") or "OK"
        ping_text = request.query.get("ping")
        ping: float | None = None
        if ping_text:
            try:
                ping = float(ping_text)
            except ValueError:
                ping = None
                if self.validate_ping:
                    return _json(400, {"ok": False, "msg": f"Invalid ping value: '{ping_text}'"})
            if ping is not None and self.validate_ping and not 0 <= ping <= KUMA_MAX_PING:
                return _json(400, {"ok": False, "msg": f"Invalid ping value: {ping_text}ms"})
        with self._state:
            if not self._monitors.get(token, False):
                return _json(self.unknown_status, {"ok": False, "msg": NOT_ACTIVE})
            self._beats.append(Beat(token, (status or "up") == "up", msg, ping, status))
        return _json(200, {"ok": True})


def _json(status: int, data: object) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json; charset=utf-8")
