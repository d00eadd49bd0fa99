"""Fixtures for the relay world: `lab` (namespaces), `relay` (MyDNS + relay in isp) and
`home_postfix` (a real Postfix in home). Each is torn down even when the test fails; the lab's
teardown stops whatever is still running in its namespaces before deleting them.

They skip, with the reason, when the machine cannot build the world: not root, or iproute2,
nftables, Postfix or aiosmtpd missing (`.ci/run` installs them all).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import netlab, postfix_home
from tests.e2e.netlab import Lab
from tests.e2e.postfix_home import HomePostfix
from tests.e2e.relay_isp import RelayISP

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
