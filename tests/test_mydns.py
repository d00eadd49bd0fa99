"""Issue 12, items 6–10: what MyDNS recorded, redirects, DirectEDIT's success and names, and
`login_status = 0` — each against the emulators in tests/fakes (sources cited there)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddnsagent import acme, cli
from ddnsagent.errors import ConfigError, FatalAnswer, TransientError
from ddnsagent.providers import mydns
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.fakes import MyDNSServer
from tests.fakes.directedit import DirectEditServer
from tests.test_providers import PASSWORD, actions, make_config, sync
from tests.test_url_lexicon_acme import (
    DOMAIN,
    MASTER_ID,
    MYDNS_PASSWORD,
    VALIDATION,
    hook,
    mydns_table,
)

ID = "mydns123456"


def table(url: str, extra: str = "") -> str:
    return f"""
[[provider]]
name = "home"
type = "mydns"
master_id = "{ID}"
password = "{PASSWORD}"
url_ipv4 = "{url}"
{extra}
"""


@pytest.fixture
def server() -> Iterator[MyDNSServer]:
    with MyDNSServer({ID: PASSWORD}) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mydns, "LOGIN_PAUSE", 0.0)


def sent(cfg: object) -> dict[int, str]:
    state = Store.of(cfg.agent).load()  # type: ignore[attr-defined]
    target = state.targets.get("home")
    return {f: s.address for f, s in target.sent.items()} if target else {}


# -- 6. what MyDNS recorded --------------------------------------------------------------------


def test_another_route_is_not_recorded_as_sent(tmp_path: Path, server: MyDNSServer) -> None:
    """We mean 127.0.0.2; the request leaves from 127.0.0.1 (the default route), which MyDNS
    records: a warning with both addresses and why, nothing recorded, no quick retry."""
    cfg = make_config(tmp_path, table(server.notify_url))
    report = sync(cfg, ipv4="127.0.0.2")
    assert actions(report) == [("home", 4, "failed")]
    message = report.targets[0].message
    assert "MyDNS recorded 127.0.0.1, not 127.0.0.2" in message
    assert "another route" in message and "bind_to_detected = true" in message
    assert sent(cfg) == {}
    assert len(server.requests) == 1  # retries = 2, but the route will not change in seconds
    backoff = Store.of(cfg.agent).load().targets["home"].backoff[4]
    assert backoff.retry_after - time.time() >= mydns.ROUTE_WAIT * 0.8


def test_bind_to_detected_makes_the_request_leave_from_it(
    tmp_path: Path, server: MyDNSServer
) -> None:
    cfg = make_config(tmp_path, table(server.notify_url, "bind_to_detected = true"))
    report = sync(cfg, ipv4="127.0.0.2")
    assert actions(report) == [("home", 4, "sent")], report.targets[0].message
    assert server.requests[0].client_host == "127.0.0.2"
    assert server.address_of(ID, 4) == "127.0.0.2"
    assert "MyDNS recorded 127.0.0.2" in report.targets[0].message
    assert sent(cfg) == {4: "127.0.0.2"}
    assert server.violations == []


def test_bind_to_detected_with_an_address_from_outside(tmp_path: Path, server: MyDNSServer) -> None:
    """203.0.113.7 (seen from outside) cannot be bound here: the message says so."""
    server.pretend_peer = "198.51.100.9"
    cfg = make_config(tmp_path, table(server.notify_url, "bind_to_detected = true"))
    report = sync(cfg, ipv4="203.0.113.7")
    assert actions(report) == [("home", 4, "failed")]
    message = report.targets[0].message
    assert "MyDNS recorded 198.51.100.9, not 203.0.113.7" in message
    assert "not an address of this host" in message
    assert server.requests[0].client_host == "127.0.0.1"


def test_a_page_without_remote_address_is_a_success_not_confirmed(
    tmp_path: Path, server: MyDNSServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.show_remote = False
    server.pretend_peer = "198.51.100.9"  # what it recorded, unseen by us
    cfg = make_config(tmp_path, table(server.notify_url))
    report = sync(cfg, ipv4="203.0.113.7")
    assert actions(report) == [("home", 4, "sent")]
    assert "no REMOTE ADDRESS" in report.targets[0].message
    assert "203.0.113.7 is not confirmed" in report.targets[0].message
    assert sent(cfg) == {4: "203.0.113.7"}
    # `status` keeps saying so, in text and JSON, until an answer confirms it
    path = tmp_path / "config.toml"
    assert cli.main(["status", "--config", str(path)]) == 0
    assert "ipv4 203.0.113.7 not confirmed: MyDNS's page did not show" in capsys.readouterr().out
    cli.main(["status", "--json", "--config", str(path)])
    (target,) = json.loads(capsys.readouterr().out)["targets"]
    assert target["sent"]["ipv4"]["unconfirmed"] == mydns.UNCONFIRMED
    server.show_remote = True
    server.pretend_peer = "203.0.113.8"
    sync(cfg, ipv4="203.0.113.8")
    cli.main(["status", "--json", "--config", str(path)])
    (target,) = json.loads(capsys.readouterr().out)["targets"]
    assert target["sent"]["ipv4"] == {**target["sent"]["ipv4"], "unconfirmed": None}


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ("<DT>REMOTE ADDRESS:</DT><DD>119.244.9.188</DD>", "119.244.9.188"),
        ("REMOTE ADDRESS: 119.244.9.188<BR>SERVER ADDRESS: 144.126.145.255", "119.244.9.188"),
        ("<dt>Remote Address :</dt>\n<dd>2001:db8::7</dd>", "2001:db8::7"),
        ("Login and IP address notify OK.<BR>login_status = 1.", None),
        ("REMOTE ADDRESS: unknown", None),
    ],
)
def test_recorded_address_is_read_from_the_page(body: str, found: str | None) -> None:
    expected = ipaddress.ip_address(found) if found else None
    assert mydns.recorded_address(body) == expected


def test_check_recorded_compares_addresses_not_text() -> None:
    meant = ipaddress.ip_address("2001:db8::7")
    same = ipaddress.ip_address("2001:0db8:0:0::0007")
    assert "recorded 2001:db8::7" in mydns.check_recorded(meant, same, False)
    with pytest.raises(TransientError) as info:
        mydns.check_recorded(meant, ipaddress.ip_address("2001:db8::8"), True)
    assert info.value.min_wait == mydns.ROUTE_WAIT and "translates" in str(info.value)


# -- 7. redirects --------------------------------------------------------------------------------


def test_a_redirect_is_transient_names_the_location_and_is_not_followed(
    tmp_path: Path, server: MyDNSServer
) -> None:
    with MyDNSServer({ID: PASSWORD}) as elsewhere:
        server.redirect_to = elsewhere.notify_url
        server.pretend_peer = "203.0.113.7"
        cfg = make_config(tmp_path, table(server.notify_url))
        report = sync(cfg)
        assert actions(report) == [("home", 4, "failed")]  # not stopped
        assert elsewhere.notify_url in report.targets[0].message
        assert elsewhere.requests == []  # never followed, credentials never sent there
        assert Store.of(cfg.agent).load().targets["home"].stopped is None
        server.redirect_to = None
        with Store.of(cfg.agent).edit() as state:
            state.targets["home"].backoff.clear()
        assert actions(sync(cfg)) == [("home", 4, "sent")]


def test_a_directedit_redirect_names_the_location_and_is_not_followed(
    tmp_path: Path, directedit: DirectEditServer
) -> None:
    with DirectEditServer({MASTER_ID: MYDNS_PASSWORD}, {MASTER_ID: [DOMAIN]}) as elsewhere:
        directedit.redirect = True
        directedit.redirect_location = elsewhere.edit_url
        cfg = make_config(tmp_path, mydns_table_with())
        code, _, err = hook(cfg, "auth", directedit)
        assert code == 1 and elsewhere.edit_url in err and "not followed" in err
        assert elsewhere.requests == []


# -- 8. DirectEDIT success only when the page says so ------------------------------------------


@pytest.fixture
def directedit() -> Iterator[DirectEditServer]:
    with DirectEditServer({MASTER_ID: MYDNS_PASSWORD}, {MASTER_ID: [DOMAIN]}) as fake:
        yield fake


def mydns_table_with(extra: str = "") -> str:
    return mydns_table(f'password = "{MYDNS_PASSWORD}"\n{extra}')


def test_a_domain_the_account_does_not_own_is_a_clear_failure(
    tmp_path: Path, directedit: DirectEditServer
) -> None:
    cfg = make_config(tmp_path, mydns_table_with())
    code, out, err = hook(cfg, "auth", directedit, env={"CERTBOT_DOMAIN": "other.example.org"})
    assert code == 3 and out == ""
    assert "does not confirm the edit" in err and "front page" in err
    assert "DOMAIN INFO" in err
    assert directedit.txt("other.example.org") == []


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ("REGIST OK.<BR>\nlogin_status = 1.", True),
        ("DELETE OK.", True),
        ("<!DOCTYPE html>\n<html><body>MyDNS.JP</body></html>", False),
        ("", False),
        ("login_status = 1.", False),
    ],
)
def test_directedit_success_needs_the_ok_sentence(body: str, ok: bool) -> None:
    if ok:
        assert acme.judge(200, body) == "HTTP 200"
    else:
        with pytest.raises(FatalAnswer):
            acme.judge(200, body)


# -- 9. which name DirectEDIT is given ---------------------------------------------------------


def test_the_registered_domain_and_its_wildcard_are_sent(
    tmp_path: Path, directedit: DirectEditServer
) -> None:
    cfg = make_config(tmp_path, mydns_table_with(f'domain = "{DOMAIN.upper()}."'))
    for name in (DOMAIN, f"*.{DOMAIN}"):
        code, _, err = hook(cfg, "auth", directedit, env={"CERTBOT_DOMAIN": name})
        assert code == 0, err
    assert directedit.txt(DOMAIN) == [VALIDATION]
    assert directedit.violations == []


def test_a_sub_domain_is_refused_before_anything_is_sent(
    tmp_path: Path, directedit: DirectEditServer
) -> None:
    cfg = make_config(tmp_path, mydns_table_with(f'domain = "{DOMAIN}"'))
    code, _, err = hook(cfg, "auth", directedit, env={"CERTBOT_DOMAIN": f"mail.{DOMAIN}"})
    assert code == 2
    assert f"sub-domain of {DOMAIN}" in err and f"*.{DOMAIN}" in err and "HTTP-01" in err
    code, _, err = hook(cfg, "auth", directedit, env={"CERTBOT_DOMAIN": "other.example.org"})
    assert code == 2 and f"is not {DOMAIN}" in err
    assert directedit.requests == []


def test_without_domain_a_sub_domain_fails_clearly_at_the_service(
    tmp_path: Path, directedit: DirectEditServer
) -> None:
    cfg = make_config(tmp_path, mydns_table_with())
    code, _, err = hook(cfg, "auth", directedit, env={"CERTBOT_DOMAIN": f"mail.{DOMAIN}"})
    assert code == 3 and "does not confirm the edit" in err and "set `domain`" in err
    assert directedit.txt(f"mail.{DOMAIN}") == [] and directedit.txt(DOMAIN) == []


def test_a_bad_domain_key_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, table("https://ipv4.mydns.jp/login.html", 'domain = "no"'))
    assert "domain" in str(info.value) and "DOMAIN INFO" in str(info.value)


# -- 10. login_status = 0 ------------------------------------------------------------------------


@pytest.mark.parametrize("flaky", [1, mydns.LOGIN_ANSWERS - 1])
def test_a_node_that_fails_the_login_does_not_stop_the_target(
    tmp_path: Path, server: MyDNSServer, flaky: int
) -> None:
    server.flaky_answers = flaky
    server.pretend_peer = "203.0.113.7"
    cfg = make_config(tmp_path, table(server.notify_url))
    report = sync(cfg)
    assert actions(report) == [("home", 4, "sent")]
    assert f"after {flaky} login_status = 0" in report.targets[0].message
    assert len(server.requests) == flaky + 1
    ports = {r.client for r in server.requests}
    assert len(ports) == flaky + 1  # each ask on a new connection


def test_login_failed_answers_stop_only_after_n_in_a_row(
    tmp_path: Path, server: MyDNSServer
) -> None:
    server.accounts[ID] = "changed"
    cfg = make_config(tmp_path, table(server.notify_url))
    report = sync(cfg)
    assert actions(report) == [("home", 4, "stopped")]
    assert f"{mydns.LOGIN_ANSWERS} times in a row" in report.targets[0].message
    assert len(server.requests) == mydns.LOGIN_ANSWERS
    assert len({r.client for r in server.requests}) == mydns.LOGIN_ANSWERS


def test_below_n_a_login_failure_is_transient(tmp_path: Path, server: MyDNSServer) -> None:
    """One `login_status = 0`, then the service goes away: a passing failure, with back-off."""
    server.flaky_answers = 1
    server.pretend_peer = "203.0.113.7"
    original = server.handle

    def handle(request):  # type: ignore[no-untyped-def]
        answer = original(request)
        server.status = 503  # every later request: the service is away
        return answer

    server.handle = handle  # type: ignore[method-assign]
    cfg = make_config(tmp_path, table(server.notify_url))
    report = sync(cfg)
    assert actions(report) == [("home", 4, "failed")]
    assert "503" in report.targets[0].message
    assert len(server.requests) == 3  # login_status = 0, 503; the sync's retry: 503
    target = Store.of(cfg.agent).load().targets["home"]
    assert target.stopped is None and target.backoff[4].failures == 1


def test_a_forced_sync_says_that_a_target_is_stopped(
    tmp_path: Path, server: MyDNSServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay's re-notify is a forced sync: a stopped target is named, with how to lift it."""
    server.bad_login_status = 401
    server.accounts[ID] = "changed"
    cfg = make_config(tmp_path, table(server.notify_url))
    sync(cfg)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ddnsagent.sync"):
        report = asyncio.run(
            Agent(cfg).sync(
                SyncOptions(
                    reason="relay-denied",
                    force=True,
                    addresses={4: ipaddress.ip_address("203.0.113.7")},
                )
            )
        )
    assert actions(report) == [("home", 4, "stopped")]
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "home: not notified, stopped since" in x and "ddnsagent reset home" in x for x in lines
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ddnsagent.sync"):
        sync(cfg)  # the schedule's own syncs stay quiet about it
    assert not any("not notified" in r.getMessage() for r in caplog.records)


def test_new_keys_at_their_defaults_leave_the_fingerprint_alone(tmp_path: Path) -> None:
    """An upgrade alone must not lift stops or resend every address."""
    (settings,) = make_config(tmp_path, table("http://127.0.0.1:9/login.html")).providers
    data = settings.fingerprint_data()
    assert "bind_to_detected" not in data and "domain" not in data
    changed = dataclasses.replace(settings, bind_to_detected=True, domain="example.mydns.jp")
    assert "bind_to_detected=True" in changed.fingerprint_data()
    assert "domain='example.mydns.jp'" in changed.fingerprint_data()
