"""The generic URL provider, the dns-lexicon provider and the MyDNS DirectEDIT certbot hook,
each against a local server that answers as the real service does."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest

from ddnsagent import acme, config, logsetup
from ddnsagent.errors import ConfigError, FatalAnswer, TransientError
from ddnsagent.outcome import SyncReport
from ddnsagent.providers import client_for
from ddnsagent.providers import lexicon as lexicon_provider
from ddnsagent.providers import url as url_provider
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.fakes._server import FakeServer, RecordedRequest, Response, text
from tests.fakes.directedit import DirectEditServer
from tests.fakes.powerdns import PowerDNSServer

# Importing lexicon registers deprecated alias modules that warn when anything scans sys.modules.
pytestmark = pytest.mark.filterwarnings("ignore:Module lexicon.* is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent
ADDR = ipaddress.ip_address("203.0.113.7")
# Characters that change under percent-encoding, JSON escaping and Basic auth alike.
TOKEN = 'tok+en/9=a&b?c"d\\e'
TOKEN_ENV = "DDNSAGENT_TEST_URL_TOKEN"
PDNS_KEY = "pdns-Key-4c1d9e"
PDNS_ENV = "DDNSAGENT_TEST_PDNS_KEY"
MASTER_ID, MYDNS_PASSWORD = "mydns424242", "mydns-Pw-77c0"
MYDNS_ENV = "DDNSAGENT_TEST_ACME_PW"
VALIDATION = "gfj9Xq-Vd7H0aB_zKdR2sWcE1tYuIoPlMnBvCxZaQwE"


def make_config(tmp_path: Path, providers: str, *, timeout: str = "2s") -> config.Config:
    text_ = f"""
[agent]
state_dir = "{tmp_path / "state"}"
retries = 2
retry_delay = "0s"
[detect]
ipv4 = ["web:http://127.0.0.1:9/"]
accept = "any"
timeout = "{timeout}"
{providers}
"""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text_)
    os.chmod(path, 0o600)
    return config.load(path)


def config_error(tmp_path: Path, providers: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, providers)
    return info.value


def sync(cfg: config.Config, force: bool = False, address: str = str(ADDR)) -> SyncReport:
    given = {4: ipaddress.ip_address(address)}
    return asyncio.run(Agent(cfg).sync(SyncOptions(force=force, addresses=given)))


def actions(report: SyncReport) -> list[tuple[str, str]]:
    return [(t.name, t.action) for t in report.targets]


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(PDNS_ENV, PDNS_KEY)
    monkeypatch.setenv(MYDNS_ENV, MYDNS_PASSWORD)


# -- a generic update endpoint ------------------------------------------------------------------


class UpdateServer(FakeServer):
    """Answers every request with `reply(request)`; the tests decide what the service says."""

    def __init__(self, reply: Callable[[RecordedRequest], Response] | None = None) -> None:
        super().__init__()
        self.reply = reply or (lambda request: text(200, "good\n"))

    def handle(self, request: RecordedRequest) -> Response:
        return self.reply(request)


@pytest.fixture
def service() -> Iterator[UpdateServer]:
    with UpdateServer() as server:
        yield server


def url_table(url: str, extra: str = "", secret: str = f'token_env = "{TOKEN_ENV}"') -> str:
    return f"""
[[provider]]
name = "web"
type = "url"
url = "{url}"
{secret}
{extra}
"""


def test_get_one_request_per_hostname_with_encoded_values(
    tmp_path: Path, service: UpdateServer
) -> None:
    template = service.url + "/nic/{hostname}?ip={ip}&token={token}"
    cfg = make_config(
        tmp_path, url_table(template, 'hostnames = ["a.example.net", "b.example.net"]')
    )
    report = sync(cfg)
    assert actions(report) == [("web", "sent")]
    assert [r.path for r in service.requests] == ["/nic/a.example.net", "/nic/b.example.net"]
    for request in service.requests:
        assert request.method == "GET"
        assert parse_qs(request.raw_query) == {"ip": [str(ADDR)], "token": [TOKEN]}
        assert "%2B" in request.raw_query and "%26" in request.raw_query  # encoded, not raw
        assert (request.header("user-agent") or "").startswith("ddnsagent/")
    assert "a.example.net: HTTP 200; b.example.net: HTTP 200" in report.targets[0].message
    assert actions(sync(cfg)) == [("web", "unchanged")]
    assert len(service.requests) == 2


def test_post_with_a_json_body_and_json_success(tmp_path: Path, service: UpdateServer) -> None:
    service.reply = lambda request: Response(
        200, b'{"result": {"status": "ok", "changed": true}}', "application/json"
    )
    extra = """method = "POST"
json = { record = { ip = "{ip}", kind = "A" }, auth = "{token}", ttl = 60 }
headers = { X-Client = "home {ip}" }
success_json = "result.status"
success_value = "ok"
"""
    cfg = make_config(tmp_path, url_table(service.url + "/api/records", extra))
    report = sync(cfg)
    assert actions(report) == [("web", "sent")], report.targets[0].message
    (request,) = service.requests
    assert request.method == "POST" and request.path == "/api/records"
    assert request.header("content-type") == "application/json"
    assert request.header("x-client") == f"home {ADDR}"
    body = json.loads(request.body)
    assert body == {"record": {"ip": str(ADDR), "kind": "A"}, "auth": TOKEN, "ttl": 60}
    assert 'result.status = "ok"' in report.targets[0].message


def test_post_with_a_string_body_and_regex_success(tmp_path: Path, service: UpdateServer) -> None:
    service.reply = lambda request: text(200, "status: UPDATED\n")
    extra = """method = "POST"
body = "addr={ip}&key={token}"
headers = { Content-Type = "application/x-www-form-urlencoded" }
success_regex = "^status: (UPDATED|UNCHANGED)$"
"""
    template = service.url + "/u"
    cfg = make_config(tmp_path, url_table(template, extra.replace("^", "(?m)^")))
    assert actions(sync(cfg)) == [("web", "sent")]
    (request,) = service.requests
    assert request.body == f"addr={ADDR}&key={TOKEN}".encode()  # a raw body is sent as written


def test_a_2xx_that_is_not_success_is_retried_later(tmp_path: Path, service: UpdateServer) -> None:
    service.reply = lambda request: text(200, f"error: rate exceeded for {TOKEN}\n")
    extra = 'success_regex = "^OK"'
    cfg = make_config(tmp_path, url_table(service.url + "/u?t={token}", extra))
    report = sync(cfg)
    assert actions(report) == [("web", "failed")]
    assert "does not match success_regex" in report.targets[0].message
    assert TOKEN not in report.targets[0].message  # the echo of the secret is masked
    assert len(service.requests) == 2  # retries = 2


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_target(
    tmp_path: Path, service: UpdateServer, status: int
) -> None:
    service.reply = lambda request: text(status, "denied\n")
    cfg = make_config(tmp_path, url_table(service.url + "/u?t={token}"))
    report = sync(cfg)
    assert actions(report) == [("web", "stopped")]
    assert report.exit_code == 3 and f"HTTP {status}" in report.targets[0].message
    assert actions(sync(cfg, force=True)) == [("web", "stopped")]
    assert len(service.requests) == 1


def test_429_waits_as_long_as_asked_without_quick_retries(
    tmp_path: Path, service: UpdateServer
) -> None:
    service.reply = lambda request: text(429, "slow down\n", headers={"Retry-After": "7200"})
    cfg = make_config(tmp_path, url_table(service.url + "/u?t={token}"))
    before = time.time()
    report = sync(cfg)
    assert actions(report) == [("web", "failed")]
    assert len(service.requests) == 1
    backoff = Store.of(cfg.agent).load().targets["web"].backoff[4]
    assert backoff.retry_after >= before + 7200
    assert actions(sync(cfg, force=True)) == [("web", "waiting")]
    assert len(service.requests) == 1


def test_5xx_is_retried_then_backs_off(tmp_path: Path, service: UpdateServer) -> None:
    service.status = 502
    cfg = make_config(tmp_path, url_table(service.url + "/u?t={token}"))
    assert actions(sync(cfg)) == [("web", "failed")]
    assert len(service.requests) == 2


def test_basic_auth_with_username_and_password(tmp_path: Path, service: UpdateServer) -> None:
    secret = f'username = "me"\npassword_env = "{TOKEN_ENV}"'
    cfg = make_config(tmp_path, url_table(service.url + "/u?ip={ip}", secret=secret))
    assert actions(sync(cfg)) == [("web", "sent")]
    (request,) = service.requests
    assert (request.user, request.password) == ("me", TOKEN)


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    stream = io.StringIO()
    logsetup.setup("debug", stream, libraries=True)  # httpx's own records too
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_the_token_never_reaches_debug_logs(
    tmp_path: Path, service: UpdateServer, debug_log: io.StringIO
) -> None:
    extra = """method = "POST"
headers = { Authorization = "Token {token}", X-Key = "{token}" }
json = { key = "{token}" }
"""
    cfg = make_config(tmp_path, url_table(service.url + "/u?ip={ip}&token={token}", extra))
    assert actions(sync(cfg)) == [("web", "sent")]
    output = debug_log.getvalue()
    assert "HTTP Request: POST" in output  # httpx did log the request line, masked
    encoded = url_provider._url_encode(TOKEN)
    for form in (TOKEN, encoded, json.dumps(TOKEN)[1:-1]):
        assert form not in output
    assert "token=***" in output


def test_describe_and_dry_run_show_the_template_not_the_secret(
    tmp_path: Path, service: UpdateServer
) -> None:
    cfg = make_config(tmp_path, url_table(service.url + "/u?ip={ip}&token={token}"))
    text_ = client_for(cfg.providers[0]).describe(4, ADDR)
    assert text_ == f"GET {service.url}/u?ip=203.0.113.7&token={{token}}"
    report = asyncio.run(Agent(cfg).sync(SyncOptions(dry_run=True, addresses={4: ADDR})))
    assert "{token}" in report.targets[0].message and TOKEN not in report.targets[0].message
    assert service.requests == []


def test_ipv6_address_is_percent_encoded(tmp_path: Path, service: UpdateServer) -> None:
    table = url_table(service.url + "/u?ip={ip}&t={token}", "ipv4 = false\nipv6 = true")
    cfg = make_config(tmp_path, table)
    client = client_for(cfg.providers[0])
    six = ipaddress.ip_address("2001:db8::7")
    assert client.build(6, six, None, {"token": "x"}).url.endswith("ip=2001%3Adb8%3A%3A7&t=x")


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        (url_table("https://dd.example/u?t={token}", secret=""), "provider.web.token", "{token}"),
        (url_table("https://dd.example/u?p={password}"), "provider.web.password", "{password}"),
        (url_table("https://dd.example/u?ip={ip}"), "provider.web.token_env", "nothing uses"),
        (
            url_table("https://dd.example/u?ip={addr}&t={token}"),
            "provider.web.url",
            "unknown placeholder {addr}",
        ),
        (
            url_table("https://dd.example/{hostname}?t={token}"),
            "provider.web.hostnames",
            "required",
        ),
        (
            url_table("https://dd.example/u?t={token}", 'hostnames = ["a.example.net"]'),
            "provider.web.hostnames",
            "no template uses {hostname}",
        ),
        (
            url_table("https://dd.example/u?t={token}", 'body = "x"'),
            "provider.web.method",
            "no body",
        ),
        (
            url_table("https://dd.example/u?ip={ipv4}&t={token}", "ipv6 = true"),
            "provider.web.ipv6",
            "{ipv4}",
        ),
        (url_table("http://dd.example/u?t={token}"), "provider.web.url", "plain HTTP"),
        (
            url_table("https://dd.example/u?t={token}", 'success_regex = "("'),
            "provider.web.success_regex",
            "regular expression",
        ),
        (
            url_table("https://dd.example/u?t={token}", 'success_value = "ok"'),
            "provider.web.success_value",
            "success_json",
        ),
        (
            url_table("https://dd.example/u?t={token}", 'method = "get"'),
            "provider.web.method",
            "valid: GET",
        ),
    ],
)
def test_url_configuration_mistakes(tmp_path: Path, table: str, key: str, words: str) -> None:
    err = config_error(tmp_path, table)
    assert err.key == key, str(err)
    assert words in str(err)


def test_judge_answers_on_plain_strings() -> None:
    plain = url_provider.Success()
    assert url_provider.judge(204, "", plain) == "HTTP 204"
    with pytest.raises(FatalAnswer):
        url_provider.judge(404, "", plain)
    with pytest.raises(TransientError) as info:
        url_provider.judge(503, "", plain, "120")
    assert info.value.min_wait == 120
    with pytest.raises(TransientError) as info:
        url_provider.judge(429, "", plain, "Wed, 21 Oct 2015 07:28:00 GMT", now=1445412000.0)
    assert info.value.min_wait == 480
    with pytest.raises(TransientError) as info:
        url_provider.judge(429, "", plain, None)
    assert info.value.min_wait == url_provider.WAIT_429
    flag = url_provider.Success(json_path=("data", "0", "ok"), json_value=True)
    assert "= true" in url_provider.judge(200, '{"data": [{"ok": true}]}', flag)
    for body in ('{"data": [{"ok": 1}]}', '{"data": []}', "not json"):
        with pytest.raises(TransientError):
            url_provider.judge(200, body, flag)
    present = url_provider.Success(json_path=("id",))
    assert url_provider.judge(200, '{"id": 5}', present)
    with pytest.raises(TransientError):
        url_provider.judge(200, '{"id": null}', present)


# -- dns-lexicon against an emulated PowerDNS -----------------------------------------------------

ZONE = "example.net"
SOA = ("@", "SOA", 3600, ["ns1.example.net. hostmaster.example.net. 2024010101 3600 600 86400 60"])


@pytest.fixture
def lexicon_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dns-lexicon present, and unable to reach anything but loopback whatever it tries."""
    pytest.importorskip("lexicon", reason="dns-lexicon is not installed (ddnsagent[lexicon])")
    monkeypatch.setenv("TLDEXTRACT_CACHE_PATH", str(tmp_path / "tldextract"))
    monkeypatch.setenv("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost,::1")


@pytest.fixture
def pdns(lexicon_offline: None) -> Iterator[PowerDNSServer]:
    with PowerDNSServer(PDNS_KEY, {ZONE: [SOA, ("home", "A", 300, ["198.51.100.1"])]}) as server:
        yield server


def lexicon_table(server_url: str, records: str = '["home", "@"]', extra: str = "") -> str:
    return f"""
[[provider]]
name = "lx"
type = "lexicon"
provider = "powerdns"
domain = "{ZONE}."
records = {records}
options = {{ pdns_server = "{server_url}" }}
credentials_env = {{ auth_token = "{PDNS_ENV}" }}
{extra}
"""


def test_lexicon_sets_the_records_through_the_real_provider(
    tmp_path: Path, pdns: PowerDNSServer
) -> None:
    cfg = make_config(tmp_path, lexicon_table(pdns.url))
    report = sync(cfg)
    assert actions(report) == [("lx", "sent")], report.targets[0].message
    assert pdns.contents(ZONE, "home", "A") == [str(ADDR)]
    assert pdns.contents(ZONE, "@", "A") == [str(ADDR)]
    assert "home.example.net 198.51.100.1 → 203.0.113.7" in report.targets[0].message
    assert "example.net created 203.0.113.7" in report.targets[0].message
    assert all(r.header("x-api-key") == PDNS_KEY for r in pdns.requests)
    assert pdns.violations == [] and pdns.errors == []

    patches = pdns.patches
    report = sync(cfg, force=True)  # the records already say so: nothing is changed
    assert actions(report) == [("lx", "sent")]
    assert "already" in report.targets[0].message and pdns.patches == patches

    report = sync(cfg, address="203.0.113.8")
    assert actions(report) == [("lx", "sent")]
    assert pdns.contents(ZONE, "home", "A") == ["203.0.113.8"]
    assert pdns.contents(ZONE, "@", "A") == ["203.0.113.8"]
    assert pdns.zone(ZONE)[("example.net.", "SOA")] == SOA[3]  # the rest of the zone is kept


def test_lexicon_wrong_key_stops(tmp_path: Path, pdns: PowerDNSServer) -> None:
    pdns.api_key = "another-key"
    cfg = make_config(tmp_path, lexicon_table(pdns.url))
    report = sync(cfg)
    assert actions(report) == [("lx", "stopped")]
    assert "HTTP 401" in report.targets[0].message and PDNS_KEY not in report.targets[0].message
    assert len(pdns.requests) == 1


def test_lexicon_unknown_zone_stops(tmp_path: Path, pdns: PowerDNSServer) -> None:
    cfg = make_config(tmp_path, lexicon_table(pdns.url).replace(f'"{ZONE}."', '"example.org"'))
    report = sync(cfg)
    assert actions(report) == [("lx", "stopped")]
    assert "404" in report.targets[0].message and "domain" in (report.targets[0].fix or "")


def test_lexicon_server_trouble_is_transient(tmp_path: Path, pdns: PowerDNSServer) -> None:
    pdns.status = 503
    cfg = make_config(tmp_path, lexicon_table(pdns.url))
    report = sync(cfg)
    assert actions(report) == [("lx", "failed")]
    assert len(pdns.requests) == 2  # retried once (retries = 2), then backed off


def test_lexicon_deadline(tmp_path: Path, pdns: PowerDNSServer) -> None:
    pdns.delay = 3
    cfg = make_config(tmp_path, lexicon_table(pdns.url, extra='timeout = "1s"'))
    start = time.monotonic()
    report = sync(cfg)
    assert actions(report) == [("lx", "failed")]
    assert "did not finish within 1s" in report.targets[0].message
    assert time.monotonic() - start < 3
    assert len(pdns.requests) == 1  # no second session beside the one still hanging
    pdns.stop()  # the hanging session then fails and frees the provider for later tests
    deadline = time.monotonic() + 10
    while lexicon_provider._sessions["lx"].locked() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lexicon_provider._sessions["lx"].locked()


def test_lexicon_credentials_from_a_file_and_masked(
    tmp_path: Path, pdns: PowerDNSServer, debug_log: io.StringIO
) -> None:
    secret = tmp_path / "pdns.key"
    secret.write_text(PDNS_KEY + "\n")
    os.chmod(secret, 0o600)
    table = lexicon_table(pdns.url).replace(
        f'credentials_env = {{ auth_token = "{PDNS_ENV}" }}',
        'credentials_file = { auth_token = "pdns.key" }',
    )
    cfg = make_config(tmp_path, table)
    assert actions(sync(cfg)) == [("lx", "sent")]
    assert PDNS_KEY not in debug_log.getvalue()


def test_lexicon_configuration_mistakes(tmp_path: Path, lexicon_offline: None) -> None:
    base = lexicon_table("http://127.0.0.1:9")
    err = config_error(tmp_path, base.replace('"powerdns"', '"powerdsn"'))
    assert err.key == "provider.lx.provider" and "powerdns" in str(err)
    err = config_error(tmp_path, base.replace('["home", "@"]', "[]"))
    assert err.key == "provider.lx.records"
    err = config_error(tmp_path, base + 'credentials = { auth_token = "x" }\n')
    assert err.key == "provider.lx.credentials_env.auth_token" and "conflicts" in str(err)
    err = config_error(tmp_path, base + 'bogus = "x"\n')
    assert err.key == "provider.lx.bogus"


def test_lexicon_missing_is_a_configuration_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lexicon", None)
    monkeypatch.setitem(sys.modules, "lexicon.client", None)
    err = config_error(tmp_path, lexicon_table("http://127.0.0.1:9"))
    assert err.key == "provider.lx.type"
    assert "pip install 'ddnsagent[lexicon]'" in str(err)


# -- certbot's hook for MyDNS.JP DirectEDIT --------------------------------------------------------

DOMAIN = "example.mydns.jp"


def mydns_table(secret: str = f'password_env = "{MYDNS_ENV}"', name: str = "home") -> str:
    return f"""
[[provider]]
name = "{name}"
type = "mydns"
master_id = "{MASTER_ID}"
{secret}
"""


@pytest.fixture
def directedit() -> Iterator[DirectEditServer]:
    with DirectEditServer({MASTER_ID: MYDNS_PASSWORD}, {MASTER_ID: [DOMAIN]}) as server:
        yield server


def hook(
    cfg: config.Config,
    mode: str,
    server: DirectEditServer,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, str, str]:
    """Run the hook as certbot would, with its output captured; `env` adds to certbot's."""
    environ = {"CERTBOT_DOMAIN": DOMAIN, "CERTBOT_VALIDATION": VALIDATION, **(env or {})}
    environ.setdefault(acme.URL_ENV, server.edit_url)
    out, err = io.StringIO(), io.StringIO()
    code = acme.main(cfg, mode, environ=environ, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_hook_registers_then_deletes_the_challenge(
    tmp_path: Path, directedit: DirectEditServer
) -> None:
    cfg = make_config(tmp_path, mydns_table())
    code, out, err = hook(cfg, "auth", directedit)
    assert (code, err) == (0, "")
    assert f"TXT _acme-challenge.{DOMAIN} registered" in out
    assert directedit.txt(DOMAIN) == [VALIDATION]
    (request,) = directedit.requests
    assert (request.method, request.path) == ("POST", "/directedit.html")
    assert (request.user, request.password) == (MASTER_ID, MYDNS_PASSWORD)
    form = parse_qs(request.body.decode())
    assert form == {
        "CERTBOT_DOMAIN": [DOMAIN],
        "CERTBOT_VALIDATION": [VALIDATION],
        "EDIT_CMD": ["REGIST"],
    }
    code, out, err = hook(cfg, "cleanup", directedit)
    assert code == 0 and "deleted" in out
    assert directedit.txt(DOMAIN) == []
    assert directedit.violations == []


def test_hook_wildcard_uses_the_base_name(tmp_path: Path, directedit: DirectEditServer) -> None:
    cfg = make_config(tmp_path, mydns_table())
    code, _, _ = hook(cfg, "auth", directedit, env={"CERTBOT_DOMAIN": f"*.{DOMAIN}"})
    assert code == 0 and directedit.txt(DOMAIN) == [VALIDATION]


@pytest.mark.parametrize("bad_login_status", [200, 401])
def test_hook_wrong_password_is_refused(
    tmp_path: Path, directedit: DirectEditServer, bad_login_status: int
) -> None:
    directedit.bad_login_status = bad_login_status
    directedit.accounts[MASTER_ID] = "changed"
    cfg = make_config(tmp_path, mydns_table())
    code, out, err = hook(cfg, "auth", directedit)
    assert code == 3 and out == ""
    assert "refused the login" in err or "login failed" in err
    assert "check master_id and the password" in err and MYDNS_PASSWORD not in err
    assert directedit.txt(DOMAIN) == []


@pytest.mark.parametrize("missing", ["CERTBOT_DOMAIN", "CERTBOT_VALIDATION"])
def test_hook_without_certbot_variables(
    tmp_path: Path, directedit: DirectEditServer, missing: str
) -> None:
    cfg = make_config(tmp_path, mydns_table())
    code, _, err = hook(cfg, "auth", directedit, env={missing: ""})
    assert code == 2
    assert f"{missing} not set" in err and "certbot" in err
    assert directedit.requests == []


@pytest.mark.parametrize("knob", ["redirect", "status500", "hang_up"])
def test_hook_trouble_is_exit_1(tmp_path: Path, directedit: DirectEditServer, knob: str) -> None:
    if knob == "redirect":
        directedit.redirect = True
    elif knob == "status500":
        directedit.status = 500
    else:
        directedit.hang_up = True
    cfg = make_config(tmp_path, mydns_table())
    code, _, err = hook(cfg, "auth", directedit)
    assert code == 1, err
    assert len(directedit.requests) == 2  # retries = 2
    assert directedit.txt(DOMAIN) == []


def test_hook_chooses_the_provider(tmp_path: Path, directedit: DirectEditServer) -> None:
    tables = mydns_table(name="first", secret='password_env = "DDNSAGENT_TEST_UNSET"')
    tables += mydns_table(name="second")
    cfg = make_config(tmp_path, tables)
    code, _, err = hook(cfg, "auth", directedit)  # the first one: its secret is not set
    assert code == 2 and "DDNSAGENT_TEST_UNSET" in err
    code, out, _ = hook(cfg, "auth", directedit, provider_name="second")
    assert code == 0 and out.startswith("second:")
    code, _, err = hook(cfg, "auth", directedit, provider_name="third")
    assert code == 2 and "first, second" in err


def test_hook_needs_a_mydns_provider(tmp_path: Path, directedit: DirectEditServer) -> None:
    cfg = make_config(tmp_path, url_table("https://dd.example/u?t={token}"))
    code, _, err = hook(cfg, "auth", directedit)
    assert code == 2 and "no provider of type mydns" in err
    code, _, err = hook(cfg, "auth", directedit, provider_name="web")
    assert code == 2 and "not mydns" in err


def test_hook_url_parameter_wins_and_is_checked(
    tmp_path: Path, directedit: DirectEditServer
) -> None:
    cfg = make_config(tmp_path, mydns_table())
    env = {acme.URL_ENV: "http://127.0.0.1:9/directedit.html"}
    code, _, _ = hook(cfg, "auth", directedit, env=env, url=directedit.edit_url)
    assert code == 0 and len(directedit.requests) == 1
    code, _, err = hook(cfg, "auth", directedit, env={acme.URL_ENV: "http://mydns.example/x"})
    assert code == 2 and "plain HTTP" in err
    assert acme.directedit_url(None, {}, False) == "https://www.mydns.jp/directedit.html"


def test_hook_waits_after_auth_only(tmp_path: Path, directedit: DirectEditServer) -> None:
    cfg = make_config(tmp_path, mydns_table())
    start = time.monotonic()
    code, out, _ = hook(cfg, "auth", directedit, wait=0.3)
    assert code == 0 and time.monotonic() - start >= 0.3 and "waiting 0.3s" in out
    start = time.monotonic()
    code, out, _ = hook(cfg, "cleanup", directedit, wait=5.0)
    assert code == 0 and time.monotonic() - start < 3 and "waiting" not in out


def test_hook_unknown_mode(tmp_path: Path, directedit: DirectEditServer) -> None:
    cfg = make_config(tmp_path, mydns_table())
    code, _, err = hook(cfg, "present", directedit)
    assert code == 2 and "auth, cleanup" in err


def test_directedit_judge_on_plain_strings() -> None:
    assert acme.judge(200, "REGIST OK.<BR>login_status = 1.") == "HTTP 200"
    with pytest.raises(FatalAnswer):
        acme.judge(200, "login_status = 0.<BR>")
    with pytest.raises(FatalAnswer):
        acme.judge(404, "")
    with pytest.raises(TransientError) as info:
        acme.judge(307, "", "https://www.mydns.jp/")
    assert "https://www.mydns.jp/" in str(info.value)


def _cli_has_acme_hook() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "ddnsagent", "acme-hook", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    return probe.returncode == 0


def test_hook_through_the_command_line(tmp_path: Path, directedit: DirectEditServer) -> None:
    if not _cli_has_acme_hook():
        pytest.skip("`ddnsagent acme-hook` is not wired into the command line yet")
    cfg = make_config(tmp_path, mydns_table())
    env = {
        **os.environ,
        "CERTBOT_DOMAIN": DOMAIN,
        "CERTBOT_VALIDATION": VALIDATION,
        acme.URL_ENV: directedit.edit_url,
    }

    def run(*args: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "ddnsagent",
                "acme-hook",
                "mydns",
                *args,
                "--config",
                str(cfg.file),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=environ,
            check=False,
        )

    done = run("--auth")
    assert done.returncode == 0, done.stderr
    assert directedit.txt(DOMAIN) == [VALIDATION]
    done = run("--cleanup")
    assert done.returncode == 0, done.stderr
    assert directedit.txt(DOMAIN) == []
    bare = {k: v for k, v in env.items() if not k.startswith("CERTBOT_")}
    done = run("--auth", environ=bare)
    assert done.returncode == 2 and "CERTBOT_DOMAIN" in done.stderr
    assert "Traceback" not in done.stderr
    assert unquote(directedit.requests[0].body.decode()).count("EDIT_CMD") == 1
