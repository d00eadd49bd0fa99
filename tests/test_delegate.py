"""`notify-now` hands its sync to the running daemon: the same output and exit code as the local
path, without asyncio or httpx in the client; the local path when no daemon answers or with
--local. Real daemons (`ddnsagent run`) against the dyndns2 fake and an echo service.

Which path ran is read from `python -X importtime`: the local path imports asyncio (the sync is
asynchronous), the delegating client never does.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ddnsagent import control, ctlclient
from tests.conftest import (
    DYN_ENV,
    child_env,
    config_text,
    dyndns2_provider,
    wait_until,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer
from tests.test_daemon import DaemonProcess, synced

SECOND = "203.0.113.8"
PREFIX = [sys.executable, "-X", "importtime", "-m", "ddnsagent", "notify-now", "--config"]


class Run:
    """One `notify-now` run: exit code, output, and the modules it imported."""

    def __init__(self, done: subprocess.CompletedProcess[str], took: float) -> None:
        self.code = done.returncode
        self.out = done.stdout
        lines = done.stderr.splitlines()
        self.err = "\n".join(line for line in lines if not line.startswith("import time:"))
        self.modules = {
            line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")
        }
        self.took = took

    @property
    def delegated(self) -> bool:
        return "asyncio" not in self.modules and "httpx" not in self.modules


def notify(config: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    started = time.monotonic()
    done = subprocess.run(
        [*PREFIX, str(config), *args],
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(done, time.monotonic() - started)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
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


def setup(tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server) -> tuple[Path, Path, Path]:
    """The configuration, its state directory and control socket."""
    state_dir, sock = tmp_path / "state", tmp_path / "run" / "control.sock"
    text = config_text(
        state_dir,
        echo.echo_url,
        dyndns2_provider(dyn.update_url),
        agent=f'control_socket = "{sock}"',
    )
    return write_config(tmp_path, text), state_dir, sock


def up(
    start_daemon: Callable[..., DaemonProcess],
    config: Path,
    echo: EchoServer,
    state_dir: Path,
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """A daemon that has done its first sync and listens on its control socket."""
    d = start_daemon(config, env)
    synced(echo, 0, state_dir)
    return d


def same_shape(a: Run, b: Run) -> None:
    assert (a.code, a.out, a.err) == (b.code, b.out, b.err)


def test_daemon_up_does_the_sync_with_the_local_output_and_exit_codes(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start_daemon: Callable[..., DaemonProcess]
) -> None:
    config, state_dir, _ = setup(tmp_path, echo, dyn)
    up(start_daemon, config, echo, state_dir)
    assert len(dyn.requests) == 1

    # unchanged
    by_daemon, local = notify(config), notify(config, "--local")
    assert by_daemon.delegated and not local.delegated
    assert by_daemon.code == 0 and "unchanged" in by_daemon.out
    same_shape(by_daemon, local)
    assert len(dyn.requests) == 1

    # sent (forced), text and JSON
    by_daemon, local = notify(config, "--force"), notify(config, "--force", "--local")
    assert by_daemon.delegated and not local.delegated
    assert by_daemon.code == 0 and "sent" in by_daemon.out
    same_shape(by_daemon, local)
    assert len(dyn.requests) == 3
    by_daemon = notify(config, "--force", "--json")
    local = notify(config, "--force", "--json", "--local")
    assert by_daemon.delegated and not local.delegated
    assert by_daemon.code == local.code == 0
    assert json.loads(by_daemon.out) == json.loads(local.out)
    assert json.loads(by_daemon.out)["targets"][0]["action"] == "sent"
    assert by_daemon.out == local.out


def test_dry_run_through_the_daemon_changes_nothing(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start_daemon: Callable[..., DaemonProcess]
) -> None:
    config, state_dir, _ = setup(tmp_path, echo, dyn)
    up(start_daemon, config, echo, state_dir)
    before = (state_dir / "state.json").read_bytes()
    args = ("--dry-run", "--force", "--address", SECOND)
    by_daemon, local = notify(config, *args), notify(config, *args, "--local")
    assert by_daemon.delegated and not local.delegated
    assert by_daemon.code == 0 and "dry-run" in by_daemon.out and SECOND in by_daemon.out
    same_shape(by_daemon, local)
    j_daemon, j_local = notify(config, *args, "--json"), notify(config, *args, "--json", "--local")
    assert j_daemon.delegated and j_daemon.out == j_local.out and j_daemon.code == 0
    assert len(dyn.requests) == 1
    assert (state_dir / "state.json").read_bytes() == before


def test_stopped_target_exit_code_through_the_daemon(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start_daemon: Callable[..., DaemonProcess]
) -> None:
    config, state_dir, _ = setup(tmp_path, echo, dyn)
    env = child_env(**{DYN_ENV: "not-the-password"})
    up(start_daemon, config, echo, state_dir, env)
    by_daemon, local = notify(config, env=env), notify(config, "--local", env=env)
    assert by_daemon.delegated and not local.delegated
    assert by_daemon.code == 3 and "stopped" in by_daemon.out
    same_shape(by_daemon, local)
    j_daemon = notify(config, "--json", env=env)
    j_local = notify(config, "--json", "--local", env=env)
    assert j_daemon.code == 3 and j_daemon.out == j_local.out


def test_address_refused_by_the_accept_policy_as_locally(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start_daemon: Callable[..., DaemonProcess]
) -> None:
    config, state_dir, sock = setup(tmp_path, echo, dyn)
    up(start_daemon, config, echo, state_dir)
    by_daemon = notify(config, "--address", "0.0.0.0")
    local = notify(config, "--address", "0.0.0.0", "--local")
    assert by_daemon.code == 2 and "refused" in by_daemon.err
    same_shape(by_daemon, local)
    # the daemon checks what it is asked like every control request
    answer = ctlclient.ask(sock, {"cmd": "sync", "addresses": {"4": "0.0.0.0"}}, 10)
    assert answer is not None and answer["ok"] is False
    assert "refused by [detect] accept" in answer["error"]
    answer = ctlclient.ask(sock, {"cmd": "sync", "dry_run": "yes"}, 10)
    assert answer == {
        "ok": False,
        "error": "bad request: 'dry_run' must be true or false, not 'yes'",
    }
    assert len(dyn.requests) == 1


def test_no_daemon_or_a_stale_socket_syncs_here(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    config, _, sock = setup(tmp_path, echo, dyn)
    alone = notify(config)
    assert not alone.delegated and alone.code == 0 and "sent" in alone.out
    sock.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # a socket file nobody listens on: a killed daemon's
    stale.close()
    again = notify(config, "--force")
    assert not again.delegated and again.code == 0 and "sent" in again.out
    assert len(dyn.requests) == 2
    assert ctlclient.ask(sock, {"cmd": "sync"}, 1) is None


def test_a_busy_daemon_answers_when_its_sync_is_done_or_the_client_says_it_timed_out(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start_daemon: Callable[..., DaemonProcess]
) -> None:
    config, state_dir, _ = setup(tmp_path, echo, dyn)
    d = up(start_daemon, config, echo, state_dir)

    def busy() -> None:
        before = len(echo.requests)
        echo.delay = 2.0
        d.send(__import__("signal").SIGUSR1)
        wait_until(lambda: len(echo.requests) > before, "the daemon's sync to ask the echo")
        echo.delay = 0.0  # the request in flight stays slow; the next ones are quick

    busy()
    slow = notify(config, "--timeout", "0.5")
    assert slow.delegated and slow.code == 1 and slow.out == ""
    assert "no result within 0.5s" in slow.err
    synced(echo, len(echo.requests) - 1, state_dir)

    busy()
    waited = notify(config, "--force")
    assert waited.delegated and waited.code == 0 and "sent" in waited.out
    assert waited.took > 0.5  # it waited for the running sync, then the daemon did its own
    assert "Traceback" not in d.log()


def test_parse_request_knows_dry_run() -> None:
    asked = control.parse_request({"cmd": "sync", "dry_run": True}, "any", [4])
    assert asked == control.SyncRequest("hook", False, None, True)


def test_a_configuration_edited_since_the_daemon_loaded_it_is_checked_here(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start_daemon: Callable[..., DaemonProcess]
) -> None:
    """A typo added after the daemon started is reported (exit 2, the key named), not hidden
    behind a sync the daemon does with the version it loaded; nothing is sent."""
    config, state_dir, _ = setup(tmp_path, echo, dyn)
    up(start_daemon, config, echo, state_dir)
    sent = len(dyn.requests)
    text = config.read_text()
    assert "[[provider]]" in text  # the daemon loaded the providers; the client reads no further
    config.write_text(text.replace("[[provider]]", '[[provider]]\nhostnamez = ["x"]', 1))
    run = notify(config, "--force")
    assert run.code == 2 and "hostnamez" in run.err and "changed since the daemon" in run.err
    # reading the file here no longer loads httpx (issue 15), so `delegated` cannot tell; the
    # message above names the typo, which only this process's own reading can have found
    assert len(dyn.requests) == sent
