"""Fixtures for the relay world: `lab` (namespaces), `relay` (MyDNS + relay in isp) and
`home_postfix` (a real Postfix in home). Each is torn down even when the test fails; the lab's
teardown stops whatever is still running in its namespaces before deleting them.

They skip, with the reason, when the machine cannot build the world: not root, or iproute2,
nftables, Postfix or aiosmtpd missing (`.ci/run` installs them all).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import stop
from tests.e2e import netlab, postfix_home
from tests.e2e.netlab import HOME_ADDRESS, Lab
from tests.e2e.postfix_home import HomePostfix
from tests.e2e.relay_isp import RelayISP

ROOT = Path(__file__).resolve().parents[2]
MASTER_ID, PASSWORD = "mydns-home", "relay-Pw-71c0d2"
RELAY_LIMIT = 3


def missing_requirements() -> list[str]:
    reasons = netlab.missing_requirements()
    if not reasons:
        reasons += postfix_home.missing_requirements()
    if importlib.util.find_spec("aiosmtpd") is None:
        reasons.append("needs aiosmtpd (pip install aiosmtpd)")
    return reasons


@pytest.fixture
def e2e_workdir() -> Iterator[Path]:
    """A fresh directory under /tmp, mode 0755: the postfix user must reach the queue and log
    inside it (pytest's tmp_path is 0700), and Unix socket paths in it must stay short."""
    reasons = missing_requirements()
    if reasons:
        pytest.skip("; ".join(reasons))
    path = Path(tempfile.mkdtemp(prefix="ddnsa-e2e-"))
    try:
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lab(e2e_workdir: Path) -> Iterator[Lab]:
    with Lab() as built:
        yield built


@pytest.fixture
def relay(lab: Lab, e2e_workdir: Path) -> Iterator[RelayISP]:
    workdir = e2e_workdir / "isp"
    workdir.mkdir()
    with RelayISP(lab.isp, workdir, accounts={MASTER_ID: PASSWORD}, limit=RELAY_LIMIT) as r:
        yield r


@pytest.fixture
def home_postfix(lab: Lab, e2e_workdir: Path) -> Iterator[HomePostfix]:
    workdir = e2e_workdir / "home"
    workdir.mkdir(mode=0o755)
    with HomePostfix(lab.home, workdir) as postfix:
        yield postfix


@contextlib.contextmanager
def running_daemon(lab: Lab, relay: RelayISP, workdir: Path, config: Path) -> Iterator[None]:
    """`ddnsagent run` in home with `config`, its output in workdir/daemon.log: entered once it
    has told MyDNS of HOME_ADDRESS and its log follower has started; SIGTERM on leaving (a
    kill after 15 s), and its log printed."""
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
        yield
    finally:
        stop(proc, 15)
        log.close()
        print(f"--- daemon log ---\n{(workdir / 'daemon.log').read_text()}")
