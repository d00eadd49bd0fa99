"""Notifications through apprise, to a JSON receiver on loopback: they arrive with the right title
and body, a dead or silent target neither raises nor blocks, and no part of a URL that may be a
credential reaches the logs, apprise's own debug output included."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.errors import ConfigError
from ddnsagent.logsetup import RedactingFormatter
from ddnsagent.outcome import Detection, ReconnectOutcome, SyncReport, TargetReport
from ddnsagent.outputs import apprise_sender
from ddnsagent.outputs.apprise_sender import AppriseSender
from ddnsagent.outputs.apprise_urls import split_urls, url_secret_parts
from ddnsagent.outputs.notify import Notifier
from ddnsagent.outputs.notify_settings import (
    EVENTS,
    INSTALL_HINT,
    NotifyConfig,
    apprise_available,
    parse_notify,
)
from ddnsagent.secrets import Secret
from ddnsagent.table import Table
from tests.fakes import FakeServer, RecordedRequest, Response

needs_apprise = pytest.mark.skipif(
    not apprise_available(), reason="apprise (the notify extra) is not installed"
)
SEND_WITHIN = 0.2  # seconds event() may take: it only queues


class JsonReceiver(FakeServer):
    """What apprise's json:// plugin posts: {"title", "message", "type", …}."""

    def handle(self, request: RecordedRequest) -> Response:
        if request.method != "POST":
            return Response(405, b"POST only\n")
        return Response(200, b"{}", "application/json")

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (under apprise) honours proxy variables: loopback must stay loopback."""
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def receiver() -> Iterator[JsonReceiver]:
    with JsonReceiver() as server:
        yield server


@pytest.fixture
def refused_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections (the kernel does, from the backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG, through the redacting formatter the daemon uses."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    for name in ("apprise", "urllib3"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def config(*urls: str, events: tuple[str, ...] = EVENTS, timeout: float = 5.0) -> NotifyConfig:
    return NotifyConfig(Secret.inline("\n".join(urls), "notify.urls"), frozenset(events), timeout)


def timed_event(n: Notifier, *args: str) -> bool:
    started = time.monotonic()
    queued = n.event(*args)
    assert time.monotonic() - started < SEND_WITHIN, "event() must only queue"
    return queued


# -- delivery ------------------------------------------------------------------------------------


@needs_apprise
def test_a_notification_arrives_with_its_title_and_body(receiver: JsonReceiver) -> None:
    n = Notifier.from_config(config(f"json://127.0.0.1:{receiver.port}/hook"))
    assert n.enabled
    assert timed_event(n, "address", "box: new IPv4 address 203.0.113.9", "line 1\nline 2 – ü")
    assert receiver.wait_for_requests(1)
    assert n.close(5)
    (request,) = receiver.requests
    assert request.path == "/hook"
    message = receiver.messages()[0]
    assert message["title"] == "box: new IPv4 address 203.0.113.9"
    assert message["message"] == "line 1\nline 2 – ü"
    assert message["type"] == "info"


@needs_apprise
def test_only_the_chosen_events_are_sent(receiver: JsonReceiver) -> None:
    n = Notifier.from_config(
        config(f"json://127.0.0.1:{receiver.port}/", events=("stopped",)),
    )
    assert n.event("address", "t", "b") is False
    assert n.event("backscatter", "t", "b") is False
    assert n.event("stopped", "needs you", "badauth", "failure")
    assert n.close(5)
    assert [(m["title"], m["type"]) for m in receiver.messages()] == [("needs you", "failure")]


@needs_apprise
def test_a_refused_connection_neither_raises_nor_blocks(
    refused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier.from_config(config(f"json://127.0.0.1:{refused_port}/", timeout=2))
    assert n.enabled  # the URL is fine; the service is down
    started = time.monotonic()
    assert timed_event(n, "address", "t", "b")
    assert n.close(10)
    assert time.monotonic() - started < 5
    assert any("not delivered" in r.getMessage() for r in caplog.records)


@needs_apprise
def test_a_silent_server_is_cut_off_by_the_timeout(silent_port: int) -> None:
    n = Notifier.from_config(config(f"json://127.0.0.1:{silent_port}/", timeout=1))
    started = time.monotonic()
    assert timed_event(n, "address", "t", "b")
    assert n.close(15)
    assert time.monotonic() - started < 6  # a read timeout of 1 s, not apprise's default


class FakeTargets:
    """Stands in for apprise.Apprise: records notify() calls, optionally blocks in them."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()

    def notify(self, **kwargs: Any) -> bool:
        self.release.wait(10)
        with self.lock:
            self.calls.append(kwargs)
        return True

    def wait_calls(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= count:
                    return list(self.calls)
            time.sleep(0.01)
        raise AssertionError(f"{count} notifications expected, got {len(self.calls)}")


@needs_apprise
def test_a_full_queue_drops_instead_of_waiting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(apprise_sender, "QUEUE_SIZE", 2)
    targets = FakeTargets()
    targets.release.clear()  # the service hangs
    n = Notifier(AppriseSender(targets), host="box")
    assert timed_event(n, "address", "1", "b")
    deadline = time.monotonic() + 5
    while n.sender._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker took the first one and is stuck in it
    assert timed_event(n, "address", "2", "b")
    assert timed_event(n, "address", "3", "b")
    assert timed_event(n, "address", "4", "b") is False
    assert timed_event(n, "address", "5", "b") is False
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1
    targets.release.set()
    assert n.close(5)
    assert [c["title"] for c in targets.calls] == ["1", "2", "3"]


@needs_apprise
def test_the_worker_thread_exists_only_while_there_is_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(apprise_sender, "IDLE_EXIT", 0.05)
    targets = FakeTargets()
    n = Notifier(AppriseSender(targets), host="box")
    assert n.sender._worker is None
    n.event("address", "1", "b")
    targets.wait_calls(1)
    deadline = time.monotonic() + 5
    while n.sender._worker is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert n.sender._worker is None
    n.event("address", "2", "b")  # a new worker for new work
    assert [c["title"] for c in targets.wait_calls(2)] == ["1", "2"]
    assert n.close(5)
    assert n.event("address", "3", "b") is False  # closed


@needs_apprise
def test_an_exception_in_apprise_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def notify(self, **kwargs: Any) -> bool:
            raise RuntimeError("plugin bug")

    n = Notifier(AppriseSender(Broken()), host="box")
    assert n.event("address", "t", "b")
    assert n.close(5)
    assert any("address notification failed: plugin bug" in r.getMessage() for r in caplog.records)


# -- secrets -------------------------------------------------------------------------------------


def forms(user: str, password: str) -> list[str]:
    pair = f"{user}:{password}"
    return [password, pair, *(base64.b64encode(x.encode()).decode() for x in (pair, password))]


@needs_apprise
def test_url_secrets_never_reach_the_debug_log(
    receiver: JsonReceiver, refused_port: int, debug_log: io.StringIO
) -> None:
    good = f"json://notifyuser:s3cretpw-41d@127.0.0.1:{receiver.port}/"
    token = "Tok3n-9f2c7e51aa"
    bad = f"json://other:0therPw-77e@127.0.0.1:{refused_port}/hooks/{token}?token=q-Secret-5e"
    n = Notifier.from_config(config(good, bad, "nosuch://ab:nosuchPw-3c1@example.org/x", timeout=2))
    assert n.event("address", "t", "b")
    assert receiver.wait_for_requests(1)
    assert n.close(10)
    assert receiver.requests[0].password == "s3cretpw-41d"  # the secret was used…
    output = debug_log.getvalue()
    assert "apprise" in output and "urllib3" in output  # …apprise spoke at DEBUG…
    assert "#3 (nosuch)" in output  # …and the bad URL is named without its content
    leaks = [
        *forms("notifyuser", "s3cretpw-41d"),
        *forms("other", "0therPw-77e"),
        "nosuchPw-3c1",
        token,
        "q-Secret-5e",
    ]
    for secret in leaks:
        assert secret not in output, f"{secret!r} leaked:\n{output}"


TGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
DISCORD_TOKEN = "JHMHI8qBe7bk2ZwO5U711o3dV_js"
PUSHOVER_USER = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"


@pytest.mark.parametrize(
    ("url", "secret", "kept"),
    [
        ("json://user:s3cretpw@127.0.0.1:8080/", "s3cretpw", "127.0.0.1"),
        (f"tgram://{TGRAM_TOKEN}/-100123/", TGRAM_TOKEN, None),
        (f"discord://4174216298/{DISCORD_TOKEN}", DISCORD_TOKEN, None),
        ("mailto://bob:pa%40ss@mail.example.org?to=alice@example.org", "pa@ss", "mail.example.org"),
        ("json://hooks.example.org/api/notify?token=abc", "abc", "notify"),
        (f"pover://{PUSHOVER_USER}@azGDORePK8gMaC0QOYAMyE", PUSHOVER_USER, None),
        ("json://[::1]:80/path", None, "::1"),
    ],
)
def test_credential_like_parts_of_urls(url: str, secret: str | None, kept: str | None) -> None:
    parts = url_secret_parts(url)
    if secret is not None:
        assert secret in parts
    if kept is not None:
        assert not any(kept in p for p in parts)  # hosts and plain words stay readable


def test_split_urls() -> None:
    text = "# chat\njson://a/ \n\n  tgram://t/c   mailto://u:p@h\n#json://off/\n"
    assert split_urls(text) == ["json://a/", "tgram://t/c", "mailto://u:p@h"]


# -- events from what the daemon sees ------------------------------------------------------------


def sync(*targets: tuple[str, str], changed: bool = False) -> SyncReport:
    r = SyncReport("schedule")
    r.detections[4] = Detection(4, ipaddress.ip_address("203.0.113.9"), "web:https://echo")
    for name, action in targets:
        fix = "check the password" if action == "stopped" else None
        r.targets.append(TargetReport(name, "mydns", 4, "203.0.113.9", action, "badauth", fix))
    if changed:
        r.changed.append(4)
    return r


@needs_apprise
def test_address_and_stopped_events_from_sync_reports() -> None:
    targets = FakeTargets()
    n = Notifier(AppriseSender(targets), host="box")
    n.observe_sync(sync(("mydns", "sent"), ("dynu", "stopped"), changed=True))
    calls = targets.wait_calls(2)
    assert calls[0]["title"] == "box: new IPv4 address 203.0.113.9"
    assert "mydns: sent" in calls[0]["body"]
    assert calls[1]["title"] == "box: dynu (IPv4) stopped"
    assert calls[1]["body"] == "badauth\nTo fix: check the password"
    assert calls[1]["notify_type"] == "failure"
    n.observe_sync(sync(("mydns", "unchanged"), ("dynu", "stopped")))  # still stopped: quiet
    n.observe_sync(sync(("dynu", "sent")))  # fixed and reset…
    n.observe_sync(sync(("dynu", "stopped")))  # …and stopped again: worth a message
    assert n.close(5)
    assert [c["title"] for c in targets.calls[2:]] == ["box: dynu (IPv4) stopped"]


@needs_apprise
def test_a_reload_does_not_repeat_a_stop() -> None:
    targets = FakeTargets()
    old = Notifier(AppriseSender(targets), host="box")
    old.observe_sync(sync(("dynu", "stopped")))
    targets.wait_calls(1)
    new = Notifier.from_config(config("json://127.0.0.1:9/"), previous=old)
    new.sender = AppriseSender(targets)
    new.observe_sync(sync(("dynu", "stopped")))
    assert new.close(5) and old.close(5)
    assert len(targets.calls) == 1


@needs_apprise
def test_reconnect_and_backscatter_events() -> None:
    targets = FakeTargets()
    n = Notifier(AppriseSender(targets), host="box")
    n.observe_reconnect(ReconnectOutcome(False, "in cooldown", "1.1.1.1", None))  # only logged
    n.observe_reconnect(ReconnectOutcome(True, "new address", "198.51.100.1", "198.51.100.2"))
    n.observe_reconnect(ReconnectOutcome(True, "did not change", "198.51.100.2", "198.51.100.2"))
    n.backscatter(31, 20)
    assert n.close(5)
    got = [(c["title"], c["notify_type"]) for c in targets.calls]  # NotifyType is a str
    assert got == [
        ("box: reconnected, new address 198.51.100.2", "success"),
        ("box: reconnect did not change the address", "warning"),
        ("box: 31 bounces in the last hour", "warning"),
    ]


# -- building from the configuration -------------------------------------------------------------


def test_unreadable_urls_turn_notifications_off_without_raising(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DDNSAGENT_TEST_NOTIFY_URLS", raising=False)
    cfg = NotifyConfig(Secret.from_env("DDNSAGENT_TEST_NOTIFY_URLS", "notify.urls_env"))
    n = Notifier.from_config(cfg)
    assert not n.enabled
    assert n.event("address", "t", "b") is False
    assert any("notifications are off" in r.getMessage() for r in caplog.records)


@needs_apprise
def test_urls_apprise_does_not_know_are_skipped(
    receiver: JsonReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier.from_config(config("nosuch://x", f"json://127.0.0.1:{receiver.port}/"))
    assert n.enabled and len(n.sender.targets) == 1
    assert any("#1 (nosuch)" in r.getMessage() for r in caplog.records)
    assert not Notifier.from_config(config("nosuch://x", "not a url")).enabled
    n.close()


def test_without_apprise_notifications_are_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise → ImportError
    n = Notifier.from_config(config("json://127.0.0.1:9/"))
    assert not n.enabled
    assert any(INSTALL_HINT in r.getMessage() for r in caplog.records)


# -- parse_notify --------------------------------------------------------------------------------


def private(path: Path, text: str = "", mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def table(data: dict[str, Any], tmp_path: Path, mode: int = 0o600) -> Table:
    return Table(data, "notify", private(tmp_path / "config.toml", mode=mode))


@needs_apprise
def test_inline_urls(tmp_path: Path) -> None:
    cfg = parse_notify(table({"urls": ["json://127.0.0.1:1/", " tgram://1:AbC/2 "]}, tmp_path))
    assert cfg.urls.reveal() == "json://127.0.0.1:1/\ntgram://1:AbC/2"
    assert cfg.events == frozenset(EVENTS)
    assert cfg.timeout == 10.0


def test_inline_urls_need_a_private_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable by others"):
        parse_notify(table({"urls": ["json://127.0.0.1:1/"]}, tmp_path, mode=0o644))


@needs_apprise
def test_urls_from_a_file(tmp_path: Path, receiver: JsonReceiver) -> None:
    private(tmp_path / "notify.urls", f"# mine\njson://127.0.0.1:{receiver.port}/a\n\n")
    cfg = parse_notify(
        table({"urls_file": "notify.urls", "events": ["address"], "timeout": "3s"}, tmp_path)
    )
    assert cfg.events == frozenset({"address"}) and cfg.timeout == 3.0
    n = Notifier.from_config(cfg)
    assert n.event("address", "from a file", "b")
    assert n.close(5)
    assert receiver.messages()[0]["title"] == "from a file"


@needs_apprise
def test_a_readable_urls_file_is_refused_when_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    private(tmp_path / "notify.urls", "json://127.0.0.1:1/\n", mode=0o644)
    cfg = parse_notify(table({"urls_file": str(tmp_path / "notify.urls")}, tmp_path))
    assert not Notifier.from_config(cfg).enabled
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


@needs_apprise
def test_urls_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDNSAGENT_TEST_NOTIFY", "json://127.0.0.1:1/ json://127.0.0.1:2/")
    cfg = parse_notify(table({"urls_env": "DDNSAGENT_TEST_NOTIFY"}, tmp_path))
    assert split_urls(cfg.urls.reveal()) == ["json://127.0.0.1:1/", "json://127.0.0.1:2/"]


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({}, "notify.urls", "required"),
        ({"urls": ["json://a/"], "urls_file": "x"}, "notify.urls_file", "conflicts"),
        ({"urls": []}, "notify.urls", "is empty"),
        ({"urls": "json://a/"}, "notify.urls", "expected a list"),
        ({"urls": ["json://a/", "Secret-notaurl-1"]}, "notify.urls[1]", "not an apprise URL"),
        ({"urls_env": "X", "events": ["adress"]}, "notify.events[0]", "did you mean 'address'"),
        ({"urls_env": "X", "events": []}, "notify.events", "is empty"),
        ({"urls_env": "X", "timeout": "0s"}, "notify.timeout", "at least 1s"),
        ({"urls_env": "X", "url": "json://a/"}, "notify.url", "not a known key"),
    ],
)
def test_parse_errors(tmp_path: Path, data: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notify(table(data, tmp_path))
    assert caught.value.key == key
    assert words in str(caught.value)
    assert "Secret-notaurl-1" not in str(caught.value)  # a bad URL is never echoed


def test_a_missing_apprise_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)
    with pytest.raises(ConfigError) as caught:
        parse_notify(table({"urls_env": "X"}, tmp_path))
    assert caught.value.key == "notify"
    assert INSTALL_HINT in str(caught.value)


@needs_apprise
def test_load_builds_off_the_event_loop(receiver: JsonReceiver) -> None:
    import asyncio

    async def scenario() -> Notifier:
        return await Notifier.load(config(f"json://127.0.0.1:{receiver.port}/"))

    n = asyncio.run(scenario())
    assert n.enabled
    assert n.event("address", "loaded", "b")
    assert n.close(5)
    assert receiver.messages()[0]["title"] == "loaded"
