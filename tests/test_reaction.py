"""The daemon learns of address changes from the kernel and syncs at once, once per change."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config

ROOT = Path(__file__).resolve().parent.parent

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create a network namespace",
)


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, "ip", *args], check=True, timeout=10)

    def popen(self, argv: list[str], **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", self.name, *argv], text=True, cwd=ROOT, **kw
        )


@pytest.fixture
def ns() -> Iterator[Namespace]:
    name = f"ddnsa-react-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        space = Namespace(name)
        space.ip("link", "set", "lo", "up")
        space.ip("link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
        space.ip("link", "set", "wan0p", "up")
        space.ip("link", "set", "wan0", "up")
        yield space
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def updates(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = updates(path)
        if len(got) >= count:
            return got
        time.sleep(0.02)
    raise AssertionError(f"expected {count} updates within {timeout}s, got {updates(path)}")


@needs_root
def test_one_sync_per_settled_change(ns: Namespace, tmp_path: Path) -> None:
    record = tmp_path / "updates.jsonl"
    server = ns.popen(
        [sys.executable, "-m", "tests.netns_dyndns2", str(record)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    daemon = None
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        ns.ip("addr", "add", "203.0.113.5/24", "dev", "wan0")
        config = write_config(
            tmp_path,
            f'[agent]\nstate_dir = "{tmp_path}/state"\ninterval = "1h"\njitter = "0s"\n'
            f'control_socket = "{tmp_path}/control.sock"\n'
            '[detect]\nipv4 = ["interface:wan0"]\naccept = "any"\n'
            '[[provider]]\nname = "dd"\ntype = "dyndns2"\n'
            f'server = "http://127.0.0.1:{port}/nic/update"\n'
            'hostnames = ["home.example.net"]\nusername = "me"\npassword = "pw-netns-1"\n',
        )
        log = (tmp_path / "daemon.log").open("w")
        daemon = ns.popen(
            [sys.executable, "-m", "ddnsagent", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        assert [u["myip"] for u in wait_for(record, 1)] == ["203.0.113.5"]
        time.sleep(0.5)

        # Replace the address, as a PPPoE reconnect does: exactly one update, soon.
        changed = time.time()
        ns.ip("addr", "del", "203.0.113.5/24", "dev", "wan0")
        ns.ip("addr", "add", "203.0.113.6/24", "dev", "wan0")
        got = wait_for(record, 2)
        reaction = float(got[1]["time"]) - changed  # type: ignore[arg-type]
        print(f"reaction to an address change: {reaction * 1000:.0f} ms")
        assert got[1]["myip"] == "203.0.113.6"
        time.sleep(1.0)
        assert len(updates(record)) == 2

        # A burst of changes that ends where it began: no update at all.
        ns.ip("addr", "add", "203.0.113.9/24", "dev", "wan0")
        ns.ip("addr", "del", "203.0.113.9/24", "dev", "wan0")
        time.sleep(1.0)
        assert len(updates(record)) == 2

        # Removing the address sends nothing; a new one is sent once.
        ns.ip("addr", "del", "203.0.113.6/24", "dev", "wan0")
        time.sleep(1.0)
        assert len(updates(record)) == 2
        ns.ip("addr", "add", "203.0.113.7/24", "dev", "wan0")
        assert wait_for(record, 3)[2]["myip"] == "203.0.113.7"
        time.sleep(1.0)
        assert len(updates(record)) == 3
        assert "watching wan0 for address changes" in (tmp_path / "daemon.log").read_text()
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        server.stdin.close()  # type: ignore[union-attr]
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def test_without_netlink_the_daemon_says_so_once_and_polls(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from ddnsagent import config
    from ddnsagent.daemon import Daemon
    from ddnsagent.detect import netlink

    async def refuse(self: object) -> None:
        raise netlink.NetlinkUnavailable("netlink is not available here")

    monkeypatch.setattr(netlink.AddressWatcher, "start", refuse)
    path = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}"\n[detect]\nipv4 = ["interface:ppp0"]\n',
    )
    cfg = config.load(path)

    async def scenario() -> Daemon:
        daemon = Daemon(path, cfg)
        await daemon._watch_interfaces()
        daemon._watched = set()
        await daemon._watch_interfaces()
        return daemon

    with caplog.at_level(logging.WARNING):
        daemon = asyncio.run(scenario())
    said = [r for r in caplog.records if "cannot watch ppp0" in r.getMessage()]
    assert len(said) == 1 and "checking every interval" in said[0].getMessage()
    assert daemon.watcher is None
