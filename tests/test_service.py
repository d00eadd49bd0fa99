"""The daemon as systemd and the operator see it: sd_notify messages on a NOTIFY_SOCKET the
test owns, the Prometheus endpoint scraped and parsed, and a notification through apprise to a
local json:// receiver — all from one real `ddnsagent run` process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    DYN_HOST,
    FIRST,
    child_env,
    config_text,
    dyndns2_provider,
    wait_until,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer
from tests.test_notify import JsonReceiver

parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client not installed")
pytest.importorskip("apprise", reason="apprise (the notify extra) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock, path
    sock.close()


def messages(sock: socket.socket, seen: list[str]) -> list[str]:
    while True:
        try:
            seen.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return seen


def test_notify_socket_metrics_and_notifications(
    tmp_path: Path,
    echo: EchoServer,
    dyn: Dyndns2Server,
    notify_socket: tuple[socket.socket, Path],
) -> None:
    sock, sock_path = notify_socket
    port = free_port()
    with JsonReceiver() as receiver:
        config = write_config(
            tmp_path,
            config_text(tmp_path / "state", echo.echo_url, dyndns2_provider(dyn.update_url))
            + f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
            + f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/hook"]\n'
            + 'events = ["address"]\n',
        )
        env = child_env(
            NOTIFY_SOCKET=str(sock_path),
            WATCHDOG_USEC="400000",
            NO_PROXY="*",
            CONTROL_SOCKET="",
        )
        env["RUNTIME_DIRECTORY"] = str(tmp_path / "run")
        log = (tmp_path / "daemon.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddnsagent", "run", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        seen: list[str] = []
        try:
            wait_until(lambda: dyn.record(DYN_HOST).ipv4 == FIRST, "the first update", 15)
            wait_until(
                lambda: any("WATCHDOG=1" in m for m in messages(sock, seen)), "a watchdog ping"
            )
            joined = "\n".join(seen)
            assert "READY=1" in joined
            assert f"STATUS=IPv4 {FIRST}; last sync: ok" in joined

            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in parser.text_string_to_metric_families(scraped.text)}
            updates = {
                (s.labels["provider"], s.labels["outcome"]): s.value
                for s in families["ddnsagent_updates"].samples
                if s.name == "ddnsagent_updates_total"
            }
            assert updates[("dyn", "sent")] == 1
            info = families["ddnsagent_address_info"].samples[0]
            assert info.labels == {"family": "ipv4", "address": FIRST}

            echo.answer = "203.0.113.8\n"
            proc.send_signal(signal.SIGUSR1)
            wait_until(lambda: receiver.messages(), "the address notification", 15)
            message = receiver.messages()[0]
            assert "203.0.113.8" in message["title"] + message["message"]

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
            assert any("STOPPING=1" in m for m in messages(sock, seen))
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
            print((tmp_path / "daemon.log").read_text())
