"""The heartbeat (issue 14, part 3) against local emulators of healthchecks.io and Uptime Kuma
(tests/fakes/heartbeat.py, which enforce each service's documented forms): the up ping after a
sync that ended well, the failure form after one that did not or with a stopped target,
healthchecks' /start before a sync, the URL never in a log line (httpx's debug lines included),
and a service that is down costing one warning and no time of the sync's."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import logsetup
from ddnsagent.errors import ConfigError
from ddnsagent.outcome import Detection, SyncReport, TargetReport
from ddnsagent.outputs.heartbeat import (
    BODY_LIMIT,
    MAX_PENDING,
    Heartbeat,
    PingResult,
    form,
    judge,
    summary,
)
from ddnsagent.outputs.heartbeat_settings import (
    HeartbeatConfig,
    detect_preset,
    parse_heartbeat,
    status_json,
    status_lines,
)
from ddnsagent.secrets import Secret
from ddnsagent.store import AgentState, _Checker, _parse, note_heartbeat, to_json
from ddnsagent.table import Table
from tests.conftest import (
    FIRST,
    child_env,
    config_text,
    ddnsagent,
    dyndns2_provider,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer
from tests.fakes.heartbeat import NOT_ACTIVE, HealthchecksServer, UptimeKumaServer

CHECK = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
OTHER = "0b8a0d4e-7a4f-4f52-9c51-5e0d3f6b1c2a"
TOKEN = "kQ7pZr2XbN"  # Uptime Kuma's push tokens are random letters and digits
ADDRESS = FIRST  # what the echo fixture answers


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def hc() -> Iterator[HealthchecksServer]:
    with HealthchecksServer([CHECK], ["pingkey123/home-ddns"], body_limit=10_000) as server:
        yield server


@pytest.fixture
def kuma() -> Iterator[UptimeKumaServer]:
    with UptimeKumaServer({TOKEN: True, "pausedToken9": False}) as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(*targets: tuple[str, str], address: str | None = ADDRESS) -> SyncReport:
    """A sync report with one IPv4 detection and `(name, action)` targets."""
    ip = ipaddress.ip_address(address) if address else None
    r = SyncReport("schedule", {4: Detection(4, ip, "web")})
    for name, action in targets:
        r.targets.append(TargetReport(name, "dyndns2", 4, address, action, f"{action} message"))
    return r


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def one_sync(beat: Heartbeat, outcome: SyncReport | str, *, limit: float = 10.0) -> float:
    """What the agent does around one sync: start, then the report (or the error); returns how
    long the observer calls took, then lets the pings go out."""
    started = time.monotonic()
    beat.sync_started("schedule")
    if isinstance(outcome, str):
        beat.sync_failed(outcome)
    else:
        beat.observe_sync(outcome)
    took = time.monotonic() - started
    await beat.aclose(limit)
    return took


def table(data: dict[str, Any], file: Path) -> Table:
    return Table(data, "heartbeat", file)


def private(tmp_path: Path) -> Path:
    return write_config(tmp_path, "")


# -- the forms, as the services document them ----------------------------------------------------


def test_the_preset_is_read_from_the_url_where_it_is_unambiguous() -> None:
    assert detect_preset(f"https://hc-ping.com/{CHECK}") == "healthchecks"
    assert detect_preset("https://hc-ping.com/fqOOd6-F4MMNuCEnzTU01w/db-backup") == "healthchecks"
    assert detect_preset(f"https://hc.example.net/ping/{CHECK}") == "healthchecks"
    assert detect_preset(f"https://hc.example.net/hc/ping/{CHECK}/") == "healthchecks"
    assert detect_preset(f"https://kuma.example.net/api/push/{TOKEN}?status=up") == "uptime-kuma"
    assert detect_preset("https://example.net/beat/abc") is None
    assert detect_preset(f"https://example.net/{CHECK}") is None  # a UUID alone is not enough


def test_healthchecks_forms_keep_the_query_and_pair_start_and_end() -> None:
    url = "https://hc.example.net/ping/pingkey123/home-ddns?create=1"
    start = form("healthchecks", url, "start", run_id=OTHER)
    up = form("healthchecks", url, "up", "all well", run_id=OTHER)
    fail = form("healthchecks", url, "fail", "x" * 5000, run_id=OTHER)
    assert start is not None and up is not None and fail is not None
    assert start.method == "GET" and start.url.endswith(f"/home-ddns/start?create=1&rid={OTHER}")
    assert up.method == "POST" and up.url.endswith(f"/home-ddns?create=1&rid={OTHER}")
    assert up.body == b"all well"
    assert fail.url.endswith(f"/home-ddns/fail?create=1&rid={OTHER}")
    assert len(fail.body) == BODY_LIMIT


def test_uptime_kuma_forms_replace_the_query_the_interface_shows() -> None:
    url = f"https://kuma.example.net/api/push/{TOKEN}?status=true&msg=OK&ping="
    assert form("uptime-kuma", url, "start") is None  # a push monitor has no start signal
    up = form("uptime-kuma", url, "up", "IPv4 203.0.113.7", ping_ms=840)
    down = form("uptime-kuma", url, "fail", "dyn IPv4: failed:\n  timed out")
    assert up is not None and down is not None
    assert up.url.endswith("?status=up&msg=IPv4+203.0.113.7&ping=840")
    assert down.url.endswith("?status=down&msg=dyn+IPv4%3A+failed%3A+timed+out&ping=")
    assert up.method == down.method == "GET" and not up.body


def test_plain_pings_only_when_all_is_well() -> None:
    url = "https://example.net/beat/abc?k=v"
    up = form("plain", url, "up", "ignored")
    assert up is not None and up.url == url and up.method == "GET"
    assert form("plain", url, "start") is None and form("plain", url, "fail", "x") is None


@pytest.mark.parametrize(
    ("preset", "status", "body", "accepted"),
    [
        ("healthchecks", 200, "OK", True),
        ("healthchecks", 201, "Created", True),
        ("healthchecks", 404, "not found", False),
        ("healthchecks", 200, "<html>Welcome to the hotel Wi-Fi</html>", False),
        ("uptime-kuma", 200, '{"ok":true}', True),
        ("uptime-kuma", 404, json.dumps({"ok": False, "msg": NOT_ACTIVE}), False),
        ("uptime-kuma", 200, "OK", False),
        ("plain", 204, "", True),
        ("plain", 500, "oops", False),
    ],
)
def test_answers_are_judged_by_the_documented_form(
    preset: str, status: int, body: str, accepted: bool
) -> None:
    ok, shown = judge(preset, status, body)
    assert ok is accepted
    if not accepted:
        assert f"HTTP {status}" in shown


def test_what_a_sync_came_to() -> None:
    well, words = summary(report(("dyn", "sent"), ("other", "unchanged")))
    assert well and ADDRESS in words and "2 target(s)" in words
    well, words = summary(report(("dyn", "sent"), ("other", "failed")))
    assert not well and "other IPv4: failed: failed message" in words and "dyn" not in words
    well, words = summary(report(("dyn", "stopped")))
    assert not well and "dyn IPv4: stopped" in words
    well, words = summary(report(address=None))
    assert not well and "no IPv4 address found" in words


# -- the section ---------------------------------------------------------------------------------


def test_inline_urls_are_checked_and_the_preset_read(tmp_path: Path) -> None:
    file = private(tmp_path)
    cfg = parse_heartbeat(table({"url": f"https://hc-ping.com/{CHECK}"}, file))
    assert cfg.preset == "healthchecks" and cfg.timeout == 10.0
    cfg = parse_heartbeat(
        table({"url": "https://example.net/beat/abc", "preset": "plain", "timeout": "3s"}, file)
    )
    assert cfg.preset == "plain" and cfg.timeout == 3.0


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"url": "https://example.net/beat/abcdefgh"}, "preset", "cannot be told"),
        ({"url": f"https://hc-ping.com/{CHECK}/fail"}, "url", "ends in /fail"),
        ({"url": f"http://hc.example.net/ping/{CHECK}"}, "url", "plain HTTP"),
        ({"url": f"https://user:pw@hc.example.net/ping/{CHECK}"}, "url", "credentials"),
        ({"url": f"https://hc-ping.com/{CHECK}", "preset": "kuma"}, "preset", "valid:"),
        ({"url": f"https://hc-ping.com/{CHECK}", "timeout": "5m"}, "timeout", "between"),
        ({"url": f"https://hc-ping.com/{CHECK}", "every": "5m"}, "every", "not a known key"),
        ({}, "url", "required"),
    ],
)
def test_mistakes_name_the_key_and_never_show_the_url(
    tmp_path: Path, data: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_heartbeat(table(data, private(tmp_path)))
    message = str(caught.value)
    assert f"heartbeat.{key}" in message and words in message
    assert CHECK not in message and "abcdefgh" not in message and "pw@" not in message


def test_plain_http_is_allowed_when_asked_for(tmp_path: Path) -> None:
    url = f"http://192.168.1.4:3001/api/push/{TOKEN}?status=up&msg=OK&ping="
    cfg = parse_heartbeat(table({"url": url, "insecure_http": True}, private(tmp_path)))
    assert cfg.preset == "uptime-kuma"


def test_an_inline_url_needs_a_private_configuration(tmp_path: Path) -> None:
    file = write_config(tmp_path, "")
    file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        parse_heartbeat(table({"url": f"https://hc-ping.com/{CHECK}"}, file))


def test_urls_from_a_file_or_the_environment_are_read_when_the_heartbeat_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "heartbeat.url"
    secret.write_text(f"https://hc.example.net/ping/{CHECK}\n")
    secret.chmod(0o600)
    cfg = parse_heartbeat(table({"url_file": str(secret)}, private(tmp_path)))
    assert cfg.preset is None  # not read yet: check-config works without it
    beat = Heartbeat.from_config(cfg)
    assert beat.enabled and beat.preset == "healthchecks" and CHECK not in beat.name
    monkeypatch.delenv("HB_URL", raising=False)
    cfg = parse_heartbeat(table({"url_env": "HB_URL"}, private(tmp_path)))
    with caplog.at_level(logging.ERROR):
        assert not Heartbeat.from_config(cfg).enabled
    assert "heartbeat is off" in caplog.text and "HB_URL" in caplog.text
    monkeypatch.setenv("HB_URL", "https://example.net/beat/abcdefgh")
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert not Heartbeat.from_config(cfg).enabled  # no preset, none to read from the URL
    assert "preset" in caplog.text and "abcdefgh" not in caplog.text


# -- against the emulators -----------------------------------------------------------------------


def beat_for(url: str, preset: str, timeout: float = 5.0, **kwargs: Any) -> Heartbeat:
    cfg = HeartbeatConfig(Secret.inline(url, "heartbeat.url"), preset, timeout, True)
    beat = Heartbeat.from_config(cfg, **kwargs)
    assert beat.enabled
    return beat


def test_healthchecks_start_then_up_with_one_run_id(hc: HealthchecksServer) -> None:
    beat = beat_for(hc.ping_url(CHECK), "healthchecks")
    run(one_sync(beat, report(("dyn", "sent"))))
    start, up = hc.pings
    assert (start.kind, up.kind) == ("start", "success")
    assert start.rid is not None and start.rid == up.rid
    assert start.method == "GET" and up.method == "POST"
    assert ADDRESS.encode() in up.body and b"1 target(s) up to date" in up.body
    assert hc.violations == [] and hc.errors == []


def test_a_failed_sync_sends_the_failure_form_with_what_failed(hc: HealthchecksServer) -> None:
    beat = beat_for(hc.ping_url("pingkey123/home-ddns"), "healthchecks")
    run(one_sync(beat, report(("dyn", "failed"))))
    start, fail = hc.pings
    assert (start.kind, fail.kind) == ("start", "fail")
    assert fail.check == "pingkey123/home-ddns" and b"dyn IPv4: failed" in fail.body
    assert hc.violations == []


def test_a_stopped_target_sends_the_failure_form(hc: HealthchecksServer) -> None:
    beat = beat_for(hc.ping_url(CHECK), "healthchecks")
    run(one_sync(beat, report(("ok", "unchanged"), ("dyn", "stopped"))))
    assert [p.kind for p in hc.pings] == ["start", "fail"]
    assert b"dyn IPv4: stopped" in hc.pings[1].body


def test_a_sync_that_raised_sends_the_failure_form(hc: HealthchecksServer) -> None:
    beat = beat_for(hc.ping_url(CHECK), "healthchecks")
    run(one_sync(beat, "another ddnsagent process held the lock"))
    assert [p.kind for p in hc.pings] == ["start", "fail"]
    assert hc.pings[1].body.startswith(b"sync failed: another ddnsagent process")


def test_a_long_body_is_cut_to_what_the_service_keeps(hc: HealthchecksServer) -> None:
    hc.body_limit = 300
    beat = beat_for(hc.ping_url(CHECK), "healthchecks")
    many = [(f"target-{n}", "failed") for n in range(60)]

    async def two_syncs() -> None:
        for outcome in (report(("first", "sent")), report(*many)):  # the first learns the limit
            beat.sync_started("schedule")
            beat.observe_sync(outcome)
            for _ in range(500):
                await asyncio.sleep(0.01)
                if beat._worker is not None and beat._worker.done():
                    break
        await beat.aclose(5)

    run(two_syncs())
    assert [p.kind for p in hc.pings] == ["start", "success", "start", "fail"]
    assert hc.violations == []
    assert 250 < len(hc.pings[-1].body) <= 300


def test_uptime_kuma_up_and_down_and_no_start(kuma: UptimeKumaServer) -> None:
    beat = beat_for(kuma.push_url(TOKEN), "uptime-kuma")
    run(one_sync(beat, report(("dyn", "sent"))))
    beat = beat_for(kuma.push_url(TOKEN), "uptime-kuma")
    run(one_sync(beat, report(("dyn", "stopped"))))
    up, down = kuma.beats
    assert up.up and up.status == "up" and ADDRESS in up.msg and up.ping is not None
    assert not down.up and down.status == "down" and "dyn IPv4: stopped" in down.msg
    assert len(kuma.requests) == 2  # no start signal
    assert kuma.violations == [] and kuma.errors == []


@pytest.mark.parametrize("unknown_status", [404, 500])
def test_an_unknown_push_token_is_reported_with_kumas_words(
    kuma: UptimeKumaServer, unknown_status: int, caplog: pytest.LogCaptureFixture
) -> None:
    kuma.unknown_status = unknown_status
    results: list[PingResult] = []
    beat = beat_for(
        kuma.push_url("pausedToken9"), "uptime-kuma", record=lambda r, p: results.append(r)
    )
    with caplog.at_level(logging.WARNING, logger="ddnsagent"):
        run(one_sync(beat, report(("dyn", "sent"))))
    (result,) = results
    assert not result.ok and NOT_ACTIVE in result.result and str(unknown_status) in result.result
    assert NOT_ACTIVE in caplog.text and "pausedToken9" not in caplog.text


def test_an_unknown_check_warns_once_per_episode(
    hc: HealthchecksServer, caplog: pytest.LogCaptureFixture
) -> None:
    results: list[PingResult] = []
    beat = beat_for(hc.ping_url(OTHER), "healthchecks", record=lambda r, p: results.append(r))

    async def three_syncs() -> None:
        for _ in range(3):
            beat.sync_started("schedule")
            beat.observe_sync(report(("dyn", "sent")))
            await asyncio.sleep(0)
            while beat._worker is not None and not beat._worker.done():
                await asyncio.sleep(0.01)
        await beat.aclose(5)

    with caplog.at_level(logging.DEBUG, logger="ddnsagent"):
        run(three_syncs())
    assert len(results) == 6 and not any(r.ok for r in results)
    assert all(r.result == "HTTP 404: not found" for r in results)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not found" in warnings[0].getMessage()
    assert OTHER not in caplog.text


def test_a_service_that_is_down_costs_one_warning_and_no_time(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    beat = beat_for(f"http://127.0.0.1:{closed_port}/ping/{CHECK}", "healthchecks", timeout=2)

    async def syncs() -> list[float]:
        took = []
        for _ in range(3):
            started = time.monotonic()
            beat.sync_started("schedule")
            beat.observe_sync(report(("dyn", "sent")))
            took.append(time.monotonic() - started)
            await asyncio.sleep(0.2)
        await beat.aclose(5)
        return took

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ddnsagent"):
        took = run(syncs())
    assert max(took) < 0.1  # the observers only queue
    assert time.monotonic() - started < 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot connect" in warnings[0].getMessage()


def test_a_silent_service_is_cut_off_by_the_timeout(hc: HealthchecksServer) -> None:
    hc.delay = 10
    results: list[PingResult] = []
    beat = beat_for(
        hc.ping_url(CHECK), "healthchecks", timeout=1, record=lambda r, p: results.append(r)
    )
    started = time.monotonic()
    run(one_sync(beat, report(("dyn", "sent")), limit=5))
    assert time.monotonic() - started < 4
    assert results and not results[0].ok and "no answer within 1s" in results[0].result


def test_a_pile_of_pings_drops_the_oldest(hc: HealthchecksServer) -> None:
    hc.delay = 0.3
    beat = beat_for(hc.ping_url(CHECK), "healthchecks")

    async def burst() -> None:
        for n in range(10):
            beat.observe_sync(report((f"t{n}", "failed")))
        await beat.aclose(10)

    run(burst())
    # all ten arrive before the worker runs: only the newest MAX_PENDING stay queued
    sent = [p.body.split(b" ")[0].decode() for p in hc.pings]
    assert sent == [f"t{n}" for n in range(10 - MAX_PENDING, 10)]


def test_the_url_never_reaches_a_log_line_not_even_httpx_debug(
    hc: HealthchecksServer, kuma: UptimeKumaServer
) -> None:
    stream = io.StringIO()
    logsetup.setup("debug", stream, libraries=True)
    try:
        run(one_sync(beat_for(hc.ping_url(CHECK), "healthchecks"), report(("dyn", "failed"))))
        run(one_sync(beat_for(kuma.push_url(TOKEN), "uptime-kuma"), report(("dyn", "sent"))))
        plain = f"{hc.url}/beat/Plain-Secret-77?key=AnotherSecret88"
        run(one_sync(beat_for(plain, "plain"), report(("dyn", "sent"))))
    finally:
        logsetup.setup("warning", io.StringIO())
    text = stream.getvalue()
    assert "HTTP Request: POST" in text and "HTTP Request: GET" in text  # httpx did speak
    assert "httpcore" in text
    assert CHECK not in text and TOKEN not in text and "***" in text
    assert "Plain-Secret-77" not in text and "AnotherSecret88" not in text
    assert "heartbeat up ping to plain at 127.0.0.1 failed: HTTP 404" in text
    assert len(hc.pings) == 2 and len(kuma.beats) == 1


# -- the record `status` shows --------------------------------------------------------------------


def test_the_record_keeps_the_last_ping_and_the_episode() -> None:
    state = AgentState()
    note_heartbeat(state, 100.0, "up", True, "OK", "healthchecks")
    note_heartbeat(state, 200.0, "fail", False, "HTTP 404: not found", "healthchecks")
    note_heartbeat(state, 300.0, "up", False, "cannot connect", "healthchecks")
    note_heartbeat(state, 250.0, "start", True, "OK", "healthchecks")  # older: ignored
    h = state.heartbeat
    assert h is not None
    assert (h.time, h.kind, h.ok, h.last_ok, h.failing_since) == (300.0, "up", False, 100.0, 200.0)
    again = _parse(json.loads(json.dumps(to_json(state))), _Checker())
    assert again.heartbeat == h and "heartbeat" not in again.extra
    note_heartbeat(state, 400.0, "up", True, "OK", "healthchecks")
    assert state.heartbeat is not None and state.heartbeat.failing_since is None


def test_a_wrong_typed_record_is_dropped_and_the_rest_kept() -> None:
    check = _Checker()
    state = _parse({"version": 1, "heartbeat": {"time": "soon", "kind": "up"}}, check)
    assert state.heartbeat is None and check.dropped and "heartbeat" not in state.extra


def test_status_shows_the_last_ping_and_a_failing_episode(tmp_path: Path) -> None:
    cfg = HeartbeatConfig(Secret.inline("https://hc-ping.com/x", "heartbeat.url"), None)
    assert status_json(None, None) is None and status_lines(None, str) == []
    shown = status_json(cfg, None)
    assert shown == {"preset": None, "last": None, "last_ok": None, "failing_since": None}
    assert status_lines(shown, str) == ["heartbeat (preset from the URL): no ping yet"]
    state = AgentState()
    note_heartbeat(state, 100.0, "up", True, "OK", "uptime-kuma")
    note_heartbeat(state, 200.0, "fail", False, "HTTP 404: nope", "uptime-kuma")
    shown = status_json(cfg, state.heartbeat)
    assert shown is not None and shown["preset"] == "uptime-kuma"
    assert shown["last"] == {"time": 200.0, "kind": "fail", "ok": False, "result": "HTTP 404: nope"}
    lines = status_lines(shown, lambda t: f"T{t:g}")
    assert lines[0] == "heartbeat (uptime-kuma): fail ping at T200: NOT ACCEPTED: HTTP 404: nope"
    assert "failing since T200; last accepted ping: T100" in lines[1]


# -- end to end: notify-now and the daemon -------------------------------------------------------


def heartbeat_config(tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, url: str) -> Path:
    text = config_text(tmp_path / "state", echo.echo_url, dyndns2_provider(dyn.update_url))
    text += f'[heartbeat]\nurl = "{url}"\ntimeout = "2s"\n'
    return write_config(tmp_path, text)


def test_notify_now_pings_and_status_shows_it(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, hc: HealthchecksServer
) -> None:
    path = heartbeat_config(tmp_path, echo, dyn, hc.ping_url(CHECK))
    p = ddnsagent("notify-now", "--local", "--config", path)
    assert p.returncode == 0, p.stderr
    assert [x.kind for x in hc.pings] == ["start", "success"] and len(dyn.requests) == 1
    assert CHECK not in p.stdout + p.stderr
    status = ddnsagent("status", "--json", "--config", path)
    beat = json.loads(status.stdout)["heartbeat"]
    assert beat["preset"] == "healthchecks" and beat["failing_since"] is None
    assert beat["last"]["kind"] == "up" and beat["last"]["ok"] is True
    assert beat["last"]["result"] == "OK"
    text = ddnsagent("status", "--config", path).stdout
    assert "heartbeat (healthchecks): up ping at" in text and CHECK not in text
    p = ddnsagent("notify-now", "--local", "--dry-run", "--config", path)
    assert len(hc.pings) == 2  # a dry run pings nothing


def test_notify_now_with_the_service_down_ends_normally_and_in_time(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/ping/{CHECK}"
    path = heartbeat_config(tmp_path, echo, dyn, url)
    started = time.monotonic()
    p = ddnsagent("notify-now", "--local", "--config", path)
    assert time.monotonic() - started < 20
    assert p.returncode == 0 and len(dyn.requests) == 1
    (line,) = p.stderr.strip().splitlines()  # one warning, nothing else
    assert "WARNING" in line and "heartbeat start ping" in line and "cannot connect" in line
    assert CHECK not in p.stderr
    status = json.loads(ddnsagent("status", "--json", "--config", path).stdout)
    assert status["heartbeat"]["last"]["ok"] is False
    assert status["heartbeat"]["failing_since"] is not None


def test_the_daemon_pings_after_each_sync_and_fails_for_a_stopped_target(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, kuma: UptimeKumaServer
) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import wait_until

    path = heartbeat_config(tmp_path, echo, dyn, kuma.push_url(TOKEN))
    log = tmp_path / "daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddnsagent", "run", "--config", str(path)],
            stdout=out,
            stderr=out,
            env=child_env(),
        )
    try:
        wait_until(lambda: len(kuma.beats) >= 1, "the first heartbeat")
        assert kuma.beats[0].up and ADDRESS in kuma.beats[0].msg
        dyn.users.clear()  # the account is gone: badauth stops the target
        echo.answer = "203.0.113.8\n"
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: len(kuma.beats) >= 2, "the heartbeat after the second sync")
        assert not kuma.beats[1].up and "stopped" in kuma.beats[1].msg
        wait_until(
            lambda: (
                json.loads(ddnsagent("status", "--json", "--config", path).stdout)["heartbeat"][
                    "last"
                ]["kind"]
                == "fail"
            ),
            "the failure in the state",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = log.read_text()
    assert TOKEN not in text and kuma.violations == []


def test_status_and_check_config_stay_lean_with_a_heartbeat(tmp_path: Path) -> None:
    """[heartbeat] adds nothing heavy to `status` or `check-config` (tests/test_imports.py)."""
    from tests.test_imports import heavy
    from tests.test_imports import run as run_fresh

    url_file = tmp_path / "heartbeat.url"
    url_file.write_text(f"https://hc-ping.com/{CHECK}\n")
    url_file.chmod(0o600)
    text = (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n\n'
        '[detect]\nipv4 = ["web:http://127.0.0.1:9/"]\nipv6 = []\naccept = "any"\n\n'
        f'[heartbeat]\nurl_file = "{url_file}"\n'
    )
    path = write_config(tmp_path, text)
    code, modules, out = run_fresh(["status", "--config", str(path)])
    assert code == 0 and "heartbeat (preset from the URL): no ping yet" in out
    assert heavy(modules) == [] and "ddnsagent.outputs.heartbeat_settings" in modules
    assert "ddnsagent.outputs.heartbeat" not in modules


def test_the_example_section_uncommented_loads(tmp_path: Path) -> None:
    """config.example.toml's commented [heartbeat] is a working section once uncommented."""
    from ddnsagent import config

    root = Path(__file__).resolve().parents[1]
    text = (root / "config.example.toml").read_text(encoding="utf-8")
    start = text.index("# [heartbeat]")
    block = text[start : text.find("\n\n", start) % (len(text) + 1)]  # to the next section
    lines = [re.sub(r"^# ", "", line) for line in block.splitlines() if re.match(r"# [\w[]", line)]
    url_file = tmp_path / "heartbeat.url"
    url_file.write_text(f"https://hc-ping.com/{CHECK}\n")
    url_file.chmod(0o600)
    section = "\n".join(lines).replace("/etc/ddnsagent/heartbeat.url", str(url_file))
    base = f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = ["web"]\n'
    cfg = config.load(write_config(tmp_path, base + section + "\n"))
    assert cfg.heartbeat is not None and cfg.heartbeat.preset == "healthchecks"
    assert cfg.heartbeat.timeout == 10.0 and cfg.heartbeat.insecure_http is False
    assert Heartbeat.from_config(cfg.heartbeat).preset == "healthchecks"
