"""Shared helpers for tests that run ddnsagent against the local provider emulators.

Everything here talks to loopback only. Configurations are written mode 0600 under `tmp_path`,
with `accept = "any"` (the fakes answer documentation addresses) and fast retries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes import Dyndns2Server, EchoServer, MyDNSServer

if TYPE_CHECKING:
    from ddnsagent.outcome import SyncReport

FIRST = "203.0.113.7"  # what the echo fixture answers at first
MYDNS_ID, MYDNS_PASSWORD = "mydns1", "mydns-Pw-5d1c9e"
DYN_USER, DYN_PASSWORD = "alice", "dyn-Pw-83fa20"
DYN_HOST = "home.example.org"
MYDNS_ENV, DYN_ENV = "DDNSAGENT_TEST_MYDNS_PW", "DDNSAGENT_TEST_DYN_PW"


def write_config(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    """Write `text` as a configuration file, mode 0600 (as an inline secret requires)."""
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def config_text(
    state_dir: Path,
    echo_url: str,
    providers: str,
    *,
    agent: str = "",
    lock_timeout: str = "10s",
    timeout: str = "5s",
) -> str:
    """A whole configuration: one web echo source (quorum 1), fast retries, `providers` appended;
    `agent` adds lines to [agent]."""
    return (
        "[agent]\n"
        f'state_dir = "{state_dir}"\n'
        'interval = "30s"\njitter = "0s"\nretries = 1\nretry_delay = "0s"\n'
        f'lock_timeout = "{lock_timeout}"\n'
        f"{agent}\n"
        "[detect]\n"
        f'ipv4 = ["web:{echo_url}"]\n'
        f'quorum = 1\naccept = "any"\ntimeout = "{timeout}"\n\n'
        f"{providers}"
    )


def mydns_provider(
    url: str,
    name: str = "home",
    secret: str = f'password_env = "{MYDNS_ENV}"',
    master_id: str = MYDNS_ID,
) -> str:
    return (
        f'[[provider]]\nname = "{name}"\ntype = "mydns"\nmaster_id = "{master_id}"\n'
        f'url_ipv4 = "{url}"\n{secret}\n\n'
    )


def dyndns2_provider(
    url: str,
    name: str = "dyn",
    secret: str = f'password_env = "{DYN_ENV}"',
    username: str = DYN_USER,
) -> str:
    return (
        f'[[provider]]\nname = "{name}"\ntype = "dyndns2"\nserver = "{url}"\n'
        f'hostnames = ["{DYN_HOST}"]\nusername = "{username}"\n{secret}\n\n'
    )


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a ddnsagent child: the test passwords, nothing that changes output."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JOURNAL_STREAM", "CREDENTIALS_DIRECTORY", "DDNSAGENT_CONFIG")
    }
    env.update({MYDNS_ENV: MYDNS_PASSWORD, DYN_ENV: DYN_PASSWORD, "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def sync(config: Path, **options: object) -> SyncReport:
    """One sync in this process, as `notify-now --local` runs it."""
    import asyncio

    from ddnsagent import config as config_mod
    from ddnsagent.sync import Agent, SyncOptions

    with pytest.MonkeyPatch.context() as mp:
        for name, value in child_env().items():
            mp.setenv(name, value)
        agent = Agent(config_mod.load(config))
        return asyncio.run(agent.sync(SyncOptions(**options)))  # type: ignore[arg-type]


def stop(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM; SIGKILL when it has not ended within `timeout` seconds (then reaped, 5 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def ddnsagent(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run `python -m ddnsagent ARGS…` to completion (bounded), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "ddnsagent", *map(str, args)],
        env=env if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` every 20 ms for at most `timeout` seconds; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer(FIRST + "\n") as server:
        yield server


@pytest.fixture
def mydns() -> Iterator[MyDNSServer]:
    with MyDNSServer({MYDNS_ID: MYDNS_PASSWORD}) as server:
        server.pretend_peer = FIRST  # MyDNS publishes the peer; make it the echoed address
        yield server


@pytest.fixture
def dyn() -> Iterator[Dyndns2Server]:
    with Dyndns2Server({DYN_USER: DYN_PASSWORD}, {DYN_HOST: None}) as server:
        yield server
