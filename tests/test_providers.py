"""mydns and dyndns2 against local servers that enforce the protocols strictly."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from ddnsagent import config
from ddnsagent.outcome import SyncReport
from ddnsagent.providers import mydns as mydns_provider
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.fakes import HUGE_BODY, Dyndns2Server, MyDNSServer

PASSWORD = "s3cret-Pa55word"
ADDR = ipaddress.ip_address("203.0.113.7")
HOSTS = ("home.example.net", "mail.example.net")


def make_config(tmp_path: Path, providers: str, *, timeout: str = "2s") -> config.Config:
    text = f"""
[agent]
state_dir = "{tmp_path / "state"}"
retries = 2
retry_delay = "0s"
[detect]
ipv4 = ["web:http://127.0.0.1:9/"]
ipv6 = ["web:http://[::1]:9/"]
accept = "any"
timeout = "{timeout}"
{providers}
"""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return config.load(path)


def mydns_table(url4: str, url6: str = "http://[::1]:9/login.html", ipv6: bool = False) -> str:
    return f"""
[[provider]]
name = "home"
type = "mydns"
master_id = "mydns123456"
password = "{PASSWORD}"
url_ipv4 = "{url4}"
url_ipv6 = "{url6}"
ipv6 = {str(ipv6).lower()}
"""


def dyndns2_table(server: str, hostnames: tuple[str, ...] = HOSTS) -> str:
    names = ", ".join(f'"{h}"' for h in hostnames)
    return f"""
[[provider]]
name = "dd"
type = "dyndns2"
server = "{server}"
hostnames = [{names}]
username = "me"
password = "{PASSWORD}"
"""


def sync(cfg: config.Config, force: bool = False, **addresses: str) -> SyncReport:
    given = (
        {4: ADDR}
        if not addresses
        else {int(k[-1]): ipaddress.ip_address(v) for k, v in addresses.items()}
    )
    return asyncio.run(Agent(cfg).sync(SyncOptions(force=force, addresses=given)))


def actions(report: SyncReport) -> list[tuple[str, int, str]]:
    return [(t.name, t.family, t.action) for t in report.targets]


@pytest.fixture
def mydns() -> Iterator[MyDNSServer]:
    with MyDNSServer({"mydns123456": PASSWORD}) as server:
        # MyDNS records the connection's address and the agent checks it against the address
        # it meant (issue 12): play the detected route's address.
        server.pretend_peer = str(ADDR)
        yield server


@pytest.fixture
def dyn() -> Iterator[Dyndns2Server]:
    with Dyndns2Server({"me": PASSWORD}, {h: "198.51.100.1" for h in HOSTS}) as server:
        yield server


# -- mydns -------------------------------------------------------------------------------------


def test_mydns_notifies_once_and_not_again(tmp_path: Path, mydns: MyDNSServer) -> None:
    cfg = make_config(tmp_path, mydns_table(mydns.notify_url))
    report = sync(cfg)
    assert actions(report) == [("home", 4, "sent")]
    assert mydns.notify_count("mydns123456") == 1
    assert mydns.address_of("mydns123456", 4) == str(ADDR)  # learnt from the connection
    assert f"MyDNS recorded {ADDR}" in report.targets[0].message
    assert mydns.violations == []
    assert actions(sync(cfg)) == [("home", 4, "unchanged")]
    assert mydns.notify_count("mydns123456") == 1
    assert actions(sync(cfg, force=True)) == [("home", 4, "sent")]
    assert mydns.notify_count("mydns123456") == 2


def test_mydns_ipv6_leaves_over_ipv6(tmp_path: Path) -> None:
    with MyDNSServer({"mydns123456": PASSWORD}, host="::1") as six:
        cfg = make_config(tmp_path, mydns_table("http://127.0.0.1:9/", six.notify_url, True))
        report = sync(cfg, ipv4="203.0.113.7", ipv6="::1")
        assert ("home", 6, "sent") in actions(report)
        assert six.address_of("mydns123456", 6) == "::1"
        assert six.requests[0].client_host == "::1"


def test_mydns_ipv4_request_never_uses_ipv6(tmp_path: Path) -> None:
    """An IPv4 notification pointed at an IPv6-only server must fail, not go out over IPv6."""
    with MyDNSServer({"mydns123456": PASSWORD}, host="::1") as six:
        cfg = make_config(tmp_path, mydns_table(six.notify_url))
        report = sync(cfg)
        assert actions(report) == [("home", 4, "failed")]
        assert six.requests == []


@pytest.mark.parametrize("knob", ["wrong-password-200", "wrong-password-401", "notify-fails"])
def test_mydns_login_failures_stop_the_target(
    tmp_path: Path, mydns: MyDNSServer, knob: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 12: `login_status = 0` stops only after LOGIN_ANSWERS answers in a row; 401 at once.
    monkeypatch.setattr(mydns_provider, "LOGIN_PAUSE", 0.0)
    if knob == "wrong-password-200":
        mydns.accounts["mydns123456"] = "other"
    elif knob == "wrong-password-401":
        mydns.accounts["mydns123456"] = "other"
        mydns.bad_login_status = 401
    else:
        mydns.notify_fails = True
    cfg = make_config(tmp_path, mydns_table(mydns.notify_url))
    report = sync(cfg)
    assert actions(report) == [("home", 4, "stopped")]
    assert report.exit_code == 3
    assert "reset home" in (report.targets[0].fix or "")
    asked = 1 if knob == "wrong-password-401" else mydns_provider.LOGIN_ANSWERS
    assert len(mydns.requests) == asked
    assert actions(sync(cfg, force=True)) == [("home", 4, "stopped")]
    assert len(mydns.requests) == asked  # a stopped target gets no request, even when forced


# -- dyndns2 -----------------------------------------------------------------------------------


def test_dyndns2_one_request_for_all_hosts(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "sent")]
    (request,) = dyn.requests
    assert request.query["hostname"] == ",".join(HOSTS)
    assert request.query["myip"] == "203.0.113.7"
    assert request.header(
        "user-agent",
    ).startswith("ddnsagent/")  # type: ignore[union-attr]
    assert (request.user, request.password) == ("me", PASSWORD)
    assert dyn.violations == []
    assert [dyn.record(h).ipv4 for h in HOSTS] == ["203.0.113.7"] * 2
    assert actions(sync(cfg)) == [("dd", 4, "unchanged")]
    assert len(dyn.requests) == 1  # no nochg is ever provoked without a reason


def test_dyndns2_address_change_sends_again(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url))
    sync(cfg)
    report = sync(cfg, ipv4="203.0.113.8")
    assert actions(report) == [("dd", 4, "sent")]
    assert "changed from 203.0.113.7" in report.targets[0].message
    assert [dyn.record(h).ipv4 for h in HOSTS] == ["203.0.113.8"] * 2


def test_dyndns2_keepalive(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url) + 'keepalive = "1d"\n')
    sync(cfg)
    with Store.of(cfg.agent).edit() as state:
        sent = state.targets["dd"].sent[4]
        state.targets["dd"].sent[4] = dataclasses.replace(sent, time=sent.time - 86401)
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "sent")]
    assert "keepalive" in report.targets[0].message
    assert len(dyn.requests) == 2


FATAL_CODES = [
    "badauth",
    "!donator",
    "notfqdn",
    "nohost",
    "numhost",
    "abuse",
    "badagent",
    "!yours",
    "!active",
]


@pytest.mark.parametrize("code", FATAL_CODES)
def test_dyndns2_fatal_answers_stop_and_persist(
    tmp_path: Path, dyn: Dyndns2Server, code: str
) -> None:
    dyn.answer_each = code
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "stopped")]
    assert code in report.targets[0].message
    assert report.exit_code == 3
    # A new process (new Agent, state from disk) sends nothing, even forced or on a new address.
    assert actions(sync(cfg, force=True, ipv4="203.0.113.9")) == [("dd", 4, "stopped")]
    assert len(dyn.requests) == 1


def test_dyndns2_real_fatal_conditions(tmp_path: Path, dyn: Dyndns2Server) -> None:
    """Not knobs: the server's own rules produce nohost and badauth."""
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url, ("other.example.net",)))
    assert actions(sync(cfg)) == [("dd", 4, "stopped")]
    dyn.users["me"] = "changed"
    cfg2 = make_config(tmp_path / "b", dyndns2_table(dyn.update_url))
    report = sync(cfg2)
    assert actions(report) == [("dd", 4, "stopped")] and "badauth" in report.targets[0].message


def test_dyndns2_stop_lifted_by_config_change(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url, ("other.example.net",)))
    assert actions(sync(cfg)) == [("dd", 4, "stopped")]
    fixed = make_config(tmp_path, dyndns2_table(dyn.update_url))
    assert actions(sync(fixed)) == [("dd", 4, "sent")]


@pytest.mark.parametrize("code", ["911", "dnserr"])
def test_dyndns2_911_waits_at_least_30_minutes(
    tmp_path: Path, dyn: Dyndns2Server, code: str
) -> None:
    dyn.answer_once = code
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "failed")]
    assert len(dyn.requests) == 1  # no quick retry after "the service has a problem"
    target = Store.of(cfg.agent).load().targets["dd"]
    import time

    assert target.backoff[4].retry_after >= time.time() + 1790
    dyn.answer_once = None
    assert actions(sync(cfg, force=True)) == [("dd", 4, "waiting")]
    assert len(dyn.requests) == 1


@pytest.mark.parametrize("knob", ["status500", "garbage", "timeout", "hang_up", "huge"])
def test_dyndns2_transient_trouble_is_retried_then_backs_off(
    tmp_path: Path, dyn: Dyndns2Server, knob: str
) -> None:
    if knob == "status500":
        dyn.status = 500
    elif knob == "garbage":
        dyn.garbage = "body"
    elif knob == "timeout":
        dyn.delay = 3
    elif knob == "hang_up":
        dyn.hang_up = True
    else:
        dyn.huge_body = HUGE_BODY
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url), timeout="1s")
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "failed")], report.targets[0].message
    assert report.exit_code == 1
    assert len(dyn.requests) == 2  # retries = 2 in this configuration
    if knob == "huge":
        assert "larger than" in report.targets[0].message
    if knob == "timeout":
        assert "timed out" in report.targets[0].message
    state = Store.of(cfg.agent).load().targets["dd"].backoff[4]
    assert state.failures == 1 and state.retry_after > 0
    assert actions(sync(cfg)) == [("dd", 4, "waiting")]
    assert len(dyn.requests) == 2


def test_untrusted_tls_certificate_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    with Dyndns2Server({"me": PASSWORD}, {HOSTS[0]: None}, ssl_context=server_ctx) as dyn:
        assert dyn.update_url.startswith("https://")
        cfg = make_config(tmp_path, dyndns2_table(dyn.update_url, HOSTS[:1]))
        report = sync(cfg)
        assert actions(report) == [("dd", 4, "failed")]
        assert "CERTIFICATE_VERIFY_FAILED" in report.targets[0].message
        assert all(r.user is None for r in dyn.requests)  # no credentials ever left


def test_many_hostnames_are_batched_by_twenty(tmp_path: Path) -> None:
    names = tuple(f"h{i}.example.net" for i in range(45))
    with Dyndns2Server({"me": PASSWORD}, dict.fromkeys(names)) as dyn:
        cfg = make_config(tmp_path, dyndns2_table(dyn.update_url, names))
        assert actions(sync(cfg)) == [("dd", 4, "sent")]
        sizes = [len(r.query["hostname"].split(",")) for r in dyn.requests]
        assert sorted(sizes) == [5, 20, 20]
        assert dyn.violations == []


def test_dry_run_sends_nothing_and_records_nothing(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, dyndns2_table(dyn.update_url))
    report = asyncio.run(Agent(cfg).sync(SyncOptions(dry_run=True, addresses={4: ADDR})))
    assert actions(report) == [("dd", 4, "dry-run")]
    assert "would send" in report.targets[0].message and PASSWORD not in report.targets[0].message
    assert dyn.requests == []
    assert not (cfg.agent.state_dir / "state.json").exists()


def test_unset_secret_is_a_configuration_error(tmp_path: Path, dyn: Dyndns2Server) -> None:
    table = dyndns2_table(dyn.update_url).replace(
        f'password = "{PASSWORD}"', 'password_env = "DDNSAGENT_TEST_UNSET"'
    )
    cfg = make_config(tmp_path, table)
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "config")]
    assert report.exit_code == 2
    assert "DDNSAGENT_TEST_UNSET" in report.targets[0].message
    assert dyn.requests == []
