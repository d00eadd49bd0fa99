"""The incident, replayed with the real daemon: Postfix at home relays through the ISP's relay,
the relay refuses (rate limit) or drops (timeout) our address, and ddnsagent — with nobody
watching — reconnects for a new address, notifies MyDNS, flushes the queue, and every message
is delivered exactly once.

The reconnect command moves home's address (as a PPPoE reconnect does); the daemon notices the
refusal in Postfix's own log, and the new address through netlink.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddnsagent.store import Relay, Store
from tests.e2e.conftest import MASTER_ID, PASSWORD, RELAY_LIMIT
from tests.e2e.netlab import HOME_ADDRESS, HOME_IFNAME, ISP_ADDRESS, PREFIX_LEN, Lab
from tests.e2e.postfix_home import HomePostfix
from tests.e2e.relay_isp import RelayISP

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
NEW_ADDRESS = "198.51.100.8"


def write_reconnect(workdir: Path) -> Path:
    script = workdir / "ppp-reconnect"
    script.write_text(
        "#!/bin/sh\n"
        f"echo run >> {workdir}/reconnects\n"
        f"ip addr del {HOME_ADDRESS}/{PREFIX_LEN} dev {HOME_IFNAME}\n"
        f"ip addr add {NEW_ADDRESS}/{PREFIX_LEN} dev {HOME_IFNAME}\n"
        f"ss -K src {HOME_ADDRESS} >/dev/null 2>&1 || true\n"
    )
    script.chmod(0o755)
    return script


def write_config(workdir: Path, relay: RelayISP, postfix: HomePostfix) -> Path:
    path = workdir / "ddnsagent.toml"
    path.write_text(
        f"""
[agent]
state_dir = "{workdir}/state"
control_socket = "{workdir}/control.sock"
interval = "1h"
jitter = "0s"
retries = 1
[detect]
ipv4 = ["interface:{HOME_IFNAME}"]
accept = "any"
[[provider]]
name = "home"
type = "mydns"
master_id = "{MASTER_ID}"
password = "{PASSWORD}"
url_ipv4 = "{relay.notify_url}"
insecure_http = true
[relay]
log = "{postfix.maillog}"
host = "[{ISP_ADDRESS}]:587"
threshold = 2
window = "15m"
flush = ["postqueue", "-c", "{postfix.config_dir}", "-f"]
settle = "1s"
[reconnect]
command = ["{write_reconnect(workdir)}"]
timeout = "30s"
cooldown = "30m"
max_per_day = 4
wait_for_address = "30s"
"""
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def daemon(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix, e2e_workdir: Path
) -> Iterator[Path]:
    workdir = e2e_workdir / "agent"
    workdir.mkdir()
    config = write_config(workdir, relay, home_postfix)
    log = (workdir / "daemon.log").open("w")
    proc = lab.home.popen(
        [sys.executable, "-m", "ddnsagent", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while relay.notified() != [HOME_ADDRESS]:
            assert proc.poll() is None, (workdir / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon never notified MyDNS"
            time.sleep(0.1)
        time.sleep(2.5)  # the log follower has started (at the end of the log)
        yield workdir
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print(f"--- daemon log ---\n{(workdir / 'daemon.log').read_text()}")


def recovery(workdir: Path, timeout: float = 90) -> Relay:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        relay_state = Store(workdir / "state").load().relay
        if relay_state.last_recovery is not None:
            return relay_state
        time.sleep(0.2)
    raise AssertionError("no recovery recorded")


def reconnects(workdir: Path) -> int:
    path = workdir / "reconnects"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_rate_limit_recovers_by_itself(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix, daemon: Path
) -> None:
    sent = home_postfix.submit_many(RELAY_LIMIT + 3)
    first_refusal = home_postfix.wait_log("too much mail from 198.51.100.7", count=1, timeout=30)
    refused_at = time.time()
    delivered = relay.wait_deliveries(RELAY_LIMIT + 3, timeout=90)
    home_postfix.wait_queue(lambda q: not q, "empty queue", timeout=30)
    state = recovery(daemon)
    print(f"first 450 line: {first_refusal[0].strip()}")
    print(
        f"recovered {state.last_recovery.seconds:.1f}s after the 450 "  # type: ignore[union-attr]
        f"(test clock: {time.time() - refused_at:.1f}s until the queue was empty)"
    )
    assert Counter(d.message_id for d in delivered) == Counter(sent), "each delivered once"
    assert Counter(d.client for d in delivered) == {HOME_ADDRESS: RELAY_LIMIT, NEW_ADDRESS: 3}
    assert relay.notified() == [HOME_ADDRESS, NEW_ADDRESS]
    assert reconnects(daemon) == 1
    last = state.last_reconnect
    assert last is not None and last.result == "ok" and last.new == NEW_ADDRESS
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddnsagent",
            "status",
            "--json",
            "--config",
            str(daemon / "ddnsagent.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    shown = json.loads(status.stdout)["relay"]
    assert shown["last_recovery"]["seconds"] >= 0 and shown["reconnects_24h"] == 1


def test_dropped_address_recovers_through_the_timeout_path(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix, daemon: Path
) -> None:
    relay.set_limit(10)
    lab.drop_from(HOME_ADDRESS)
    sent = home_postfix.submit_many(5)
    home_postfix.wait_log("Connection timed out", count=2, timeout=30)
    delivered = relay.wait_deliveries(5, timeout=120)
    home_postfix.wait_queue(lambda q: not q, "empty queue", timeout=30)
    state = recovery(daemon)
    print(f"recovered {state.last_recovery.seconds:.1f}s after the first timeout")  # type: ignore[union-attr]
    assert Counter(d.message_id for d in delivered) == Counter(sent)
    assert {d.client for d in delivered} == {NEW_ADDRESS}
    assert reconnects(daemon) == 1
    assert relay.notified() == [HOME_ADDRESS, NEW_ADDRESS]
