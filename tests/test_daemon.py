"""`ddnsagent run` as a real process against the provider emulators, driven by signals.

Each daemon has an echo service as its only detection source (quorum 1), a MyDNS and a dyndns2
provider. A sync always asks the echo service first while holding the state lock, so "the sync
that began after echo request N has ended" is: echo saw request N+1, then the lock is free.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.store import StateLock
from tests.conftest import (
    DYN_ENV,
    DYN_HOST,
    DYN_USER,
    FIRST,
    child_env,
    config_text,
    ddnsagent,
    dyndns2_provider,
    mydns_provider,
    wait_until,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer, MyDNSServer

SECOND, THIRD = "203.0.113.8", "203.0.113.9"
STOP_WITHIN = 5.0  # seconds a SIGTERM may take


class DaemonProcess:
    """One `ddnsagent run`, stdout and stderr into `log`. `launcher`: how Python starts it
    (tests/test_time_limits.py starts it through a wrapper that adds a stuck backend)."""

    stop_within = STOP_WITHIN  # seconds a SIGTERM may take before the test says it was ignored
    launcher: tuple[str, ...] = ("-m", "ddnsagent")

    def __init__(self, config: Path, log: Path, env: dict[str, str]) -> None:
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *self.launcher, "run", "--config", str(config)],
                stdout=out,
                stderr=out,
                env=env,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        assert self.alive(), f"daemon died early:\n{self.log()}"
        self.proc.send_signal(sig)

    def stop(self) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the exit took."""
        started = time.monotonic()
        self.send(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=self.stop_within + 5)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"daemon ignored SIGTERM:\n{self.log()}") from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons that are ready for signals; every one is killed at the end."""
    started: list[DaemonProcess] = []

    def start(config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        d = DaemonProcess(config, tmp_path / f"daemon-{len(started)}.log", env or child_env())
        started.append(d)
        wait_until(lambda: "ddnsagent running" in d.log() or not d.alive(), "the daemon to start")
        assert d.alive(), f"daemon exited at start:\n{d.log()}"
        return d

    try:
        yield start
    finally:
        for d in started:
            d.kill()


def opened(d: DaemonProcess, path: Path) -> bool:
    """Whether the daemon has `path` open (Linux /proc)."""
    fds = Path(f"/proc/{d.proc.pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path) for fd in fds.iterdir())
    except OSError:
        return False


def synced(echo: EchoServer, before: int, state_dir: Path) -> None:
    """Wait for a sync that asked `echo` after its request number `before` to end."""
    wait_until(lambda: len(echo.requests) > before, "the daemon to ask the echo service")
    lock = StateLock(state_dir, 10)
    lock.acquire()  # the sync holds it from before detection until its state is saved
    lock.release()


def sigusr1_sync(d: DaemonProcess, echo: EchoServer, state_dir: Path) -> None:
    before = len(echo.requests)
    d.send(signal.SIGUSR1)
    synced(echo, before, state_dir)


def move(echo: EchoServer, mydns: MyDNSServer, address: str) -> None:
    """The WAN address changes: the echo service and MyDNS (which reads the peer) see it."""
    echo.answer = address + "\n"
    mydns.pretend_peer = address


def sent_to_dyn(dyn: Dyndns2Server) -> list[str | None]:
    return [r.query.get("myip") for r in dyn.requests]


def sent_to_mydns(mydns: MyDNSServer) -> list[str]:
    assert len(mydns.requests) == len(mydns.notifications), "a MyDNS login failed"
    return [n.address for n in mydns.notifications]


def state_of(state_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    return data


def both_providers(mydns: MyDNSServer, dyn: Dyndns2Server) -> str:
    return mydns_provider(mydns.notify_url) + dyndns2_provider(dyn.update_url)


def test_updates_once_per_change_and_not_again_after_a_restart(
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, both_providers(mydns, dyn))
    )
    d = start_daemon(config)
    wait_until(lambda: mydns.requests and dyn.requests, "the first updates")
    synced(echo, 0, state_dir)
    assert sent_to_mydns(mydns) == [FIRST]
    assert sent_to_dyn(dyn) == [FIRST]

    move(echo, mydns, SECOND)
    sigusr1_sync(d, echo, state_dir)
    assert sent_to_mydns(mydns) == [FIRST, SECOND]
    assert sent_to_dyn(dyn) == [FIRST, SECOND]
    assert dyn.record(DYN_HOST).ipv4 == SECOND

    sigusr1_sync(d, echo, state_dir)  # same address: nothing to send
    assert sent_to_mydns(mydns) == [FIRST, SECOND]
    assert sent_to_dyn(dyn) == [FIRST, SECOND]

    code, took = d.stop()
    assert (code, took < STOP_WITHIN) == (0, True), d.log()
    assert "stopping" in d.log()
    assert "Traceback" not in d.log()

    before = len(echo.requests)
    again = start_daemon(config)
    synced(echo, before, state_dir)
    assert sent_to_mydns(mydns) == [FIRST, SECOND]
    assert sent_to_dyn(dyn) == [FIRST, SECOND]
    assert again.stop()[0] == 0
    assert mydns.violations == [] and dyn.violations == []


def test_sighup_keeps_the_running_config_when_the_new_file_is_broken(
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state_dir = tmp_path / "state"
    good = config_text(state_dir, echo.echo_url, both_providers(mydns, dyn))
    config = write_config(tmp_path, good)
    d = start_daemon(config)
    wait_until(lambda: mydns.requests and dyn.requests, "the first updates")
    synced(echo, 0, state_dir)

    write_config(tmp_path, good.replace("quorum = 1", "quorum = = 1"))
    d.send(signal.SIGHUP)
    wait_until(lambda: d.log().count("reload refused") == 1, "the refused reload in the log")
    refused = [line for line in d.log().splitlines() if "reload refused" in line]
    assert str(config) in refused[0] and "TOML syntax error" in refused[0]
    move(echo, mydns, SECOND)
    sigusr1_sync(d, echo, state_dir)  # the old configuration still works
    assert sent_to_mydns(mydns) == [FIRST, SECOND]
    assert sent_to_dyn(dyn) == [FIRST, SECOND]

    write_config(tmp_path, good.replace('jitter = "0s"', 'jitter = "0s"\nintervall = "1m"'))
    d.send(signal.SIGHUP)
    wait_until(lambda: d.log().count("reload refused") == 2, "the second refused reload")
    refused = [line for line in d.log().splitlines() if "reload refused" in line]
    assert "agent.intervall: is not a known key" in refused[1]
    assert "did you mean 'interval'?" in refused[1]
    sigusr1_sync(d, echo, state_dir)  # still the old source; the address is unchanged
    assert len(mydns.requests) == len(dyn.requests) == 2

    with EchoServer(THIRD + "\n") as echo2:
        write_config(tmp_path, good.replace(echo.echo_url, echo2.echo_url))
        mydns.pretend_peer = THIRD
        asked_old = len(echo.requests)
        d.send(signal.SIGHUP)
        synced(echo2, 0, state_dir)
        assert "configuration reloaded" in d.log()
        assert len(echo.requests) == asked_old  # the new source replaced the old one
        assert sent_to_mydns(mydns) == [FIRST, SECOND, THIRD]
        assert sent_to_dyn(dyn) == [FIRST, SECOND, THIRD]
        assert d.stop()[0] == 0
    assert d.log().count("reload refused") == 2
    assert "Traceback" not in d.log()


def test_sigterm_ends_a_sync_that_waits_for_the_state_lock(
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state_dir = tmp_path / "state"
    text = config_text(state_dir, echo.echo_url, both_providers(mydns, dyn), lock_timeout="60s")
    config = write_config(tmp_path, text)
    held = StateLock(state_dir, 1)
    held.acquire()
    try:
        d = start_daemon(config)
        wait_until(lambda: opened(d, state_dir / "lock"), "the daemon to wait for the lock")
        time.sleep(0.2)
        assert echo.requests == []  # its first sync is waiting for the lock
        code, took = d.stop()
    finally:
        held.release()
    assert code == 0
    assert took < STOP_WITHIN, f"SIGTERM took {took:.1f}s:\n{d.log()}"
    assert "Traceback" not in d.log()
    assert mydns.requests == [] and dyn.requests == []


def test_badauth_stops_the_target_until_reset(
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, both_providers(mydns, dyn))
    )
    env = child_env(**{DYN_ENV: "not-the-Password"})
    d = start_daemon(config, env)
    wait_until(lambda: mydns.requests and dyn.requests, "the first updates")
    synced(echo, 0, state_dir)
    assert "dyn: STOPPED: badauth" in d.log()

    move(echo, mydns, SECOND)
    sigusr1_sync(d, echo, state_dir)
    assert len(dyn.requests) == 1  # stopped: not even a changed address is sent
    assert sent_to_mydns(mydns) == [FIRST, SECOND]  # the other provider goes on

    status = ddnsagent("status", "--config", config)
    assert status.returncode == 3, status.stdout + status.stderr
    assert "STOPPED" in status.stdout and "ddnsagent reset dyn" in status.stdout

    assert d.stop()[0] == 0
    before = len(echo.requests)
    d = start_daemon(config, env)
    synced(echo, before, state_dir)
    assert len(dyn.requests) == 1  # still stopped after a restart

    dyn.users[DYN_USER] = "not-the-Password"  # the user fixed the account, then resets:
    reset = ddnsagent("reset", "dyn", "--config", config)
    assert reset.returncode == 0, reset.stderr
    sigusr1_sync(d, echo, state_dir)
    assert sent_to_dyn(dyn) == [FIRST, SECOND]
    assert dyn.record(DYN_HOST).ipv4 == SECOND
    assert ddnsagent("status", "--config", config).returncode == 0
    assert d.stop()[0] == 0


def test_911_means_quiet_for_half_an_hour_even_across_restarts(
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, both_providers(mydns, dyn))
    )
    dyn.answer_once = "911"
    d = start_daemon(config)
    wait_until(lambda: mydns.requests and dyn.requests, "the first updates")
    synced(echo, 0, state_dir)
    retry_after = state_of(state_dir)["targets"]["dyn"]["backoff"]["4"]["retry_after"]
    assert retry_after >= time.time() + 1790

    sigusr1_sync(d, echo, state_dir)
    move(echo, mydns, SECOND)
    sigusr1_sync(d, echo, state_dir)
    assert len(dyn.requests) == 1  # waiting, even for a changed address
    assert sent_to_mydns(mydns) == [FIRST, SECOND]

    status = ddnsagent("status", "--config", config)
    assert status.returncode == 1 and "911" in status.stdout, status.stdout + status.stderr
    assert d.stop()[0] == 0

    before = len(echo.requests)
    d = start_daemon(config)
    synced(echo, before, state_dir)
    assert len(dyn.requests) == 1
    assert state_of(state_dir)["targets"]["dyn"]["backoff"]["4"]["retry_after"] == retry_after
    assert d.stop()[0] == 0


def test_the_queue_flush_after_a_change_waits_apart_from_the_syncs(
    tmp_path: Path,
    echo: EchoServer,
    dyn: Dyndns2Server,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    """With [relay], a changed address flushes the mail queue after `settle`. The wait is the
    flush's own task (the scheduled sync job used to hold it, so the scheduler skipped its next
    run); a trigger during it is served, and a newer change starts the wait again: one flush,
    after the last change."""
    state_dir, flushes = tmp_path / "state", tmp_path / "flushes"
    flush = tmp_path / "flush"
    flush.write_text(f'#!/bin/sh\necho flushed >> "{flushes}"\n')
    flush.chmod(0o755)
    maillog = tmp_path / "mail.log"
    maillog.write_text("")
    relay = (
        f'[relay]\nlog = "{maillog}"\nhost = "relay.example.net"\nflush = ["{flush}"]\n'
        'settle = "3s"\n'
    )
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, dyndns2_provider(dyn.update_url) + relay)
    )
    d = start_daemon(config)
    synced(echo, 0, state_dir)  # the first address is no change: nothing to flush

    echo.answer = SECOND + "\n"
    sigusr1_sync(d, echo, state_dir)
    assert sent_to_dyn(dyn) == [FIRST, SECOND]
    echo.answer = THIRD + "\n"
    sigusr1_sync(d, echo, state_dir)  # within SECOND's settle: served, not skipped
    assert sent_to_dyn(dyn) == [FIRST, SECOND, THIRD]
    assert not flushes.exists()
    wait_until(lambda: flushes.exists(), "the flush after THIRD")
    time.sleep(1.0)  # a second flush (SECOND's wait not cut short) would land by now
    assert flushes.read_text().splitlines() == ["flushed"]
    assert "maximum number of running instances" not in d.log()
    assert d.stop()[0] == 0
