"""The incident, replayed with the real daemon: Postfix at home relays through the ISP's relay,
the relay refuses (rate limit) or drops (timeout) our address, and ddnsagent — with nobody
watching — reconnects for a new address, notifies MyDNS, flushes the queue, and every message
is delivered exactly once.

The reconnect command moves home's address (as a PPPoE reconnect does); the daemon notices the
refusal in Postfix's own log, confirms it in Postfix's queue (`postqueue -j`, and for the timeout
its own connection attempt, which the ISP drops too), and sees the new address through netlink.

A local user who writes Postfix-looking lines into the log (through syslog, as `logger` does)
reconnects nothing: the queue holds no such mail.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from ddnsagent.relay.logparse import EventKind, parse_queue_json
from ddnsagent.store import Relay, Store
from tests.e2e.conftest import MASTER_ID, PASSWORD, RELAY_LIMIT, running_daemon
from tests.e2e.netlab import HOME_ADDRESS, HOME_IFNAME, ISP_ADDRESS, PREFIX_LEN, Lab
from tests.e2e.postfix_home import HomePostfix
from tests.e2e.relay_isp import RelayISP

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
NEW_ADDRESS = "198.51.100.8"
LOCAL_USER = 54321  # a throwaway uid: the local user who forges log lines


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
queue = ["postqueue", "-c", "{postfix.config_dir}", "-j"]
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
    with running_daemon(lab, relay, workdir, write_config(workdir, relay, home_postfix)):
        yield workdir


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


# -- a local user's forged lines ---------------------------------------------------------------


class Syslog:
    """A small syslogd: what local programs send to its socket (`logger -u PATH`) is appended to
    `log` the way rsyslog writes mail.log — `Mon DD HH:MM:SS host TAG: MESSAGE` — so the
    followed log holds whatever any local user said, under whatever tag it chose."""

    def __init__(self, socket_path: Path, log: Path) -> None:
        self.path = socket_path
        self.log = log
        self.received = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(socket_path))
        os.chmod(socket_path, 0o666)  # like /dev/log: every local user may write
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="syslog", daemon=True)

    def __enter__(self) -> Syslog:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(8192)
            except TimeoutError:
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            text = re.sub(r"^<\d{1,3}>", "", text)  # the priority
            text = re.sub(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ", "", text)  # logger's stamp
            stamp = time.strftime("%b %d %H:%M:%S")
            with self.log.open("a") as f:
                f.write(f"{stamp} home {text.rstrip()}\n")
            self.received += 1


def as_local_user(argv: list[str], groups: list[int] | None = None) -> subprocess.CompletedProcess:
    """Run `argv` as uid/gid LOCAL_USER with no supplementary group but `groups`, and with
    no_new_privs set, as systemd's NoNewPrivileges= does: set-uid/gid bits give nothing."""

    def drop() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")

    return subprocess.run(
        argv,
        user=LOCAL_USER,
        group=LOCAL_USER,
        extra_groups=groups or [],
        preexec_fn=drop,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def forge(sock: Path, tag: str, message: str) -> None:
    """Issue 11, attack 3, as a local user: `logger -t 'postfix/smtp[4242]' '…'`."""
    done = as_local_user(["logger", "-u", str(sock), "-t", tag, message])
    assert done.returncode == 0, done.stderr


def daemon_log_lines(workdir: Path, text: str) -> list[str]:
    return [line for line in (workdir / "daemon.log").read_text().splitlines() if text in line]


@pytest.mark.skipif(shutil.which("logger") is None, reason="needs logger (Debian bsdutils)")
def test_forged_lines_do_nothing_and_a_real_refusal_still_recovers(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix, daemon: Path, e2e_workdir: Path
) -> None:
    timed_out = (
        "{qid}: to=<bob@remote.example>, relay=none, delay=30, delays=0/0/30/0, dsn=4.4.1, "
        f"status=deferred (connect to {ISP_ADDRESS}[{ISP_ADDRESS}]:587: Connection timed "
        "out)"
    )
    relay_field = f"{ISP_ADDRESS}[{ISP_ADDRESS}]"
    too_much = (
        f"4C1D2E3F40: to=<bob@remote.example>, relay={relay_field}:587, delay=1, "
        f"delays=0/0/0.5/0.5, dsn=4.0.0, status=deferred (host {relay_field} said: 450 Error: "
        f"too much mail from {HOME_ADDRESS} (in reply to MAIL FROM command))"
    )
    with Syslog(e2e_workdir / "log.sock", home_postfix.maillog) as syslog:
        for qid in ("3A1B2C3D4E", "3A1B2C3D4F", "3A1B2C3D50"):
            forge(syslog.path, "postfix/smtp[4242]", timed_out.format(qid=qid))
        forge(syslog.path, "postfix/smtp[4243]", too_much)
        deadline = time.monotonic() + 30
        while not daemon_log_lines(daemon, "not confirmed"):
            assert time.monotonic() < deadline, (daemon / "daemon.log").read_text()
            time.sleep(0.2)
        assert syslog.received == 4
    # The lines reached the log the daemon follows, exactly as Postfix's own would.
    forged = [line for line in home_postfix.maillog_lines() if "postfix/smtp[424" in line]
    assert len(forged) == 4 and all(line.startswith(time.strftime("%b")) for line in forged)
    time.sleep(3)
    assert reconnects(daemon) == 0
    assert relay.notified() == [HOME_ADDRESS]
    assert Store(daemon / "state").load().relay.attempts == []
    (warning,) = daemon_log_lines(daemon, "not confirmed")
    assert "postfix/smtp[4242]: 3A1B2C3D4" in warning and "Connection timed out" in warning

    # The real thing, right after: Postfix's queue holds the refused mail.
    sent = home_postfix.submit_many(RELAY_LIMIT + 3)
    delivered = relay.wait_deliveries(RELAY_LIMIT + 3, timeout=120)
    home_postfix.wait_queue(lambda q: not q, "empty queue", timeout=30)
    state = recovery(daemon)
    assert Counter(d.message_id for d in delivered) == Counter(sent), "each delivered once"
    assert Counter(d.client for d in delivered) == {HOME_ADDRESS: RELAY_LIMIT, NEW_ADDRESS: 3}
    assert relay.notified() == [HOME_ADDRESS, NEW_ADDRESS]
    assert reconnects(daemon) == 1
    assert state.last_reconnect is not None and state.last_reconnect.result == "ok"
    assert daemon_log_lines(daemon, "the queue confirms it")
    assert len(daemon_log_lines(daemon, "not confirmed")) == 1


def test_postqueue_json_works_for_a_postdrop_member_under_no_new_privs(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix
) -> None:
    """What ddnsagent.service gives the daemon (SupplementaryGroups=… postdrop, NoNewPrivileges=)
    is enough to list the queue; without the group, postqueue's setgid bit does not help."""
    relay.set_limit(0)  # every MAIL FROM gets "450 Error: too much mail from <ip>"
    home_postfix.submit()
    home_postfix.wait_queue(
        lambda q: any(r.get("delay_reason") for m in q for r in m["recipients"]),
        "a deferred recipient with its reason",
        timeout=30,
    )
    argv = ["postqueue", "-c", str(home_postfix.config_dir), "-j"]
    member = as_local_user(argv, [grp.getgrnam("postdrop").gr_gid])
    assert member.returncode == 0, member.stderr
    failures = [
        f for line in member.stdout.splitlines() for f in parse_queue_json(line, ISP_ADDRESS)
    ]
    assert [(f.kind, f.limited_ip) for f in failures] == [(EventKind.RATE_LIMITED, HOME_ADDRESS)]
    outsider = as_local_user(argv)
    assert outsider.returncode != 0 and "Permission denied" in outsider.stderr
    with contextlib.suppress(Exception):
        relay.set_limit(RELAY_LIMIT)
