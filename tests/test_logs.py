"""Logs as a human reads them (issue 13, item 8): each send logged once, SIGUSR1 acknowledged,
the date in every timestamp outside journald and no timestamp of ours inside it, our debug detail
apart from the libraries', secrets masked in the libraries' debug records, unset secrets named at
start, and Python warnings as one line."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ddnsagent import config, logsetup, secrets
from ddnsagent.outcome import SyncReport
from ddnsagent.relay.logparse import parse_line
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.sync import Agent, SyncOptions
from tests import test_daemon
from tests.conftest import (
    DYN_ENV,
    FIRST,
    child_env,
    config_text,
    dyndns2_provider,
    mydns_provider,
    wait_until,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer, MyDNSServer
from tests.relay import conftest as relay_conftest
from tests.relay.conftest import RELAY, sent_line
from tests.test_daemon import DaemonProcess, move, synced

# The fixtures these tests share with the daemon's and the watchdog's tests.
start_daemon = test_daemon.start_daemon
world = relay_conftest.world

SECOND = "203.0.113.8"
DATED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")
# A token as long as real ones (MyDNS's are 8+ characters, API tokens 20+).
TOKEN = "tok-5f0c2e9a7b1d4c38"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """logsetup changes the root logger and the libraries' levels: put them back."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {n: logging.getLogger(n).level for n in logsetup.LIBRARIES}
    shown = warnings.showwarning
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    warnings.showwarning = shown


def lines_of(out: io.StringIO | str) -> list[str]:
    text = out.getvalue() if isinstance(out, io.StringIO) else out
    return [line for line in text.splitlines() if line.strip()]


# -- format ------------------------------------------------------------------------------------


def test_outside_journald_each_line_carries_date_and_time(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    logsetup.setup("info", out)
    logging.getLogger("ddnsagent.test").info("hello")
    (line,) = lines_of(out)
    assert DATED.match(line), line
    assert line.endswith("INFO ddnsagent.test: hello")


def test_under_journald_no_time_of_ours_but_the_priority(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """systemd.exec(5): $JOURNAL_STREAM is "DEVICE:INODE" of the stream connected to the
    journal; sd-daemon(3): a "<N>" prefix sets the entry's priority."""
    with open(tmp_path / "journal", "w+", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logsetup.setup("info", stream)
        logging.getLogger("ddnsagent.test").warning("careful")
        logging.getLogger("ddnsagent.test").info("fine")
        stream.flush()
        stream.seek(0)
        lines = lines_of(stream.read())
    assert lines == ["<4>WARNING ddnsagent.test: careful", "<6>INFO ddnsagent.test: fine"]


def test_journal_stream_of_another_stream_keeps_the_timestamps(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A program started by the service with its stderr redirected inherits $JOURNAL_STREAM;
    only the very stream counts."""
    other = os.stat(tmp_path)
    monkeypatch.setenv("JOURNAL_STREAM", f"{other.st_dev}:{other.st_ino}")
    with open(tmp_path / "file.log", "w+", encoding="utf-8") as stream:
        logsetup.setup("info", stream)
        logging.getLogger("ddnsagent.test").info("hello")
        stream.flush()
        stream.seek(0)
        (line,) = lines_of(stream.read())
    assert DATED.match(line), line


# -- levels ------------------------------------------------------------------------------------


def chatter() -> None:
    """What the libraries say at a daemon's start and during a request, below warnings."""
    for name in ("httpcore.connection", "httpx", "apscheduler.scheduler", "tzlocal", "otherlib"):
        logging.getLogger(name).debug("%s debug chatter", name)
        logging.getLogger(name).info("%s info chatter", name)
    logging.getLogger("ddnsagent.sync").debug("our own detail")
    logging.getLogger("apscheduler.scheduler").warning("a library's warning")


def test_debug_raises_our_detail_not_the_libraries(restore_logging: None) -> None:
    out = io.StringIO()
    logsetup.setup("debug", out)
    chatter()
    text = out.getvalue()
    assert "our own detail" in text
    assert "chatter" not in text, text
    assert "a library's warning" in text


def test_debug_libraries_lets_the_libraries_debug_through(restore_logging: None) -> None:
    out = io.StringIO()
    logsetup.setup("debug", out, libraries=True)
    chatter()
    text = out.getvalue()
    for name in ("httpcore.connection", "httpx", "apscheduler.scheduler", "tzlocal"):
        assert f"{name} debug chatter" in text, name
    assert "our own detail" in text
    # `log_level` still sets ours: debug_libraries does not raise our detail.
    out = io.StringIO()
    logsetup.setup("info", out, libraries=True)
    chatter()
    assert "httpcore.connection debug chatter" in out.getvalue()
    assert "our own detail" not in out.getvalue()


def test_secrets_stay_masked_in_the_libraries_debug_records(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real request through httpx and httpcore, with the token in the query and the header:
    their debug records come through with debug_libraries, and the token in none of them."""
    monkeypatch.setattr(secrets, "_known", set())
    secrets.register_query_value(TOKEN)
    out = io.StringIO()
    logsetup.setup("info", out, libraries=True)
    from ddnsagent import http

    async def request(url: str) -> None:
        async with http.client(None, 5.0, "ddnsagent-test") as client:
            await client.get(url, params={"token": TOKEN}, headers={"X-Token": TOKEN})

    with EchoServer(FIRST + "\n") as echo:
        asyncio.run(request(echo.echo_url))
    text = out.getvalue()
    assert "DEBUG httpcore" in text and "HTTP Request: GET" in text, text
    assert "token=***" in text
    assert TOKEN not in text


def test_a_python_warning_is_one_line_without_its_source(restore_logging: None) -> None:
    class RuntimeDirWarning(UserWarning):
        pass

    RuntimeDirWarning.__module__ = "platformdirs.api"
    out = io.StringIO()
    logsetup.setup("warning", out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = logsetup._show_warning
        warnings.warn(
            "XDG_RUNTIME_DIR is not set, falling back to /run/user/1000",
            RuntimeDirWarning,
            stacklevel=1,
        )
    (line,) = lines_of(out)
    assert line.endswith(
        "WARNING ddnsagent: XDG_RUNTIME_DIR is not set, falling back to /run/user/1000 "
        "(RuntimeDirWarning from platformdirs)"
    )
    assert ".py:" not in line and "warnings.warn" not in out.getvalue()


def test_platformdirs_own_warning_comes_as_one_log_line() -> None:
    """The real thing in a fresh interpreter, as a user without $XDG_RUNTIME_DIR meets it."""
    import platformdirs

    if not hasattr(platformdirs, "RuntimeDirWarning"):
        pytest.skip(f"platformdirs {platformdirs.__version__} warns about no runtime directory")
    code = (
        "import platformdirs\n"
        "from ddnsagent import logsetup\n"
        "logsetup.setup('warning')\n"
        "print(platformdirs.user_runtime_dir('ddnsagent'))\n"
    )
    env = {k: v for k, v in child_env().items() if k != "XDG_RUNTIME_DIR"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    (line,) = lines_of(run.stderr)
    assert DATED.match(line), line
    assert "XDG_RUNTIME_DIR is not set" in line and "(RuntimeDirWarning from platformdirs)" in line


# -- the daemon --------------------------------------------------------------------------------


def test_the_daemon_says_each_thing_once(
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state_dir = tmp_path / "state"
    providers = mydns_provider(mydns.notify_url) + dyndns2_provider(dyn.update_url)
    config = write_config(tmp_path, config_text(state_dir, echo.echo_url, providers))
    env = child_env()
    del env[DYN_ENV]  # the dyndns2 password's variable never reached the service
    echo.answer = "not an address\n"
    d = start_daemon(config, env)
    synced(echo, 0, state_dir)
    wait_until(lambda: "no IPv4 address found" in d.log(), "the detection to be logged")
    log = d.log()
    # Named at start, before the first sync needs it (the words of the secret's own message
    # are secrets.py's; the variable's name is in them).
    unset = re.compile(
        rf"WARNING ddnsagent\.daemon: provider dyn: .*{DYN_ENV}.*fail until it is set"
    )
    found = unset.search(log)
    assert found is not None, log
    assert found.start() < log.index("no IPv4 address found")
    assert re.search(r"WARNING ddnsagent\.daemon: no IPv4 address found \(web:", log), log

    move(echo, mydns, SECOND)
    before = len(echo.requests)
    d.send(signal.SIGUSR1)
    synced(echo, before, state_dir)
    wait_until(lambda: "home: IPv4 203.0.113.8 sent" in d.log(), "the send to be logged")
    before = len(echo.requests)
    d.send(signal.SIGUSR1)  # nothing new: the same address, the same unset secret
    synced(echo, before, state_dir)
    code, _ = d.stop()
    log = d.log()
    assert code == 0, log
    assert log.count("SIGUSR1 received: syncing now") == 2, log
    sends = [line for line in log.splitlines() if re.search(r"\bhome\b.*\bsent\b", line)]
    assert len(sends) == 1, log
    assert "INFO ddnsagent.sync: home: IPv4 203.0.113.8 sent" in sends[0]
    # The unset secret was said at start: the sends that fail for it do not say it again.
    assert len(unset.findall(log)) == 1, log
    assert "dyn: IPv4 not sent" not in log, log
    for line in lines_of(log):
        assert DATED.match(line), line
    assert "Traceback" not in log


def test_a_send_that_meets_an_unset_secret_says_so_once(
    tmp_path: Path,
    echo: EchoServer,
    dyn: Dyndns2Server,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the daemon's start-up check (a hook or notify-now syncing on its own, the relay
    watchdog's syncs): the first failing send warns, the next ones do not repeat it."""
    monkeypatch.delenv(DYN_ENV, raising=False)
    text = config_text(tmp_path / "state", echo.echo_url, dyndns2_provider(dyn.update_url))
    cfg = config.load(write_config(tmp_path, text))
    agent = Agent(cfg)
    address = {4: ipaddress.ip_address(FIRST)}

    async def three() -> list[SyncReport]:
        return [await agent.sync(SyncOptions(addresses=address)) for _ in range(3)]

    with caplog.at_level(logging.DEBUG, logger="ddnsagent.sync"):
        reports = asyncio.run(three())
    assert [[t.action for t in r.targets] for r in reports] == [["config"]] * 3
    said = [r for r in caplog.records if "dyn: IPv4 not sent" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert DYN_ENV in said[0].getMessage()
    assert dyn.requests == []


def test_under_journald_the_daemon_writes_priorities_and_no_time(
    tmp_path: Path, echo: EchoServer, mydns: MyDNSServer
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, mydns_provider(mydns.notify_url))
    )
    log = tmp_path / "journal.log"
    log.touch()
    st = log.stat()
    d = DaemonProcess(config, log, child_env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"))
    try:
        wait_until(lambda: "sent" in d.log() or not d.alive(), "the first send")
        code, _ = d.stop()
    finally:
        d.kill()
    lines = lines_of(d.log())
    assert code == 0, d.log()
    assert any(line.startswith("<6>INFO ddnsagent.daemon: ddnsagent running") for line in lines)
    assert any(line.startswith("<6>INFO ddnsagent.sync: home: IPv4") for line in lines)
    for line in lines:
        assert re.match(r"<[2-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) ", line), line
        assert not DATED.search(line), line


def test_relay_recovered_is_info(world, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    cfg = world[0]

    async def scenario() -> None:
        watch = RelayWatch(Agent(cfg))
        watch.decider.trouble_since = time.time() - 30
        watch.decider.acted("reconnect", time.time() - 20)
        watch.feed(parse_line(sent_line(), RELAY, watch.patterns))
        assert watch.action is not None
        await watch.action

    with caplog.at_level(logging.DEBUG, logger="ddnsagent.relay.watch"):
        asyncio.run(scenario())
    (record,) = [r for r in caplog.records if "relay recovered" in r.getMessage()]
    assert record.levelno == logging.INFO


def test_the_example_shows_every_agent_key_and_each_one_loads(tmp_path: Path) -> None:
    """[agent]'s keys, the ones issue 13 found missing (control_socket) and the new one
    (debug_libraries) among them, are in config.example.toml, and uncommented they load."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "config.example.toml").read_text(encoding="utf-8")
    for key in ("debug_libraries", "control_socket"):
        text = re.sub(rf"(?m)^# ({key} = )", r"\1", text, count=1)
    text = re.sub(r"(?m)^# state_dir = .*$", f'state_dir = "{tmp_path}/state"', text)
    cfg = config.load(write_config(tmp_path, text))
    assert cfg.agent.debug_libraries is False
    assert cfg.agent.control_socket == Path("/run/ddnsagent/control.sock")
    fields = {f for f in config.AgentConfig.__dataclass_fields__}
    for key in fields:
        assert re.search(rf"(?m)^#? ?{key} = ", text), f"[agent] {key} is not in the example"
