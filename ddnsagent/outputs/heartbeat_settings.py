"""The `[heartbeat]` section — a monitoring service pinged after every sync — and what `status`
shows of it.

The URL authorises the ping (anyone who has it can report us up), so it is a secret: read
through `Table.secret` (inline, `url_file`, `url_env`, `cred:`), its token registered with the
log mask before anything can print it, and never shown — a heartbeat is named by its preset and
host. Which service it is (`preset`) is said, or read from the URL where that is unambiguous:
healthchecks.io's `…/ping/<uuid>` (self-hosted: PING_ENDPOINT is SITE_ROOT/ping/) or
`hc-ping.com/<uuid>`, Uptime Kuma's `…/api/push/<token>`.

This module loads nothing heavy: `status` and `check-config` import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ddnsagent.address import check_url
from ddnsagent.secrets import Secret, register, register_query_value
from ddnsagent.table import Table

PRESETS = ("healthchecks", "uptime-kuma", "plain")
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0  # a ping waits at most this long; a sync never waits for it at all
HC_HOST = "hc-ping.com"

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# healthchecks.io "Pinging API": PING_ENDPOINT<uuid> or PING_ENDPOINT<ping-key>/<slug>, the slug
# of a-z, 0-9, hyphens and underscores.
_HC_CHECK = re.compile(rf"(?P<uuid>{_UUID})|(?P<key>[A-Za-z0-9_-]+)/(?P<slug>[a-z0-9_-]+)")
# The same, under a self-hosted instance's /ping/.
_HC_PATH = re.compile(rf"(?P<base>.*)/ping/(?P<check>{_UUID}|[A-Za-z0-9_-]+/[a-z0-9_-]+)")
# Uptime Kuma: router.all("/api/push/:pushToken") (server/routers/api-router.js).
_KUMA_PATH = re.compile(r"(?P<base>.*)/api/push/(?P<token>[^/]+)")
# What a copied URL may already end in: a signal of its own, not the check's address.
_HC_SIGNALS = ("start", "fail", "log")


@dataclass(frozen=True)
class HeartbeatConfig:
    """[heartbeat]: where to ping (a Secret), which service it is, how long a ping may take."""

    url: Secret
    preset: str | None = None  # None: read from the URL when it is read
    timeout: float = DEFAULT_TIMEOUT
    insecure_http: bool = False


def parse_heartbeat(t: Table) -> HeartbeatConfig:
    """Read [heartbeat]: exactly one of `url`, `url_file`, `url_env`; `preset`; `timeout`;
    `insecure_http`. An inline URL is checked now; one from a file or the environment when the
    daemon starts (a mistake there turns the heartbeat off with one error, the syncs go on)."""
    url = t.secret("url")
    assert url is not None
    preset = t.string("preset", None, PRESETS)
    timeout = t.duration("timeout", DEFAULT_TIMEOUT)
    if not 1 <= timeout <= MAX_TIMEOUT:
        raise t.error("timeout", f"must be between 1s and {MAX_TIMEOUT:g}s", 'e.g. "10s"')
    insecure_http = t.boolean("insecure_http", False)
    t.finish()
    if t.has("url"):
        try:
            preset = resolve(url.reveal(), preset, insecure_http)
        except ValueError as exc:
            problem, _, fix = str(exc).partition("\n")
            key = "preset" if problem.startswith("the preset") else "url"
            raise t.error(key, problem, fix or None) from None
    return HeartbeatConfig(url, preset, timeout, insecure_http)


def resolve(url: str, preset: str | None, insecure_http: bool) -> str:
    """The preset for `url` (given, or read from the URL), after registering its secret parts
    with the log mask. Raises ValueError("problem\\nfix") that never quotes the URL."""
    register_url(url)

    def refuse(problem: str, fix: str | None = None) -> ValueError:
        return ValueError(f"{problem}\n{fix}" if fix else problem)

    def error(problem: str, fix: str | None = None) -> ValueError:
        # check_url's own words may quote the URL: only the kind of problem is kept
        if "credentials" in problem:
            return refuse("must not carry credentials (user:password@)", fix)
        if "plain HTTP" in problem:
            return refuse(
                "is plain HTTP to a remote host (the URL is not shown: it is a secret)",
                "use https://, or set insecure_http = true if you really mean it",
            )
        return refuse("is not an http(s) URL (the URL is not shown: it is a secret)", fix)

    check_url(url, insecure_http, error)
    detected = detect_preset(url)
    path = urlsplit(url).path.rstrip("/")
    last = path.rsplit("/", 1)[-1]
    if (preset or detected) == "healthchecks" and (last in _HC_SIGNALS or last.isdigit()):
        raise refuse(
            f"ends in /{last}, a signal of its own",
            "give the check's ping URL as healthchecks.io shows it; ddnsagent adds /start "
            "and /fail itself",
        )
    if preset is None:
        if detected is None:
            raise refuse(
                "the preset cannot be told from the URL: it is neither a healthchecks.io ping "
                "URL (…/ping/<uuid>, hc-ping.com/…) nor an Uptime Kuma push URL "
                "(…/api/push/<token>)",
                'add preset = "healthchecks", "uptime-kuma" or "plain" (plain: one GET after '
                "each sync that ended well, no failure form)",
            )
        return detected
    return preset


def detect_preset(url: str) -> str | None:
    """`healthchecks` or `uptime-kuma` when the URL's form says so, else None."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if (parts.hostname or "").lower() == HC_HOST and _HC_CHECK.fullmatch(path.lstrip("/")):
        return "healthchecks"
    if _HC_PATH.fullmatch(path):
        return "healthchecks"
    if _KUMA_PATH.fullmatch(path):
        return "uptime-kuma"
    return None


def register_url(url: str) -> None:
    """Mask the URL and every part of it that authorises a ping — the check's UUID or ping key,
    the push token; of a URL of no known form, its path and query values — in every form it
    travels in (a URL percent-encodes it)."""
    register(url)
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    secrets: list[str] = []
    hc = _HC_PATH.fullmatch(path)
    check = hc.group("check") if hc else path.lstrip("/")
    hc_check = _HC_CHECK.fullmatch(check)
    kuma = _KUMA_PATH.fullmatch(path)
    if hc_check is not None and (hc or (parts.hostname or "").lower() == HC_HOST):
        secrets += [check, hc_check.group("uuid") or hc_check.group("key")]
    elif kuma is not None:
        secrets.append(kuma.group("token"))
    else:  # a plain URL: whatever in it may be the secret
        secrets += [piece for piece in path.split("/") if len(piece) >= 8]
        secrets += [path.strip("/")] if path.strip("/") else []
        secrets += [value for _, value in parse_qsl(parts.query) if len(value) >= 8]
    for secret in secrets:
        register_query_value(secret)


def describe(url: str, preset: str) -> str:
    """How a heartbeat is named in messages: the preset and the host, never the URL."""
    return f"{preset} at {urlsplit(url).hostname or '?'}"


# -- what `status` shows ---------------------------------------------------------------------


def status_json(configured: HeartbeatConfig | None, record: Any) -> dict[str, Any] | None:
    """The `heartbeat` object of `status --json` (README): None without [heartbeat]; `record` is
    the store's HeartbeatRecord or None (no ping yet)."""
    if configured is None:
        return None
    if record is None:
        return {"preset": configured.preset, "last": None, "last_ok": None, "failing_since": None}
    last = {"time": record.time, "kind": record.kind, "ok": record.ok, "result": record.result}
    return {
        "preset": record.preset or configured.preset,
        "last": last,
        "last_ok": record.last_ok,
        "failing_since": record.failing_since,
    }


def status_lines(shown: dict[str, Any] | None, ts: Any) -> list[str]:
    """The text lines of `status` for `status_json`'s object; `ts` formats a time."""
    if shown is None:
        return []
    preset = shown["preset"] or "preset from the URL"
    last = shown["last"]
    if last is None:
        return [f"heartbeat ({preset}): no ping yet"]
    verdict = last["result"] if last["ok"] else f"NOT ACCEPTED: {last['result']}"
    lines = [f"heartbeat ({preset}): {last['kind']} ping at {ts(last['time'])}: {verdict}"]
    if shown["failing_since"] is not None:
        ok = ts(shown["last_ok"]) if shown["last_ok"] is not None else "never"
        lines.append(
            f"  failing since {ts(shown['failing_since'])}; last accepted ping: {ok} "
            "(the syncs go on; the monitor will call this server down)"
        )
    return lines
