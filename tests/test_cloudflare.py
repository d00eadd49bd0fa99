"""The cloudflare provider, through the Agent, against a strict local emulator of API v4."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ddnsagent import config
from ddnsagent.errors import ConfigError, FatalAnswer, TransientError
from ddnsagent.outcome import SyncReport
from ddnsagent.providers import cloudflare
from ddnsagent.secrets import register
from ddnsagent.store import Backoff, Store
from ddnsagent.sync import Agent, SyncOptions
from tests.fakes.cloudflare import CloudflareServer, Token

TOKEN = "cfTok_9f2c7E1aB3d4-Zq8"
OLD, NEW = "198.51.100.1", "203.0.113.7"
ZONE = "example.net"
HOME, MAIL = "home.example.net", "mail.example.net"


def make_config(tmp_path: Path, provider: str, *, timeout: str = "2s") -> config.Config:
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
{provider}
"""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return config.load(path)


def cf_table(api_url: str, records: tuple[str, ...] = (HOME,), extra: str = "") -> str:
    names = ", ".join(f'"{r}"' for r in records)
    return f"""
[[provider]]
name = "cf"
type = "cloudflare"
token = "{TOKEN}"
api_url = "{api_url}"
records = [{names}]
{extra}
"""


def sync(cfg: config.Config, force: bool = False, **addresses: str) -> SyncReport:
    given = {int(k[-1]): ipaddress.ip_address(v) for k, v in (addresses or {"ipv4": NEW}).items()}
    return asyncio.run(Agent(cfg).sync(SyncOptions(force=force, addresses=given)))


def actions(report: SyncReport) -> list[tuple[str, int, str]]:
    return [(t.name, t.family, t.action) for t in report.targets]


def backoff(cfg: config.Config, family: int = 4) -> Backoff:
    return Store.of(cfg.agent).load().targets["cf"].backoff[family]


def paths(cf: CloudflareServer) -> list[str]:
    """Each request as METHOD and the path after /client/v4, zone and record ids hidden."""
    shown = []
    for r in cf.requests:
        parts = r.path.removeprefix("/client/v4").split("/")
        if len(parts) > 2:
            parts[2] = "Z"
        if len(parts) > 4:
            parts[4] = "R"
        shown.append(f"{r.method} {'/'.join(parts)}")
    return shown


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def fresh_zone_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no remembered zone ids (the memory lives as long as the process)."""
    monkeypatch.setattr(cloudflare, "_ZONE_IDS", {})
    monkeypatch.setattr(cloudflare, "_ZONE_OF", {})


@pytest.fixture
def cf() -> Iterator[CloudflareServer]:
    with CloudflareServer({TOKEN: Token()}) as server:
        server.add_zone(ZONE)
        server.add_record(HOME, "A", OLD, proxied=True, ttl=300, comment="the home server")
        server.add_record(HOME, "TXT", "v=spf1 -all")
        server.add_record(MAIL, "A", OLD)
        yield server


# -- updating ----------------------------------------------------------------------------------


def test_updates_an_existing_a_record_and_keeps_its_settings(
    tmp_path: Path, cf: CloudflareServer
) -> None:
    cfg = make_config(tmp_path, cf_table(cf.api_url, extra=f'zone = "{ZONE}"'))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "sent")], report.targets[0].message
    assert f"{HOME}: {OLD} → {NEW}" in report.targets[0].message
    record = cf.record(HOME, "A")
    assert (record.content, record.proxied, record.ttl) == (NEW, True, 300)
    assert record.comment == "the home server"
    assert cf.record(HOME, "TXT").content == "v=spf1 -all"
    assert cf.record(MAIL, "A").content == OLD  # not configured, not touched
    assert paths(cf) == ["GET /zones", "GET /zones/Z/dns_records", "PATCH /zones/Z/dns_records/R"]
    zones, listing, patch = cf.requests
    assert zones.query == {"name": ZONE}
    assert listing.query["type"] == "A" and listing.query["name.exact"] == HOME
    assert json.loads(patch.body) == {"type": "A", "name": HOME, "content": NEW}
    assert all(r.header("authorization") == f"Bearer {TOKEN}" for r in cf.requests)
    assert all((r.header("user-agent") or "").startswith("ddnsagent/") for r in cf.requests)
    assert cf.violations == [] and cf.errors == []
    assert actions(sync(cfg)) == [("cf", 4, "unchanged")]
    assert len(cf.requests) == 3  # unchanged address: nothing asked, nothing written


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_aaaa_record_over_ipv6(tmp_path: Path) -> None:
    with CloudflareServer({TOKEN: Token()}, host="::1") as six:
        six.add_zone(ZONE)
        six.add_record(HOME, "AAAA", "2001:db8::1", proxied=True, comment="v6")
        six.add_record(HOME, "A", OLD)
        cfg = make_config(tmp_path, cf_table(six.api_url, extra="ipv4 = false\nipv6 = true"))
        report = sync(cfg, ipv4=NEW, ipv6="2001:db8::7")
        assert actions(report) == [("cf", 6, "sent")], report.targets[0].message
        record = six.record(HOME, "AAAA")
        assert (record.content, record.proxied, record.comment) == ("2001:db8::7", True, "v6")
        assert six.record(HOME, "A").content == OLD
        listing = next(r for r in six.requests if r.path.endswith("/dns_records"))
        assert listing.query["type"] == "AAAA"
        assert all(r.client_host == "::1" for r in six.requests)
        assert six.violations == []


def test_several_records_in_several_zones_found_by_name(tmp_path: Path) -> None:
    with CloudflareServer({TOKEN: Token()}) as cf:
        cf.add_zone(ZONE)
        cf.add_zone("example.org")
        cf.add_record(HOME, "A", OLD)
        cf.add_record(MAIL, "A", OLD)
        cf.add_record("example.org", "A", OLD)
        records = (HOME, MAIL, "example.org")
        cfg = make_config(tmp_path, cf_table(cf.api_url, records))
        report = sync(cfg)
        assert actions(report) == [("cf", 4, "sent")], report.targets[0].message
        assert [cf.record(r, "A").content for r in records] == [NEW] * 3
        looked_up = [r.query["name"] for r in cf.requests if r.path.endswith("/zones")]
        # home.example.net is tried as a zone first; mail.example.net is not a zone either
        assert looked_up == ["home.example.net", ZONE, "mail.example.net", "example.org"]
        cf.clear()
        report = sync(cfg, ipv4="203.0.113.8")
        assert actions(report) == [("cf", 4, "sent")]
        assert [cf.record(r, "A").content for r in records] == ["203.0.113.8"] * 3
        assert not any(r.path.endswith("/zones") for r in cf.requests)  # zone ids remembered
        assert len(cf.writes()) == 3 and cf.violations == []


def test_apex_and_wildcard_records(tmp_path: Path, cf: CloudflareServer) -> None:
    cf.add_record(ZONE, "A", OLD)
    cf.add_record("*.example.net", "A", OLD, proxied=True)
    cfg = make_config(tmp_path, cf_table(cf.api_url, (ZONE, "*.example.net")))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "sent")], report.targets[0].message
    assert cf.record(ZONE, "A").content == NEW
    wildcard = cf.record("*.example.net", "A")
    assert (wildcard.content, wildcard.proxied) == (NEW, True)
    assert cf.record(HOME, "A").content == OLD
    assert cf.violations == []


def test_record_already_holding_the_address_is_not_written(
    tmp_path: Path, cf: CloudflareServer
) -> None:
    cf.add_record("www.example.net", "A", NEW)
    cfg = make_config(tmp_path, cf_table(cf.api_url, (HOME, "www.example.net"), f'zone = "{ZONE}"'))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "sent")]
    assert f"www.example.net: already {NEW}" in report.targets[0].message
    assert [r.method for r in cf.writes()] == ["PATCH"]  # only home.example.net changed
    assert cf.record("www.example.net", "A").content == NEW


def test_zone_given_a_new_id_is_looked_up_again(tmp_path: Path, cf: CloudflareServer) -> None:
    cfg = make_config(tmp_path, cf_table(cf.api_url, extra=f'zone = "{ZONE}"'))
    assert actions(sync(cfg)) == [("cf", 4, "sent")]
    cf.renumber_zone(ZONE)
    cf.clear()
    report = sync(cfg, ipv4="203.0.113.8")
    assert actions(report) == [("cf", 4, "sent")], report.targets[0].message
    assert paths(cf) == [
        "GET /zones/Z/dns_records",  # the remembered id: 404 7003
        "GET /zones",  # the quick retry looks the zone up again
        "GET /zones/Z/dns_records",
        "PATCH /zones/Z/dns_records/R",
    ]
    assert cf.record(HOME, "A").content == "203.0.113.8"


# -- records that are not there, or there twice -------------------------------------------------


def test_missing_record_stops_without_create(tmp_path: Path, cf: CloudflareServer) -> None:
    cfg = make_config(tmp_path, cf_table(cf.api_url, (HOME, "new.example.net")))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "stopped")]
    target = report.targets[0]
    assert "A record new.example.net does not exist" in target.message
    assert "set create = true" in (target.fix or "") and "reset cf" in (target.fix or "")
    assert cf.writes() == []  # home.example.net was read, but nothing is half done
    assert cf.record(HOME, "A").content == OLD
    count = len(cf.requests)
    assert actions(sync(cfg, force=True)) == [("cf", 4, "stopped")]
    assert len(cf.requests) == count


def test_missing_record_is_created_with_create(tmp_path: Path, cf: CloudflareServer) -> None:
    extra = "create = true\nttl = 120\nproxied = true"
    cfg = make_config(tmp_path, cf_table(cf.api_url, (HOME, "new.example.net"), extra))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "sent")], report.targets[0].message
    assert "new.example.net: created" in report.targets[0].message
    created = cf.record("new.example.net", "A")
    assert (created.content, created.ttl, created.proxied) == (NEW, 120, True)
    post = next(r for r in cf.writes() if r.method == "POST")
    assert json.loads(post.body) == {
        "type": "A",
        "name": "new.example.net",
        "content": NEW,
        "ttl": 120,
        "proxied": True,
    }
    assert cf.violations == []


def test_create_defaults_to_automatic_ttl_and_not_proxied(
    tmp_path: Path, cf: CloudflareServer
) -> None:
    cfg = make_config(tmp_path, cf_table(cf.api_url, ("new.example.net",), "create = true"))
    assert actions(sync(cfg)) == [("cf", 4, "sent")]
    created = cf.record("new.example.net", "A")
    assert (created.ttl, created.proxied, created.comment) == (1, False, None)


def test_duplicate_records_are_refused(tmp_path: Path, cf: CloudflareServer) -> None:
    cf.add_record(HOME, "A", "198.51.100.2")
    cfg = make_config(tmp_path, cf_table(cf.api_url, (HOME,), "create = true"))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "stopped")]
    assert "has 2 A records" in report.targets[0].message
    assert "delete the extra A records" in (report.targets[0].fix or "")
    assert cf.writes() == []


def test_a_cname_in_the_way_of_a_created_record_stops(tmp_path: Path, cf: CloudflareServer) -> None:
    cf.add_record("alias.example.net", "CNAME", HOME)
    cfg = make_config(tmp_path, cf_table(cf.api_url, ("alias.example.net",), "create = true"))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "stopped")]
    assert "81054" in report.targets[0].message and "CNAME" in report.targets[0].message


# -- the token refused -------------------------------------------------------------------------


def test_invalid_token_401_stops_and_sends_nothing_more(
    tmp_path: Path, cf: CloudflareServer
) -> None:
    cf.tokens = {"someoneElsesToken": Token()}
    cfg = make_config(tmp_path, cf_table(cf.api_url))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "stopped")]
    assert report.exit_code == 3
    assert "HTTP 401" in report.targets[0].message and "9109" in report.targets[0].message
    assert "check the token" in (report.targets[0].fix or "")
    assert len(cf.requests) == 1  # no quick retry of a refused token
    assert actions(sync(cfg, force=True, ipv4="203.0.113.9")) == [("cf", 4, "stopped")]
    assert len(cf.requests) == 1


@pytest.mark.parametrize(
    ("token", "requests"),
    [
        (Token(dns_edit=False), 3),  # DNS read only: the PATCH is refused
        (Token(dns_edit=False, dns_read=False), 2),  # Zone read only: listing is refused
    ],
)
def test_token_without_permission_403_stops(
    tmp_path: Path, cf: CloudflareServer, token: Token, requests: int
) -> None:
    cf.tokens = {TOKEN: token}
    cfg = make_config(tmp_path, cf_table(cf.api_url, extra=f'zone = "{ZONE}"'))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "stopped")]
    assert "HTTP 403" in report.targets[0].message and "10000" in report.targets[0].message
    assert len(cf.requests) == requests
    assert actions(sync(cfg, force=True)) == [("cf", 4, "stopped")]
    assert len(cf.requests) == requests
    assert cf.record(HOME, "A").content == OLD


def test_zone_the_token_cannot_see_stops(tmp_path: Path, cf: CloudflareServer) -> None:
    cf.tokens = {TOKEN: Token(zones=frozenset({"example.org"}))}
    cfg = make_config(tmp_path, cf_table(cf.api_url, extra=f'zone = "{ZONE}"'))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "stopped")]
    assert f"zone {ZONE} is not visible to this token" in report.targets[0].message


def test_wrong_api_url_stops(tmp_path: Path, cf: CloudflareServer) -> None:
    cfg = make_config(tmp_path, cf_table(cf.url + "/client/v3"))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "stopped")]
    assert "check api_url" in (report.targets[0].fix or "")


# -- the service in trouble --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "at_least", "at_most"),
    [
        ("600", 600, 660),
        (None, 300, 330 * 1.0 + 1),  # no header: Cloudflare's documented five minutes
        ("soon", 300, 331),
        ("86400000", 3600, 3601),  # capped
    ],
)
def test_rate_limit_waits_at_least_retry_after(
    tmp_path: Path,
    cf: CloudflareServer,
    retry_after: str | None,
    at_least: float,
    at_most: float,
) -> None:
    cf.rate_limit_after = 0
    cf.retry_after = retry_after
    cfg = make_config(tmp_path, cf_table(cf.api_url))
    before = time.time()
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "failed")]
    assert "rate limit" in report.targets[0].message
    assert len(cf.requests) == 1  # a 429 is never retried at once
    wait = backoff(cfg).retry_after - before
    assert at_least - 1 <= wait <= at_most + 5
    cf.rate_limit_after = None
    assert actions(sync(cfg, force=True)) == [("cf", 4, "waiting")]
    assert len(cf.requests) == 1


def test_server_error_is_retried_at_once(tmp_path: Path, cf: CloudflareServer) -> None:
    cf.server_errors = 1
    cfg = make_config(tmp_path, cf_table(cf.api_url))
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "sent")], report.targets[0].message
    assert paths(cf)[:2] == ["GET /zones", "GET /zones"]
    assert cf.record(HOME, "A").content == NEW


@pytest.mark.parametrize("knob", ["status502", "status503", "timeout", "hang_up"])
def test_lasting_trouble_fails_then_backs_off(
    tmp_path: Path, cf: CloudflareServer, knob: str
) -> None:
    if knob.startswith("status"):
        cf.server_errors = 10
        cf.server_error_status = int(knob.removeprefix("status"))
    elif knob == "timeout":
        cf.delay = 3
    else:
        cf.hang_up = True
    cfg = make_config(tmp_path, cf_table(cf.api_url), timeout="1s")
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "failed")], report.targets[0].message
    assert report.exit_code == 1
    assert len(cf.requests) == 2  # retries = 2
    if knob == "timeout":
        assert "timed out" in report.targets[0].message
    state = backoff(cfg)
    assert state.failures == 1 and state.retry_after > time.time()
    cf.server_errors, cf.delay, cf.hang_up = 0, 0, False
    assert actions(sync(cfg)) == [("cf", 4, "waiting")]
    assert len(cf.requests) == 2


# -- the token stays secret --------------------------------------------------------------------


def test_token_never_appears_in_logs_reports_or_state(
    tmp_path: Path, cf: CloudflareServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "ddnsagent"):
        caplog.set_level(logging.DEBUG, logger=name)
    cfg = make_config(tmp_path, cf_table(cf.api_url, (HOME, MAIL)))
    texts = []
    dry = asyncio.run(Agent(cfg).sync(SyncOptions(dry_run=True, addresses={4: ADDRESS})))
    texts += [t.message for t in dry.targets]
    assert "would send" in dry.targets[0].message and HOME in dry.targets[0].message
    report = sync(cfg)
    assert actions(report) == [("cf", 4, "sent")]
    cf.rate_limit_after = len(cf.requests)
    texts += [json.dumps(r.as_dict()) for r in (report, sync(cfg, ipv4="203.0.113.8"))]
    cf.rate_limit_after = None
    cf.tokens = {}
    texts.append(json.dumps(sync(make_config(tmp_path / "b", cf_table(cf.api_url))).as_dict()))
    texts.append((cfg.agent.state_dir / "state.json").read_text())
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert all(TOKEN not in text for text in texts)
    assert any(r.header("authorization") == f"Bearer {TOKEN}" for r in cf.requests)  # it was used


ADDRESS = ipaddress.ip_address(NEW)


def test_messages_from_the_service_are_masked() -> None:
    secret = "aSecretThatLeaks_123"
    register(secret)
    body = json.dumps(
        {"success": False, "errors": [{"code": 1234, "message": f"bad\nheader {secret}"}]}
    )
    with pytest.raises(FatalAnswer) as caught:
        cloudflare.judge(400, body, "testing")
    assert secret not in str(caught.value) and "\n" not in str(caught.value)
    assert "1234 bad header ***" in str(caught.value)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("", "token", "required"),
        ('token = "x"\ntoken_env = "CF_TOKEN"', "token_env", "conflicts"),
        ('token_env = "CF"\napi_url = "http://192.0.2.1/client/v4"', "api_url", "plain HTTP"),
        ('token_env = "CF"\nzone = "example.net"\nrecords = ["a.example.org"]', "records", "zone"),
        ('token_env = "CF"\nrecords = []', "records", "empty"),
        ('token_env = "CF"\nrecords = ["home"]', "records", "fully qualified"),
        ('token_env = "CF"\nttl = 300', "ttl", "create = true"),
        ('token_env = "CF"\ncreate = true\nttl = 5', "ttl", "found 5"),
        ('token_env = "CF"\nproxied = true', "proxied", "create = true"),
        ('token_env = "CF"\nrecords = ["a.example.net", "A.example.net."]', "records", "twice"),
        ('token_env = "CF"\nzones = "example.net"', "zones", "did you mean"),
    ],
)
def test_configuration_mistakes_name_the_key(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    lines = ['name = "cf"', 'type = "cloudflare"', extra]
    if "records" not in extra:
        lines.append('records = ["home.example.net"]')
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, "[[provider]]\n" + "\n".join(lines))
    assert caught.value.key == f"provider.cf.{key}"
    assert words in str(caught.value)


def test_configuration_accepts_loopback_http_and_opted_in_http(tmp_path: Path) -> None:
    base = '[[provider]]\nname = "cf"\ntype = "cloudflare"\ntoken_env = "CF"\n'
    base += 'records = ["home.example.net", "*.example.net", "example.net"]\n'
    cfg = make_config(tmp_path, base + 'api_url = "http://127.0.0.1:8080/client/v4/"')
    (settings,) = cfg.providers
    assert settings.api_url == "http://127.0.0.1:8080/client/v4"
    assert (settings.ipv4, settings.ipv6, settings.keepalive) == (True, False, 0.0)
    assert (settings.create, settings.ttl, settings.proxied, settings.zone) == (
        False,
        1,
        False,
        None,
    )
    insecure = base + 'api_url = "http://192.0.2.1/client/v4"\ninsecure_http = true'
    assert make_config(tmp_path / "b", insecure).providers[0].api_url.startswith("http://192.0.2.1")
    default = make_config(tmp_path / "c", base).providers[0]
    assert default.api_url == "https://api.cloudflare.com/client/v4"


def test_unset_token_variable_is_a_configuration_error(
    tmp_path: Path, cf: CloudflareServer
) -> None:
    table = cf_table(cf.api_url).replace(f'token = "{TOKEN}"', 'token_env = "DDNSAGENT_TEST_UNSET"')
    report = sync(make_config(tmp_path, table))
    assert actions(report) == [("cf", 4, "config")]
    assert "DDNSAGENT_TEST_UNSET" in report.targets[0].message
    assert cf.requests == []


# -- the answer table, on strings --------------------------------------------------------------


def _body(success: bool, *codes: int, result: object = None) -> str:
    errors = [{"code": c, "message": f"m{c}"} for c in codes]
    return json.dumps({"success": success, "errors": errors, "messages": [], "result": result})


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, _body(True, result=[]), None),
        (400, _body(False, 6003), FatalAnswer),
        (400, _body(False, 9106), FatalAnswer),
        (403, _body(False, 9109), FatalAnswer),
        (401, "not json", FatalAnswer),
        (400, _body(False, 9005), FatalAnswer),
        (404, _body(False, 7000), FatalAnswer),
        (404, "<html>nope</html>", FatalAnswer),
        (400, _body(False, 7003), cloudflare.StaleId),
        (404, _body(False, 81044), cloudflare.StaleId),
        (429, _body(False, 971), TransientError),
        (400, _body(False, 971), TransientError),
        (500, _body(False, 10001), TransientError),
        (502, "<html>Bad Gateway</html>", TransientError),
        (200, "<html>captive portal</html>", TransientError),
        (200, _body(False, 1234), TransientError),
    ],
)
def test_judge(status: int, body: str, kind: type[Exception] | None) -> None:
    if kind is None:
        assert cloudflare.judge(status, body, "testing")["success"] is True
        return
    with pytest.raises(kind) as caught:
        cloudflare.judge(status, body, "testing")
    assert type(caught.value) is kind


def test_rate_wait() -> None:
    now = 1_000_000_000.0
    assert cloudflare.rate_wait("120") == 120
    assert cloudflare.rate_wait("0") == 1  # never 0: that would allow a quick retry
    assert cloudflare.rate_wait(None) == cloudflare.rate_wait("") == 300
    assert cloudflare.rate_wait("-5") == cloudflare.rate_wait("1.5") == 300
    assert cloudflare.rate_wait("99999999") == 3600
    date = "Sun, 09 Sep 2001 01:56:40 GMT"  # now + 600
    assert cloudflare.rate_wait(date, now=now) == pytest.approx(600)
    assert cloudflare.rate_wait("Sun, 09 Sep 2001 01:56:40", now=now) == 300  # no zone: ignored


def test_describe_says_what_would_be_done(tmp_path: Path) -> None:
    table = cf_table("http://127.0.0.1:9/client/v4", (HOME, MAIL), 'zone = "example.net"')
    settings = make_config(tmp_path, table).providers[0]
    text = cloudflare.Client(settings).describe(6, ipaddress.ip_address("2001:db8::7"))
    assert "AAAA home.example.net, mail.example.net to 2001:db8::7" in text
    assert "zone example.net" in text and "stop if one is missing" in text
    assert TOKEN not in text


# -- the emulator's own rules ------------------------------------------------------------------


def test_fake_put_resets_what_it_does_not_carry(cf: CloudflareServer) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False) as http:
        zone_id = http.get(cf.api_url + "/zones", params={"name": ZONE}).json()["result"][0]["id"]
        records = cf.api_url + f"/zones/{zone_id}/dns_records"
        listing = http.get(records, params={"type": "A", "name.exact": HOME}).json()
        assert listing["result_info"]["total_count"] == 1
        record_id = listing["result"][0]["id"]
        answer = http.put(
            f"{records}/{record_id}", json={"type": "A", "name": HOME, "content": NEW}
        )
    assert answer.json()["result"]["proxied"] is False
    record = cf.record(HOME, "A")
    assert (record.content, record.proxied, record.ttl, record.comment) == (NEW, False, 1, None)
    assert any("PUT overwrites" in v for v in cf.violations)


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"content": NEW}, 400, 9106),
        ({"Authorization": f"Token {TOKEN}"}, {"content": NEW}, 400, 6003),
        ({"Authorization": "Bearer nope"}, {"content": NEW}, 401, 9109),
        ({"Authorization": f"Bearer {TOKEN}"}, {"content": "2001:db8::1"}, 400, 9005),
        ({"Authorization": f"Bearer {TOKEN}"}, {"content": "1.2.3"}, 400, 9005),
        ({"Authorization": f"Bearer {TOKEN}"}, {"ttl": 5}, 400, 1004),
        ({"Authorization": f"Bearer {TOKEN}"}, {"content": OLD, "name": MAIL}, 400, 81057),
    ],
)
def test_fake_refuses_like_cloudflare(
    cf: CloudflareServer, headers: dict[str, str], body: dict[str, object], status: int, code: int
) -> None:
    (record,) = cf.records(HOME, "A")
    url = f"{cf.api_url}/zones/{record.zone_id}/dns_records/{record.id}"
    with httpx.Client(trust_env=False) as http:
        answer = http.patch(url, json=body, headers=headers)
    assert answer.status_code == status
    data = answer.json()
    assert data["success"] is False and data["result"] is None
    assert data["errors"][0]["code"] == code
    assert cf.record(HOME, "A").content == OLD


def test_fake_rate_limit_and_server_errors(cf: CloudflareServer) -> None:
    cf.rate_limit_after = 1
    cf.retry_after = "42"
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False) as http:
        assert http.get(cf.api_url + "/zones").status_code == 200
        limited = http.get(cf.api_url + "/zones")
        cf.rate_limit_after = None
        cf.server_errors = 1
        broken = http.get(cf.api_url + "/zones")
        fine = http.get(cf.api_url + "/zones")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "42"
    assert limited.json()["errors"][0]["code"] == 971
    assert broken.status_code == 502 and "text/html" in broken.headers["content-type"]
    assert fine.status_code == 200
