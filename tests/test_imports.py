"""The lean cold start (issue 15): each command, run in a fresh interpreter, loads only what it
needs. `--help`, `status`, `check-config`, and `hook ip-up` / `notify-now` answered by the
running daemon import neither asyncio, httpx, ssl, tenacity, apscheduler, nor dnspython's message,
query and zone machinery — with the seed's configuration (mydns + [relay] + a zonefile zone).
These tests check which modules are loaded, never how long it took.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HEAVY = (
    "asyncio",
    "httpx",
    "httpcore",
    "ssl",
    "tenacity",
    "apscheduler",
    "dns.message",
    "dns.query",
    "dns.asyncquery",
    "dns.zone",
    "dns.rdata",
    "dns.update",
    "lexicon",
    "apprise",
    "click",
    "rich",
    "ddnsagent.sync",
    "ddnsagent.zones.edit.editor",
)

# Runs the real command line in this interpreter, then prints what it loaded as the last line.
WRAPPER = """
import json, sys
from ddnsagent.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

ZONE = """$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. ( 2024010101 3600 600 86400 300 )
@ IN NS ns.example.net.
ns IN A 192.0.2.1
"""


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    p = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    last = json.loads(p.stderr.strip().splitlines()[-1])
    return last["code"], set(last["modules"]), p.stdout


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in HEAVY if m in modules)


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    """The seed's configuration: mydns, the relay watchdog, one zonefile zone."""
    (tmp_path / "db.example.net").write_text(ZONE)
    (tmp_path / "mail.log").write_text("")
    (tmp_path / "secret").write_text("seed-secret")
    (tmp_path / "secret").chmod(0o600)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f'control_socket = "{tmp_path / "control.sock"}"\n\n'
        '[detect]\nipv4 = ["web:http://127.0.0.1:9/"]\nipv6 = []\naccept = "any"\n'
        "insecure_http = true\n\n"
        '[[provider]]\nname = "home"\ntype = "mydns"\nmaster_id = "mydns123456"\n'
        f'password_file = "{tmp_path / "secret"}"\n\n'
        f'[relay]\nlog = "{tmp_path / "mail.log"}"\nhost = "auth.gate-on.net"\n\n'
        '[[zone]]\nname = "local"\ntype = "zonefile"\n'
        f'path = "{tmp_path / "db.example.net"}"\norigin = "example.net"\nnames = ["@"]\n'
        "check = []\n"
    )
    cfg.chmod(0o600)
    return cfg


@pytest.fixture
def daemon(seed: Path) -> Iterator[list[dict[str, object]]]:
    """Something answering on the seed's control socket as the daemon does (one JSON line per
    connection, see control.py); the requests it got."""
    path = seed.parent / "control.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.2)
    got: list[dict[str, object]] = []
    stop = threading.Event()
    report = {"reason": "command", "detected": {}, "targets": [], "changed": [], "exit_code": 0}

    def serve() -> None:
        for _ in range(3000):  # 10 minutes at most
            if stop.is_set():
                return
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while not data.endswith(b"\n") and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                got.append(json.loads(data))
                conn.sendall(json.dumps({"ok": True, "report": report}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield got
    stop.set()
    thread.join(5)
    server.close()


def test_help_loads_no_configuration_code() -> None:
    code, modules, out = run(["--help"])
    assert code == 0 and "notify-now" in out
    assert heavy(modules) == []
    assert "ddnsagent.config" not in modules and "tomllib" not in modules


@pytest.mark.parametrize("command", ["status", "check-config", "history"])
def test_reading_commands_load_no_sending_code(seed: Path, command: str) -> None:
    code, modules, out = run([command, "--config", str(seed)])
    assert code == 0, out
    assert heavy(modules) == []
    # the plugins' settings were read (the test would pass vacuously otherwise)
    assert {"ddnsagent.providers.mydns", "ddnsagent.zones.zonefile"} <= modules
    assert not any(m == "dns" or m.startswith("dns.") for m in modules)


def test_hook_answered_by_the_daemon_is_lean(seed: Path, daemon: list[dict[str, object]]) -> None:
    env = {"PPP_IFACE": "ppp0", "PPP_LOCAL": "203.0.113.77"}
    code, modules, out = run(["hook", "ip-up", "--config", str(seed)], env)
    assert code == 0 and "the daemon synced" in out
    assert daemon[-1]["addresses"] == {"4": "203.0.113.77"}
    assert heavy(modules) == []
    assert "ddnsagent.providers.mydns" not in modules  # the plugins are not even read
    assert "ddnsagent.zones.zonefile" not in modules


def test_notify_now_answered_by_the_daemon_is_lean(
    seed: Path, daemon: list[dict[str, object]]
) -> None:
    code, modules, _ = run(["notify-now", "--force", "--config", str(seed)])
    assert code == 0
    assert daemon[-1]["force"] is True
    assert heavy(modules) == []


def test_the_local_sync_does_load_the_sending_path(seed: Path) -> None:
    """The counterpart, so that the lists above cannot be empty by accident: without a daemon,
    notify-now syncs here and loads asyncio and httpx (the echo URL is refused at once)."""
    code, modules, _ = run(["notify-now", "--local", "--config", str(seed)])
    assert code != 0
    assert {"asyncio", "httpx", "ddnsagent.sync"} <= modules
    assert "rich" not in modules and "click" not in modules  # httpx's own CLI is never loaded


def test_reading_any_plugin_loads_no_sending_code() -> None:
    """config.py loads a plugin module (through the registries) to read its section: every
    provider and zone type, loaded together, brings no sending or applying code with it."""
    script = (
        "import json, sys\n"
        "from ddnsagent import providers\n"
        "from ddnsagent.zones import registry\n"
        "names = [providers.module(n).__name__ for n in providers.TYPES]\n"
        "names += [registry.module(n).__name__ for n in registry.TYPES]\n"
        "print(json.dumps({'loaded': names, 'modules': sorted(sys.modules)}))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(p.stdout)
    assert len(out["loaded"]) >= 10 and "ddnsagent.providers.lexicon" in out["loaded"]
    assert heavy(set(out["modules"])) == []
