"""The DNSBL check against a real blocklist server: Debian's `rbldnsd` on 127.0.0.1 (a high
port), serving the zones of the default lists with test addresses, as the lists' own servers
answer them (return codes from the lists' documentation, see ddnsagent/dnsbl/lists.py):

  zen.spamhaus.org  203.0.113.5 → 127.0.0.4 (XBL), 198.51.100.7 → 127.0.0.11 (PBL),
                    198.51.100.9 → 127.255.255.254 (the "public resolver" refusal),
                    2001:db8:0:5::/64 → 127.0.0.2 (ip6tset)
  bl.spamcop.net    203.0.113.5, 203.0.113.6 → 127.0.0.2
  anything else     NXDOMAIN (203.0.113.9 and 192.0.2.1 are the unlisted ones)

The resolver of [dnsbl] is rbldnsd itself (it answers as a resolver would forward). A UDP
socket that never answers stands for a dead resolver. The reconnect is tested as in
tests/relay/: a `command:` detection source reading a file that the reconnect command rewrites.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import config, dnsclient
from ddnsagent.dnsbl import check as dnsbl_check
from ddnsagent.dnsbl.lists import KNOWN, DnsblConfig
from ddnsagent.dnsbl.watch import DnsblWatch
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import child_env, ddnsagent, stop, wait_until, write_config

RBLDNSD = shutil.which("rbldnsd", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
pytestmark = pytest.mark.skipif(
    RBLDNSD is None,
    reason="rbldnsd is not installed (Debian package rbldnsd: apt-get install rbldnsd; .ci/run "
    "installs it)",
)

LISTED, SECOND_LISTED, POLICY, REFUSING, CLEAN = (
    "203.0.113.5",
    "203.0.113.6",
    "198.51.100.7",
    "198.51.100.9",
    "203.0.113.9",
)
ZONES = '["zen.spamhaus.org", "bl.spamcop.net"]'


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def rbldnsd() -> Iterator[tuple[str, int]]:
    """rbldnsd in the foreground (-n) on 127.0.0.1:PORT; its data in a directory its user can
    read (rbldnsd refuses to run as root: as root it drops to the package's `rbldns` user)."""
    assert RBLDNSD is not None
    data = Path(tempfile.mkdtemp(prefix="ddnsagent-rbldnsd-"))
    data.chmod(0o755)
    files = {
        "zen": f":127.0.0.2:Listed\n{LISTED} :127.0.0.4:XBL\n{POLICY} :127.0.0.11:PBL\n"
        f"{REFUSING} :127.255.255.254:open resolver\n",
        "zen6": ":127.0.0.2:Listed\n2001:db8:0:5\n",
        "spamcop": f":127.0.0.2:Blocked - see https://www.spamcop.net/bl.shtml?$\n{LISTED}\n"
        f"{SECOND_LISTED}\n",
    }
    for name, text in files.items():
        (data / name).write_text(text)
        (data / name).chmod(0o644)
    port = free_udp_port()
    argv = [RBLDNSD, "-n", "-b", f"127.0.0.1/{port}", "-w", str(data)]
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("rbldns")
            argv += ["-u", "rbldns"]
        except KeyError:
            argv += ["-u", "nobody"]
    argv += [
        "zen.spamhaus.org:ip4set:zen",
        "zen.spamhaus.org:ip6tset:zen6",
        "bl.spamcop.net:ip4set:spamcop",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        server = ("127.0.0.1", port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if dnsclient.a_records(server, "5.113.0.203.bl.spamcop.net", 0.5)[1]:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"rbldnsd did not start: {out}")
            time.sleep(0.1)
        yield server
    finally:
        stop(proc, 5)
        if proc.stdout:
            proc.stdout.close()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def silent() -> Iterator[tuple[str, int]]:
    """A UDP socket that receives questions and never answers: a resolver that is gone."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield ("127.0.0.1", int(s.getsockname()[1]))


def settings(server: tuple[str, int], **kw: Any) -> DnsblConfig:
    lists = (KNOWN["zen.spamhaus.org"], KNOWN["bl.spamcop.net"])
    return DnsblConfig(lists=lists, resolver=server, timeout=kw.pop("timeout", 2.0), **kw)


def check(server: tuple[str, int], address: str) -> dnsbl_check.Report:
    return dnsbl_check.check(settings(server), ipaddress.ip_address(address))


def test_listed_on_both_lists(rbldnsd: tuple[str, int]) -> None:
    r = check(rbldnsd, LISTED)
    assert r.verdict == "listed"
    by_zone = {f.zone: f for f in r.findings}
    assert by_zone["zen.spamhaus.org"].codes == ("127.0.0.4",)
    assert by_zone["bl.spamcop.net"].codes == ("127.0.0.2",)
    ((level, text),) = dnsbl_check.lines(r)
    assert level == "warning" and "XBL" in text
    assert "https://check.spamhaus.org/results/?query=203.0.113.5" in text


def test_policy_only_is_reported_as_expected(rbldnsd: tuple[str, int]) -> None:
    r = check(rbldnsd, POLICY)
    assert r.verdict == "policy"
    ((level, text),) = dnsbl_check.lines(r)
    assert level == "info" and "expected for a dynamic address" in text and "127.0.0.11" in text


def test_unlisted_is_nothing(rbldnsd: tuple[str, int]) -> None:
    r = check(rbldnsd, CLEAN)
    assert r.verdict == "clean" and dnsbl_check.lines(r) == []
    assert [f.verdict for f in r.findings] == ["clean", "clean"]


def test_the_public_resolver_code_is_a_refusal_with_the_fix(rbldnsd: tuple[str, int]) -> None:
    r = check(rbldnsd, REFUSING)
    assert r.verdict == "refused"
    ((level, text),) = dnsbl_check.lines(r)
    assert level == "warning" and "not a listing" in text and "[dnsbl] resolver" in text


def test_ipv6_is_asked_only_of_lists_that_answer_for_it(rbldnsd: tuple[str, int]) -> None:
    r = check(rbldnsd, "2001:db8:0:5::25")
    assert r.asked == ["zen.spamhaus.org"]  # SpamCop lists IPv4 only
    assert r.verdict == "listed" and r.findings[0].codes == ("127.0.0.2",)
    assert check(rbldnsd, "2001:db8:0:6::25").verdict == "clean"


def test_a_dead_resolver_is_one_warning_within_the_timeout(silent: tuple[str, int]) -> None:
    started = time.monotonic()
    r = dnsbl_check.check(settings(silent, timeout=0.5), ipaddress.ip_address(LISTED))
    assert time.monotonic() - started < 3  # the lists are asked in parallel
    assert r.verdict == "error"
    ((level, text),) = dnsbl_check.lines(r)
    assert level == "warning" and text.count("within 0.5s") == 2


# -- the daemon's side: the check after a change, and the reconnect ------------------------------


class Heard:
    """What the daemon would hear (notifications)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []
        self.reconnects: list[Any] = []

    def dnsbl_found(self, address: str, verdict: str, text: str) -> None:
        self.found.append((address, verdict))

    def reconnected(self, outcome: Any) -> None:
        self.reconnects.append(outcome)


def world(tmp_path: Path, resolver: tuple[str, int], first: str, after: str, dnsbl: str) -> Path:
    """A configuration whose address is `first` until the reconnect command makes it `after`."""
    wan = tmp_path / "wan"
    wan.write_text(first + "\n")
    detector = tmp_path / "whatismyip"
    detector.write_text(f"#!/bin/sh\ncat {wan}\n")
    detector.chmod(0o755)
    command = tmp_path / "ppp-reconnect"
    command.write_text(f"#!/bin/sh\necho {after} > {wan}\necho run >> {tmp_path}/runs\n")
    command.chmod(0o755)
    return write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\ninterval = "30s"\njitter = "0s"\n'
        f'[detect]\nipv4 = ["command:{detector}"]\naccept = "any"\n'
        f'[reconnect]\ncommand = ["{command}"]\ntimeout = "10s"\nwait_for_address = "10s"\n'
        'cooldown = "30m"\nmax_per_day = 4\n'
        f'[dnsbl]\nzones = {ZONES}\nresolver = "{resolver[0]}:{resolver[1]}"\ntimeout = "1s"\n'
        f"{dnsbl}",
    )


def runs(tmp_path: Path) -> int:
    f = tmp_path / "runs"
    return len(f.read_text().splitlines()) if f.exists() else 0


def scenario(path: Path, heard: Heard, caplog: pytest.LogCaptureFixture) -> Store:
    """One sync as the daemon runs it, the check its change starts, and any it leads to; the
    log from INFO up in `caplog`."""
    cfg = config.load(path)

    async def go() -> None:
        agent = Agent(cfg)
        watch = DnsblWatch(agent, heard)
        tasks: list[asyncio.Future[None]] = []

        def observe(report: Any) -> None:
            task = watch.observe(report)
            if task is not None:
                tasks.append(task)

        agent.on_report.append(observe)
        await agent.sync(SyncOptions())
        for _ in range(10):  # the reconnect's own sync may add one (skipped: just checked)
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            await asyncio.wait_for(asyncio.gather(*pending), 60)

    with caplog.at_level(logging.INFO):
        asyncio.run(go())
    return Store.of(cfg.agent)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_listed_with_reconnect_gets_a_new_address_and_checks_it(
    tmp_path: Path, rbldnsd: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    heard = Heard()
    path = world(tmp_path, rbldnsd, LISTED, CLEAN, "reconnect = true\n")
    store = scenario(path, heard, caplog)
    assert runs(tmp_path) == 1
    state = store.load()
    assert state.detected[4].address == CLEAN
    assert state.dnsbl.checks[4].address == CLEAN and state.dnsbl.checks[4].verdict == "clean"
    assert state.dnsbl.acted_on == [LISTED]
    assert heard.found == [(LISTED, "listed")] and len(heard.reconnects) == 1
    assert heard.reconnects[0].new == CLEAN
    listed = [w for w in warnings(caplog) if "LISTED" in w]
    assert len(listed) == 1 and LISTED in listed[0]
    assert any(f"reconnected: new address {CLEAN}" in w for w in warnings(caplog))
    assert any(f"{CLEAN}: not listed" in r.getMessage() for r in caplog.records)


def test_listed_without_reconnect_warns_and_does_nothing_else(
    tmp_path: Path, rbldnsd: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    heard = Heard()
    path = world(tmp_path, rbldnsd, LISTED, CLEAN, "")
    store = scenario(path, heard, caplog)
    assert runs(tmp_path) == 0
    kept = store.load().dnsbl.checks[4]
    assert kept.verdict == "listed" and kept.address == LISTED
    assert kept.action is not None and "reconnect = false" in kept.action
    assert heard.found == [(LISTED, "listed")] and heard.reconnects == []
    # status shows it, in words and in JSON
    p = ddnsagent("status", "--config", path)
    assert f"dnsbl: {LISTED} checked" in p.stdout and "LISTED" in p.stdout, p.stdout + p.stderr
    p = ddnsagent("status", "--json", "--config", path)
    out = json.loads(p.stdout)["dnsbl"]
    assert out["checks"]["ipv4"]["verdict"] == "listed" and out["reconnect"] is False


def test_a_listed_new_address_is_not_reconnected_away_from_again(
    tmp_path: Path, rbldnsd: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Never loops: the reconnect brings another listed address; one reconnect only, and the
    daily check of that address does not reconnect either."""
    heard = Heard()
    path = world(tmp_path, rbldnsd, LISTED, SECOND_LISTED, "reconnect = true\n")
    store = scenario(path, heard, caplog)
    assert runs(tmp_path) == 1
    kept = store.load().dnsbl.checks[4]
    assert kept.address == SECOND_LISTED and kept.verdict == "listed"
    assert kept.action is not None and "no second reconnect" in kept.action
    assert store.load().dnsbl.acted_on == [LISTED, SECOND_LISTED]

    async def daily() -> None:
        watch = DnsblWatch(Agent(config.load(path)), heard)
        await watch.check(SECOND_LISTED, "daily", force=True)

    asyncio.run(daily())
    assert runs(tmp_path) == 1
    assert len(heard.reconnects) == 1


def test_policy_only_and_unlisted_lead_to_nothing(
    tmp_path: Path, rbldnsd: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    heard = Heard()
    path = world(tmp_path, rbldnsd, POLICY, CLEAN, "reconnect = true\n")
    store = scenario(path, heard, caplog)
    assert runs(tmp_path) == 0 and heard.found == [] and heard.reconnects == []
    assert store.load().dnsbl.checks[4].verdict == "policy"
    assert not [w for w in warnings(caplog) if "DNSBL" in w or "LISTED" in w]
    assert any("expected for a dynamic address" in r.getMessage() for r in caplog.records)
    other = tmp_path / "clean"
    other.mkdir()
    caplog.clear()
    path = world(other, rbldnsd, CLEAN, LISTED, "reconnect = true\n")
    store = scenario(path, heard, caplog)
    assert runs(other) == 0 and heard.found == []
    assert store.load().dnsbl.checks[4].verdict == "clean"
    assert warnings(caplog) == []


def test_a_dns_timeout_is_one_warning_and_no_action(
    tmp_path: Path, silent: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    heard = Heard()
    path = world(tmp_path, silent, LISTED, CLEAN, "reconnect = true\n")
    store = scenario(path, heard, caplog)
    assert runs(tmp_path) == 0 and heard.reconnects == [] and heard.found == []
    assert store.load().dnsbl.checks[4].verdict == "error"
    dnsbl_warnings = [w for w in warnings(caplog) if "DNSBL" in w]
    assert len(dnsbl_warnings) == 1 and "incomplete" in dnsbl_warnings[0]


def test_the_command_checks_on_demand(tmp_path: Path, rbldnsd: tuple[str, int]) -> None:
    path = world(tmp_path, rbldnsd, LISTED, CLEAN, "")
    p = ddnsagent("dnsbl", "--config", path, LISTED)
    assert p.returncode == 3 and "LISTED" in p.stdout and "XBL" in p.stdout, p.stdout + p.stderr
    p = ddnsagent("dnsbl", "--config", path, POLICY)
    assert p.returncode == 0 and "policy" in p.stdout
    p = ddnsagent("dnsbl", "--json", "--config", path, CLEAN)
    assert p.returncode == 0 and json.loads(p.stdout)[CLEAN]["verdict"] == "clean"
    p = ddnsagent("dnsbl", "--config", path)
    assert p.returncode == 2 and "no address detected yet" in p.stderr
    p = ddnsagent("dnsbl", "--config", path, "not-an-ip")
    assert p.returncode == 2 and "not an IP address" in p.stderr and "Traceback" not in p.stderr


def test_the_daemon_checks_the_first_address_and_reconnects_once(
    tmp_path: Path, rbldnsd: tuple[str, int]
) -> None:
    """`ddnsagent run`: the first sync's address is listed; one reconnect, the new one clean."""
    path = world(tmp_path, rbldnsd, LISTED, CLEAN, "reconnect = true\n")
    log = tmp_path / "daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddnsagent", "run", "--config", str(path)],
            stdout=out,
            stderr=out,
            env=child_env(),
        )
    try:
        state = tmp_path / "state" / "state.json"

        def checked_clean() -> bool:
            if not state.exists():
                return False
            data = json.loads(state.read_text())
            return data.get("dnsbl", {}).get("checks", {}).get("4", {}).get("address") == CLEAN

        wait_until(checked_clean, "the check of the new address", timeout=40)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    text = log.read_text()
    assert runs(tmp_path) == 1, text
    assert text.count("is LISTED on") == 1, text
    assert f"reconnected: new address {CLEAN}" in text


def test_a_reconnect_the_cooldown_refuses_is_said_and_not_counted(
    tmp_path: Path, rbldnsd: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """The reconnect's cooldown applies: a listing within it reconnects nothing, says what
    happens next, and leaves the address to the next daily check."""
    heard = Heard()
    path = world(tmp_path, rbldnsd, LISTED, CLEAN, "reconnect = true\n")
    with Store.of(config.load(path).agent).edit() as state:
        state.relay.attempts = [time.time() - 60]  # a reconnect a minute ago: cooldown 30m
    store = scenario(path, heard, caplog)
    assert runs(tmp_path) == 0
    state = store.load()
    kept = state.dnsbl.checks[4]
    assert kept.address == LISTED and kept.verdict == "listed"
    assert kept.action is not None and "cooldown" in kept.action
    assert "next daily check" in kept.action
    assert state.dnsbl.acted_on == []
    assert len(heard.reconnects) == 1 and heard.reconnects[0].done is False
