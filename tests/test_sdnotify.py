"""sd_notify(3) against a fake service manager: a datagram socket the test binds, on a path and in
the abstract namespace, reading what the daemon would tell systemd."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddnsagent.outputs import sdnotify
from ddnsagent.outputs.sdnotify import Notifier, watchdog_interval, watchdog_loop
from ddnsagent.secrets import register


class FakeManager:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, address: str | bytes, env_value: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.env_value = env_value

    def receive(self, timeout: float = 2.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def receive_all(self) -> list[tuple[float, str]]:
        """Every datagram waiting now, with the time it was read."""
        self.sock.setblocking(False)
        out = []
        while True:
            try:
                out.append((time.monotonic(), self.sock.recv(4096).decode()))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A socket path must fit in sun_path (108 bytes): pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def manager(short_dir: Path) -> Iterator[FakeManager]:
    path = str(short_dir / "notify")
    fake = FakeManager(path, path)
    yield fake
    fake.close()


@pytest.fixture
def abstract_manager() -> Iterator[FakeManager]:
    name = f"ddnsagent-test-{uuid.uuid4().hex}"
    fake = FakeManager(b"\0" + name.encode(), "@" + name)
    yield fake
    fake.close()


def test_path_socket_receives_ready_status_stopping_watchdog(manager: FakeManager) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.env_value})
    assert n.enabled
    assert n.ready("syncing every 300s")
    assert manager.receive() == "READY=1\nSTATUS=syncing every 300s"
    assert n.status("IPv4 203.0.113.7")
    assert manager.receive() == "STATUS=IPv4 203.0.113.7"
    assert n.watchdog()
    assert manager.receive() == "WATCHDOG=1"
    assert n.stopping()
    assert manager.receive() == "STOPPING=1"
    n.close()


def test_abstract_socket(abstract_manager: FakeManager) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": abstract_manager.env_value})
    assert n.ready()
    assert abstract_manager.receive() == "READY=1"
    assert n.watchdog()
    assert abstract_manager.receive() == "WATCHDOG=1"


def test_reloading_carries_a_monotonic_timestamp(manager: FakeManager) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.env_value})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading("reloading the configuration")
    fields = manager.receive().split("\n")
    assert fields[0] == "RELOADING=1"
    usec = int(fields[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert fields[2] == "STATUS=reloading the configuration"


def test_status_is_one_masked_bounded_line(manager: FakeManager) -> None:
    register("sdnotify-Secret-77a1")
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.env_value})
    n.status("failed:\nanswer was sdnotify-Secret-77a1\t" + "x" * 500)
    got = manager.receive()
    assert "\n" not in got
    assert "sdnotify-Secret-77a1" not in got
    assert got.startswith("STATUS=failed: answer was *** x")
    assert len(got) <= len("STATUS=") + sdnotify.MAX_STATUS


def test_without_notify_socket_everything_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.watchdog_interval is None
    assert n.ready("x") is False
    assert n.watchdog() is False
    assert n.stopping() is False


def test_unsupported_socket_forms_are_ignored() -> None:
    for value in ("vsock:2:1234", "relative/path", "@"):
        assert not Notifier.from_env({"NOTIFY_SOCKET": value}).enabled


def test_a_vanished_manager_costs_a_warning_not_an_exception(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
    assert n.ready() is False
    assert n.watchdog() is False
    warnings = [r for r in caplog.records if "cannot notify" in r.getMessage()]
    assert len(warnings) == 1


def test_unset_removes_the_variables_children_would_inherit(manager: FakeManager) -> None:
    env = {
        "NOTIFY_SOCKET": manager.env_value,
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    n = Notifier.from_env(env, unset=True)
    assert env == {"PATH": "/usr/bin"}
    assert n.watchdog_interval == 15.0
    assert n.watchdog()
    assert manager.receive() == "WATCHDOG=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_loop_pings_at_the_computed_interval(manager: FakeManager) -> None:
    env = {"NOTIFY_SOCKET": manager.env_value, "WATCHDOG_USEC": "200000"}  # ping every 0.1s
    n = Notifier.from_env(env)
    assert n.watchdog_interval == pytest.approx(0.1)

    async def scenario() -> None:
        task = asyncio.create_task(watchdog_loop(n, lambda: True))
        await asyncio.sleep(0.55)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    pings = manager.receive_all()
    assert all(text == "WATCHDOG=1" for _, text in pings)
    assert 4 <= len(pings) <= 7  # at 0, 0.1, … 0.5 s; a slow machine may miss the last


def test_a_blocked_event_loop_stops_the_pings(manager: FakeManager) -> None:
    """The point of the watchdog: the ping comes from the loop, so a hung loop goes silent."""
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.env_value, "WATCHDOG_USEC": "100000"})
    arrivals: list[float] = []

    async def scenario() -> None:
        task = asyncio.create_task(watchdog_loop(n, lambda: True))
        await asyncio.sleep(0.2)
        arrivals.extend(t for t, _ in manager.receive_all())
        time.sleep(0.6)  # the loop hangs: nothing may be sent meanwhile
        assert manager.receive_all() == []
        await asyncio.sleep(0.2)  # the loop runs again, and so do the pings
        task.cancel()

    asyncio.run(scenario())
    assert arrivals
    assert manager.receive_all()


def test_unhealthy_means_no_ping(manager: FakeManager, caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.env_value, "WATCHDOG_USEC": "100000"})
    healthy = {"now": True}

    async def scenario() -> None:
        task = asyncio.create_task(watchdog_loop(n, lambda: healthy["now"]))
        await asyncio.sleep(0.12)
        assert manager.receive_all()
        healthy["now"] = False
        await asyncio.sleep(0.3)
        assert manager.receive_all() == []
        task.cancel()

    asyncio.run(scenario())
    assert sum("not pinging" in r.getMessage() for r in caplog.records) == 1


def test_a_failing_health_check_counts_as_unhealthy(manager: FakeManager) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": manager.env_value, "WATCHDOG_USEC": "100000"})

    def broken() -> bool:
        raise RuntimeError("boom")

    async def scenario() -> None:
        task = asyncio.create_task(watchdog_loop(n, broken))
        await asyncio.sleep(0.25)
        task.cancel()

    asyncio.run(scenario())
    assert manager.receive_all() == []


@pytest.mark.parametrize(
    "env",
    [
        {},  # not under systemd
        {"WATCHDOG_USEC": "100000"},  # a watchdog but nobody to tell
        {"NOTIFY_SOCKET": "@ddnsagent-test-unused"},  # Type=notify without WatchdogSec=
    ],
)
def test_no_watchdog_means_no_timer(env: dict[str, str]) -> None:
    n = Notifier.from_env(env)

    async def scenario() -> None:
        await asyncio.wait_for(watchdog_loop(n, lambda: True), 0.5)  # returns at once

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 0.4
