"""The command line as a user meets it: exit codes, clear errors, never a traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import Dyndns2Server

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddnsagent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stdout + p.stderr


def test_check_config_on_the_example_flags_placeholders() -> None:
    # Issue 13: the starter reads its secrets from systemd credentials (cred:NAME), which
    # check-config explains outside the unit; the `# placeholder` values are reported as such.
    p = cli("check-config", "config.example.toml", env={"MYDNS_PASSWORD": ""})
    assert p.returncode == 0, p.stderr
    assert "configuration is valid" in p.stdout
    assert 'master_id = "mydns123456" is the starter\'s placeholder' in p.stdout
    assert "cred:mydns is read from systemd's $CREDENTIALS_DIRECTORY" in p.stdout


def test_check_config_error_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text('[detect]\nipv4 = ["interfce:ppp0"]\n')
    p = cli("check-config", str(bad))
    assert p.returncode == 2
    assert f"{bad}: detect.ipv4[0]: unknown source 'interfce:ppp0'" in p.stderr
    no_traceback(p)


def test_missing_config_file(tmp_path: Path) -> None:
    p = cli("status", "--config", str(tmp_path / "none.toml"))
    assert p.returncode == 2 and "ddnsagent init" in p.stderr
    no_traceback(p)


def test_usage_error_exit_2() -> None:
    p = cli("notify-now", "--bogus")
    assert p.returncode == 2
    no_traceback(p)


def test_init_writes_a_private_valid_starter(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "config.toml"
    p = cli("init", str(path))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == (ROOT / "config.example.toml").read_text()
    again = cli("init", str(path))
    assert again.returncode == 2 and "--force" in again.stderr
    assert cli("check-config", str(path)).returncode == 0


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n[detect]\nipv4 = []\n')
    p = cli("check-config", env={"DDNSAGENT_CONFIG": str(path)})
    assert p.returncode == 0 and str(path) in p.stdout


@pytest.fixture
def dyn_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Dyndns2Server({"me": "pw-123456"}, {"home.example.net": None}) as dyn:
        path = tmp_path / "c.toml"
        path.write_text(
            f'[agent]\nstate_dir = "{tmp_path}/state"\nretries = 1\n'
            '[detect]\nipv4 = []\naccept = "any"\n'
            f'[[provider]]\nname = "dd"\ntype = "dyndns2"\nserver = "{dyn.update_url}"\n'
            'hostnames = ["home.example.net"]\nusername = "me"\npassword_env = "DD_PW"\n'
        )
        path.chmod(0o600)
        yield dyn, path


def test_notify_now_with_given_address_and_json(dyn_config) -> None:  # type: ignore[no-untyped-def]
    dyn, path = dyn_config
    env = {"DD_PW": "pw-123456"}
    p = cli("notify-now", "--config", str(path), "--address", "203.0.113.9", "--json", env=env)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["targets"][0]["action"] == "sent"
    assert report["detected"]["ipv4"]["address"] == "203.0.113.9"
    assert dyn.record("home.example.net").ipv4 == "203.0.113.9"
    p = cli("notify-now", "--config", str(path), "--address", "203.0.113.9", env=env)
    assert p.returncode == 0 and "unchanged" in p.stdout
    assert len(dyn.requests) == 1
    status = cli("status", "--json", "--config", str(path))
    assert status.returncode == 0
    sent = json.loads(status.stdout)["targets"][0]["sent"]["ipv4"]
    assert sent["address"] == "203.0.113.9"


def test_bad_address_argument(dyn_config) -> None:  # type: ignore[no-untyped-def]
    _, path = dyn_config
    p = cli("notify-now", "--config", str(path), "--address", "not-an-ip")
    assert p.returncode == 2 and "'not-an-ip' is not an IP address" in p.stderr
    p = cli("notify-now", "--config", str(path), "--address", "224.0.0.1")
    assert p.returncode == 2 and "multicast" in p.stderr
    no_traceback(p)


def test_stopped_target_exit_3_and_reset(dyn_config) -> None:  # type: ignore[no-untyped-def]
    dyn, path = dyn_config
    env = {"DD_PW": "wrong"}
    p = cli("notify-now", "--config", str(path), "--address", "203.0.113.9", env=env)
    assert p.returncode == 3 and "badauth" in p.stdout and "ddnsagent reset dd" in p.stdout
    status = cli("status", "--config", str(path))
    assert status.returncode == 3 and "STOPPED" in status.stdout
    p = cli("reset", "dd", "--config", str(path))
    assert p.returncode == 0
    p = cli(
        "notify-now", "--config", str(path), "--address", "203.0.113.9", env={"DD_PW": "pw-123456"}
    )
    assert p.returncode == 0 and len(dyn.requests) == 2
    assert cli("reset", "nope", "--config", str(path)).returncode == 2


def test_dry_run_without_answers_prints_one_line_per_source(tmp_path: Path) -> None:
    """The quick start on a machine without Internet (sources here answer nothing)."""
    example = (ROOT / "config.example.toml").read_text()
    example = example.replace(
        'ipv4 = ["interface:ppp0", "web"]',
        'ipv4 = ["interface:ppp0", "web:http://127.0.0.1:1/", "web:http://127.0.0.2:1/"]',
    ).replace("[agent]", f'[agent]\nstate_dir = "{tmp_path}/state"')
    path = tmp_path / "c.toml"
    path.write_text(example)
    p = cli("notify-now", "--dry-run", "--config", str(path))
    no_traceback(p)
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert any("interface:ppp0: no interface named ppp0" in line for line in lines)
    assert any("127.0.0.1:1/: cannot connect" in line for line in lines)
    assert any("127.0.0.2:1/: cannot connect" in line for line in lines)
    assert "IPv4 address not found" in p.stdout
    assert "home [mydns] IPv4: no-address" in p.stdout
