"""duckdns, dynv6, desec and the dyndns2 presets, against strict local emulators.

Every test drives ddnsagent's Agent, as a sync would: what is sent, what is not sent again, which
answers stop a target, which make it wait, and that tokens riding in URLs never reach the logs.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ddnsagent import config, logsetup, secrets
from ddnsagent.errors import ConfigError, FatalAnswer, TransientError
from ddnsagent.outcome import SyncReport
from ddnsagent.providers import client_for, desec, duckdns, dyndns2, dynv6
from ddnsagent.store import Backoff, Store
from ddnsagent.sync import Agent, SyncOptions
from tests.fakes import Dyndns2Server
from tests.fakes.desec import DesecServer
from tests.fakes.duckdns import DuckDNSServer
from tests.fakes.dynv6 import Dynv6Server

ADDR4 = "203.0.113.7"
ADDR6 = "2001:db8::7"
DUCK_TOKEN = "a7c4d1e2-5b6f-4c3d-9e8f-0123456789ab"
DYNV6_TOKEN = "dynv6-Tok_en/with+odd=chars"
DESEC_TOKEN = "desec-i-T3b1h_OI-H9ab8tRS98stG"
TOKEN_ENV = "DDNSAGENT_TEST_PROVIDER_TOKEN"


def make_config(tmp_path: Path, providers: str, *, timeout: str = "2s") -> config.Config:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
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
    )
    os.chmod(path, 0o600)
    return config.load(path)


def sync(cfg: config.Config, force: bool = False, **addresses: str) -> SyncReport:
    given = {int(k[-1]): ipaddress.ip_address(v) for k, v in (addresses or {"ipv4": ADDR4}).items()}
    return asyncio.run(Agent(cfg).sync(SyncOptions(force=force, addresses=given)))


def actions(report: SyncReport) -> list[tuple[str, int, str]]:
    return [(t.name, t.family, t.action) for t in report.targets]


def backoff_of(cfg: config.Config, name: str, family: int) -> Backoff:
    return Store.of(cfg.agent).load().targets[name].backoff[family]


@pytest.fixture
def debug_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """ddnsagent's own log setup at debug level, writing into a buffer; restored afterwards.

    The registry of secrets starts empty, so only what this test registers can mask anything.
    """
    monkeypatch.setattr(secrets, "_known", set())
    root = logging.getLogger()
    names = ("httpx", "httpcore", "apscheduler", "asyncio")
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in names})
    out = io.StringIO()
    logsetup.setup("debug", out, libraries=True)  # httpx's own records, which carry the URL
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def assert_secret_nowhere(secret: str, cfg: config.Config, report: SyncReport, log: str) -> None:
    """The secret is in no log line, no report line and not in the state file."""
    assert secret not in log
    assert str(httpx.QueryParams({"v": secret}))[2:] not in log  # as a URL would carry it
    for t in report.targets:
        assert secret not in t.message and secret not in (t.fix or "")
    state_file = cfg.agent.state_dir / "state.json"
    if state_file.exists():
        assert secret not in state_file.read_text()


# == DuckDNS ===================================================================================


def duck_table(url: str, *, secret: str = f'token = "{DUCK_TOKEN}"', extra: str = "") -> str:
    return f"""
[[provider]]
name = "duck"
type = "duckdns"
domains = ["myhome", "work.duckdns.org"]
url = "{url}"
{secret}
{extra}
"""


@pytest.fixture
def duck() -> Iterator[DuckDNSServer]:
    with DuckDNSServer({DUCK_TOKEN: ["myhome", "work"], "other-token": ["theirs"]}) as server:
        yield server


def test_duckdns_updates_once_and_not_again(tmp_path: Path, duck: DuckDNSServer) -> None:
    cfg = make_config(tmp_path, duck_table(duck.update_url))
    report = sync(cfg)
    assert actions(report) == [("duck", 4, "sent")]
    assert "myhome,work: updated" in report.targets[0].message
    (request,) = duck.requests
    assert request.query == {
        "domains": "myhome,work",
        "token": DUCK_TOKEN,
        "ip": ADDR4,
        "verbose": "true",
    }
    assert duck.violations == [] and duck.errors == []
    assert duck.domain("myhome").ipv4 == ADDR4 and duck.domain("work").ipv4 == ADDR4
    assert actions(sync(cfg)) == [("duck", 4, "unchanged")]
    assert len(duck.requests) == 1
    report = sync(cfg, force=True)
    assert actions(report) == [("duck", 4, "sent")] and "no change" in report.targets[0].message
    report = sync(cfg, ipv4="203.0.113.8")
    assert actions(report) == [("duck", 4, "sent")]
    assert duck.domain("myhome").ipv4 == "203.0.113.8"


def test_duckdns_ipv6_goes_in_ipv6_and_leaves_ipv4(tmp_path: Path) -> None:
    with DuckDNSServer({DUCK_TOKEN: ["myhome", "work"]}, host="::1") as six:
        table = duck_table(six.update_url, extra="ipv4 = false\nipv6 = true")
        cfg = make_config(tmp_path, table)
        report = sync(cfg, ipv4=ADDR4, ipv6=ADDR6)
        assert actions(report) == [("duck", 6, "sent")]
        (request,) = six.requests
        assert request.client_host == "::1"
        assert request.query["ipv6"] == ADDR6 and "ip" not in request.query
        record = six.domain("myhome")
        assert (record.ipv4, record.ipv6) == (None, ADDR6)  # no IPv4 guessed from the peer
        assert six.violations == []


def test_duckdns_ipv6_update_reaches_an_ipv4_only_service(
    tmp_path: Path, duck: DuckDNSServer
) -> None:
    """DuckDNS cannot be reached over IPv6; the address is a parameter, so that is no obstacle."""
    cfg = make_config(tmp_path, duck_table(duck.update_url, extra="ipv6 = true"))
    report = sync(cfg, ipv4=ADDR4, ipv6=ADDR6)
    assert actions(report) == [("duck", 4, "sent"), ("duck", 6, "sent")]
    assert [r.client_host for r in duck.requests] == ["127.0.0.1", "127.0.0.1"]
    assert [("ip" in r.query, "ipv6" in r.query) for r in duck.requests] == [
        (True, False),
        (False, True),
    ]
    record = duck.domain("work")
    assert (record.ipv4, record.ipv6, record.changes) == (ADDR4, ADDR6, 2)
    assert duck.violations == []


@pytest.mark.parametrize("problem", ["wrong-token", "foreign-domain"])
def test_duckdns_ko_stops_the_target(tmp_path: Path, duck: DuckDNSServer, problem: str) -> None:
    if problem == "wrong-token":
        table = duck_table(duck.update_url, secret='token = "not-the-token"')
    else:
        table = duck_table(duck.update_url).replace('"work.duckdns.org"', '"theirs"')
    cfg = make_config(tmp_path, table)
    report = sync(cfg)
    assert actions(report) == [("duck", 4, "stopped")]
    assert "KO" in report.targets[0].message and report.exit_code == 3
    assert "reset duck" in (report.targets[0].fix or "")
    assert actions(sync(cfg, force=True, ipv4="203.0.113.9")) == [("duck", 4, "stopped")]
    assert len(duck.requests) == 1
    assert duck.domain("myhome").ipv4 is None


@pytest.mark.parametrize("knob", ["status503", "throttle", "garbage"])
def test_duckdns_trouble_is_transient(tmp_path: Path, duck: DuckDNSServer, knob: str) -> None:
    if knob == "status503":
        duck.status = 503
    elif knob == "throttle":
        duck.throttle = True
    else:
        duck.body = "<html>maintenance</html>"
    cfg = make_config(tmp_path, duck_table(duck.update_url))
    report = sync(cfg)
    assert actions(report) == [("duck", 4, "failed")], report.targets[0].message
    assert report.exit_code == 1
    # retries = 2; a 429 with Retry-After (the one verdict honours it) is not retried at once
    assert len(duck.requests) == (1 if knob == "throttle" else 2)
    assert actions(sync(cfg)) == [("duck", 4, "waiting")]


def test_duckdns_token_never_reaches_the_logs(
    tmp_path: Path,
    duck: DuckDNSServer,
    debug_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, DUCK_TOKEN)
    cfg = make_config(tmp_path, duck_table(duck.update_url, secret=f'token_env = "{TOKEN_ENV}"'))
    report = sync(cfg)
    assert actions(report) == [("duck", 4, "sent")]
    duck.status = 500
    failed = sync(cfg, ipv4="203.0.113.8")
    log = debug_log.getvalue()
    assert "HTTP Request: GET" in log and "token=***" in log  # httpx's line, masked
    assert duck.requests[0].query["token"] == DUCK_TOKEN  # it did travel, in the URL
    for r in (report, failed):
        assert_secret_nowhere(DUCK_TOKEN, cfg, r, log)


def test_duckdns_dry_run_hides_the_token(tmp_path: Path, duck: DuckDNSServer) -> None:
    cfg = make_config(tmp_path, duck_table(duck.update_url))
    report = asyncio.run(
        Agent(cfg).sync(SyncOptions(dry_run=True, addresses={4: ipaddress.ip_address(ADDR4)}))
    )
    (target,) = report.targets
    assert target.action == "dry-run" and "token=***" in target.message
    assert DUCK_TOKEN not in target.message and duck.requests == []


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, "OK", "a: OK"),
        (200, "OK\n203.0.113.7\n\nUPDATED", "a: updated"),
        (200, "OK\n203.0.113.7\n\nNOCHANGE", "a: no change"),
        (200, "KO", FatalAnswer),
        (200, "KO\n", FatalAnswer),
        (200, "", TransientError),
        (200, "<html>", TransientError),
        (429, "", TransientError),
        (502, "", TransientError),
        (404, "", FatalAnswer),
    ],
)
def test_duckdns_judge(status: int, body: str, outcome: object) -> None:
    if isinstance(outcome, str):
        assert duckdns.judge(status, body, ["a"]) == outcome
    else:
        with pytest.raises(outcome):  # type: ignore[call-overload]
            duckdns.judge(status, body, ["a"])


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('domains = ["a.b.duckdns.org"]', "domains"),
        ('domains = ["my_home"]', "domains"),
        ("domains = []", "domains"),
        ('domains = ["x"]\nurl = "http://www.duckdns.org/update"', "url"),
    ],
)
def test_duckdns_configuration_mistakes(tmp_path: Path, line: str, key: str) -> None:
    table = f'[[provider]]\nname = "duck"\ntype = "duckdns"\ntoken = "t0ken"\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, table)
    assert caught.value.key == f"provider.duck.{key}"


def test_duckdns_token_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, '[[provider]]\nname = "duck"\ntype = "duckdns"\ndomains = ["a"]\n')
    assert caught.value.key == "provider.duck.token"


# == dynv6 =====================================================================================


def dynv6_table(url: str, *, secret: str = f'token = "{DYNV6_TOKEN}"', extra: str = "") -> str:
    return f"""
[[provider]]
name = "v6"
type = "dynv6"
zones = ["myhome.dynv6.net", "lab.v6.rocks"]
url = "{url}"
{secret}
{extra}
"""


@pytest.fixture
def v6() -> Iterator[Dynv6Server]:
    zones = ["myhome.dynv6.net", "lab.v6.rocks"]
    with Dynv6Server({DYNV6_TOKEN: zones, "other": ["theirs.dynv6.net"]}) as server:
        yield server


def test_dynv6_one_request_per_zone_then_quiet(tmp_path: Path, v6: Dynv6Server) -> None:
    cfg = make_config(tmp_path, dynv6_table(v6.update_url))
    report = sync(cfg)
    assert actions(report) == [("v6", 4, "sent")]
    assert report.targets[0].message.endswith(
        "myhome.dynv6.net: addresses updated; lab.v6.rocks: addresses updated"
    )
    assert [r.query for r in v6.requests] == [
        {"zone": z, "token": DYNV6_TOKEN, "ipv4": ADDR4}
        for z in ("myhome.dynv6.net", "lab.v6.rocks")
    ]
    assert v6.violations == [] and v6.errors == []
    assert v6.zone("lab.v6.rocks").ipv4 == ADDR4
    assert actions(sync(cfg)) == [("v6", 4, "unchanged")]
    assert len(v6.requests) == 2


def test_dynv6_ipv6_with_prefix_over_ipv6(tmp_path: Path) -> None:
    with Dynv6Server({DYNV6_TOKEN: ["myhome.dynv6.net", "lab.v6.rocks"]}, host="::1") as six:
        extra = "ipv4 = false\nipv6 = true\nipv6_prefix_length = 64"
        cfg = make_config(tmp_path, dynv6_table(six.update_url, extra=extra))
        report = sync(cfg, ipv4=ADDR4, ipv6=ADDR6)
        assert actions(report) == [("v6", 6, "sent")]
        assert {r.query["ipv6"] for r in six.requests} == {f"{ADDR6}/64"}
        assert all("ipv4" not in r.query and r.client_host == "::1" for r in six.requests)
        zone = six.zone("myhome.dynv6.net")
        assert (zone.ipv4, zone.ipv6, zone.prefix) == (None, ADDR6, "2001:db8::/64")
        assert six.violations == []


@pytest.mark.parametrize(
    ("change", "status"),
    [("token", 401), ("zone", 404), ("status400", 400), ("status403", 403)],
)
def test_dynv6_refusals_stop_the_target(
    tmp_path: Path, v6: Dynv6Server, change: str, status: int
) -> None:
    table = dynv6_table(v6.update_url)
    if change == "token":
        table = table.replace(DYNV6_TOKEN, "wrong-token")
    elif change == "zone":
        table = table.replace('"lab.v6.rocks"', '"theirs.dynv6.net"')
    else:
        v6.status, v6.body = status, "refused"
    cfg = make_config(tmp_path, table)
    report = sync(cfg)
    assert actions(report) == [("v6", 4, "stopped")], report.targets[0].message
    assert f"HTTP {status}" in report.targets[0].message
    sent = len(v6.requests)
    assert actions(sync(cfg, force=True)) == [("v6", 4, "stopped")]
    assert len(v6.requests) == sent


def test_dynv6_429_waits_without_quick_retry(tmp_path: Path, v6: Dynv6Server) -> None:
    v6.throttle = True
    cfg = make_config(tmp_path, dynv6_table(v6.update_url))
    report = sync(cfg)
    assert actions(report) == [("v6", 4, "failed")]
    assert len(v6.requests) == 1  # an answer that asks for quiet is not retried at once
    assert backoff_of(cfg, "v6", 4).retry_after >= time.time() + v6.retry_after - 1
    v6.throttle = False
    assert actions(sync(cfg, force=True)) == [("v6", 4, "waiting")]
    assert len(v6.requests) == 1


def test_dynv6_token_masked_also_percent_encoded(
    tmp_path: Path, v6: Dynv6Server, debug_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, DYNV6_TOKEN)
    cfg = make_config(tmp_path, dynv6_table(v6.update_url, secret=f'token_env = "{TOKEN_ENV}"'))
    report = sync(cfg)
    assert actions(report) == [("v6", 4, "sent")]
    log = debug_log.getvalue()
    assert log.count("HTTP Request: GET") == 2 and "token=***" in log
    assert v6.requests[0].query["token"] == DYNV6_TOKEN  # the server got it intact
    assert "%2F" not in log  # not even the encoded form slipped through
    assert_secret_nowhere(DYNV6_TOKEN, cfg, report, log)


@pytest.mark.parametrize(
    ("status", "wait", "outcome", "min_wait"),
    [
        (200, None, "z: addresses updated", None),
        (401, None, FatalAnswer, None),
        (403, None, FatalAnswer, None),
        (404, None, FatalAnswer, None),
        (400, None, FatalAnswer, None),
        (301, None, TransientError, 0.0),  # one verdict: a redirect is passing trouble
        (429, "42", TransientError, 42.0),
        (429, None, TransientError, 0.0),
        (503, None, TransientError, 0.0),
    ],
)
def test_dynv6_judge(status: int, wait: str | None, outcome: object, min_wait: float) -> None:
    if isinstance(outcome, str):
        assert dynv6.judge(status, "addresses updated\n", "z", wait) == outcome
        return
    with pytest.raises(outcome) as caught:  # type: ignore[call-overload]
        dynv6.judge(status, "addresses updated\n", "z", wait)
    if min_wait is not None:
        assert caught.value.min_wait == min_wait


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('zones = ["myhome"]', "zones"),
        ('zones = ["a..b"]', "zones"),
        ('zones = ["a.dynv6.net"]\nipv6_prefix_length = 129', "ipv6_prefix_length"),
        ('zones = ["a.dynv6.net"]\nurl = "http://dynv6.com/api/update"', "url"),
    ],
)
def test_dynv6_configuration_mistakes(tmp_path: Path, line: str, key: str) -> None:
    table = f'[[provider]]\nname = "v6"\ntype = "dynv6"\ntoken = "t0ken"\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, table)
    assert caught.value.key == f"provider.v6.{key}"


# == deSEC =====================================================================================

HOME = "home.example.dedyn.io"
APEX = "example.dedyn.io"


def desec_table(url: str, *, secret: str = f'token = "{DESEC_TOKEN}"', extra: str = "") -> str:
    return f"""
[[provider]]
name = "desec"
type = "desec"
hostnames = ["{HOME}", "{APEX}"]
url = "{url}"
{secret}
{extra}
"""


@pytest.fixture
def dedyn() -> Iterator[DesecServer]:
    with DesecServer([APEX, "other.dedyn.io"], [DESEC_TOKEN]) as server:
        server.set_records(HOME, a=["198.51.100.1"], aaaa=["2001:db8::1"])
        yield server


def test_desec_ipv4_update_preserves_ipv6(tmp_path: Path, dedyn: DesecServer) -> None:
    cfg = make_config(tmp_path, desec_table(dedyn.update_url))
    report = sync(cfg)
    assert actions(report) == [("desec", 4, "sent")]
    (request,) = dedyn.requests
    assert request.query == {"hostname": f"{HOME},{APEX}", "myipv4": ADDR4, "myipv6": "preserve"}
    assert (request.user, request.password) == (HOME, DESEC_TOKEN)
    assert dedyn.violations == [] and dedyn.errors == []
    home = dedyn.records(HOME)
    assert (home.a, home.aaaa, home.deletions) == ([ADDR4], ["2001:db8::1"], 0)
    assert dedyn.records(APEX).a == [ADDR4]
    assert actions(sync(cfg)) == [("desec", 4, "unchanged")]
    assert len(dedyn.requests) == 1


def test_desec_ipv6_over_ipv6_preserves_ipv4(tmp_path: Path) -> None:
    with DesecServer([APEX], [DESEC_TOKEN], host="::1") as six:
        six.set_records(HOME, a=["198.51.100.1"])
        cfg = make_config(tmp_path, desec_table(six.update_url, extra="ipv4 = false\nipv6 = true"))
        report = sync(cfg, ipv4=ADDR4, ipv6=ADDR6)
        assert actions(report) == [("desec", 6, "sent")]
        (request,) = six.requests
        assert request.client_host == "::1"
        assert (request.query["myipv4"], request.query["myipv6"]) == ("preserve", ADDR6)
        home = six.records(HOME)
        assert (home.a, home.aaaa, home.deletions) == (["198.51.100.1"], [ADDR6], 0)
        assert six.violations == []


@pytest.mark.parametrize(
    ("case", "status", "word"),
    [
        ("wrong-token", 401, "badauth"),
        ("foreign-name", 404, "nohost"),
        ("two-domains", 400, "more than one domain"),
        ("forbidden", 403, "HTTP 403"),
    ],
)
def test_desec_refusals_stop_the_target(
    tmp_path: Path, dedyn: DesecServer, case: str, status: int, word: str
) -> None:
    table = desec_table(dedyn.update_url)
    if case == "wrong-token":
        table = table.replace(DESEC_TOKEN, "not-a-token")
    elif case == "foreign-name":
        table = table.replace(f'"{APEX}"', '"home.elsewhere.dedyn.io"')
    elif case == "two-domains":
        table = table.replace(f'"{APEX}"', '"x.other.dedyn.io"')
    else:
        dedyn.answer_once = (403, "You do not have permission to perform this action.")
    cfg = make_config(tmp_path, table)
    report = sync(cfg)
    assert actions(report) == [("desec", 4, "stopped")], report.targets[0].message
    assert word in report.targets[0].message and report.exit_code == 3
    assert actions(sync(cfg, force=True, ipv4="203.0.113.9")) == [("desec", 4, "stopped")]
    assert len(dedyn.requests) == 1
    assert dedyn.records(HOME).a == ["198.51.100.1"]


def test_desec_throttle_sets_the_least_wait(tmp_path: Path, dedyn: DesecServer) -> None:
    dedyn.rate, dedyn.window = 1, 3600.0
    cfg = make_config(tmp_path, desec_table(dedyn.update_url))
    assert actions(sync(cfg)) == [("desec", 4, "sent")]
    report = sync(cfg, ipv4="203.0.113.8")
    assert actions(report) == [("desec", 4, "failed")]
    assert "throttled" in report.targets[0].message
    assert len(dedyn.requests) == 2  # the 429 was not retried at once
    assert backoff_of(cfg, "desec", 4).retry_after >= time.time() + 3500
    assert actions(sync(cfg, force=True)) == [("desec", 4, "waiting")]
    assert len(dedyn.requests) == 2


def test_desec_two_updates_fit_in_the_window(tmp_path: Path, dedyn: DesecServer) -> None:
    """The documented 2 per 2 minutes per domain: room for one IPv4 and one IPv6 update."""
    cfg = make_config(tmp_path, desec_table(dedyn.update_url))
    assert actions(sync(cfg)) == [("desec", 4, "sent")]
    assert actions(sync(cfg, ipv4="203.0.113.8")) == [("desec", 4, "sent")]
    report = sync(cfg, ipv4="203.0.113.9")
    assert actions(report) == [("desec", 4, "failed")]
    assert backoff_of(cfg, "desec", 4).retry_after >= time.time() + 60
    assert dedyn.records(HOME).a == ["203.0.113.8"]


def test_desec_server_trouble_is_retried(tmp_path: Path, dedyn: DesecServer) -> None:
    dedyn.status = 502
    cfg = make_config(tmp_path, desec_table(dedyn.update_url))
    report = sync(cfg)
    assert actions(report) == [("desec", 4, "failed")]
    assert len(dedyn.requests) == 2


def test_desec_token_never_reaches_the_logs(
    tmp_path: Path, dedyn: DesecServer, debug_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, DESEC_TOKEN)
    cfg = make_config(tmp_path, desec_table(dedyn.update_url, secret=f'token_env = "{TOKEN_ENV}"'))
    report = sync(cfg)
    assert actions(report) == [("desec", 4, "sent")]
    log = debug_log.getvalue()
    assert "HTTP Request: GET" in log
    assert "token" not in dedyn.requests[0].raw_query  # the token rides in the header only
    assert_secret_nowhere(DESEC_TOKEN, cfg, report, log)


@pytest.mark.parametrize(
    ("status", "body", "wait", "outcome", "min_wait"),
    [
        (200, "good", None, "h.example.dedyn.io: good", None),
        (200, "nochg", None, TransientError, 0.0),
        (401, "badauth", None, FatalAnswer, None),
        (401, "Invalid token.", None, FatalAnswer, None),
        (404, "nohost", None, FatalAnswer, None),
        (400, "Cannot update subdomains from more than one domain.", None, FatalAnswer, None),
        (403, "", None, FatalAnswer, None),
        (429, "Request was throttled. Expected available in 57 seconds.", "57", TransientError, 57),
        (429, "Request was throttled. Expected available in 33 seconds.", None, TransientError, 33),
        (429, "", None, TransientError, desec.DEFAULT_THROTTLE_WAIT),
        (429, "", "999999", TransientError, desec.MAX_WAIT),
        (500, "", None, TransientError, 0.0),
        (302, "", None, TransientError, 0.0),  # one verdict: a redirect is passing trouble
    ],
)
def test_desec_judge(
    status: int, body: str, wait: str | None, outcome: object, min_wait: float | None
) -> None:
    if isinstance(outcome, str):
        assert desec.judge(status, body, ["h.example.dedyn.io"], wait) == outcome
        return
    with pytest.raises(outcome) as caught:  # type: ignore[call-overload]
        desec.judge(status, body, ["h.example.dedyn.io"], wait)
    if min_wait is not None:
        assert caught.value.min_wait == min_wait


def test_desec_retry_after_as_a_date() -> None:
    from email.utils import formatdate

    when = formatdate(time.time() + 90, usegmt=True)
    with pytest.raises(TransientError) as caught:
        desec.judge(429, "Request was throttled. Expected available in 33 seconds.", [], when)
    assert 80 <= caught.value.min_wait <= 91


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('hostnames = ["home"]', "hostnames"),
        ("hostnames = []", "hostnames"),
        ('hostnames = ["a.dedyn.io"]\nurl = "https://update.dedyn.io/favicon.ico"', "url"),
        ('hostnames = ["a.dedyn.io"]\nurl = "http://update.dedyn.io/"', "url"),
    ],
)
def test_desec_configuration_mistakes(tmp_path: Path, line: str, key: str) -> None:
    table = f'[[provider]]\nname = "desec"\ntype = "desec"\ntoken = "t0ken"\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, table)
    assert caught.value.key == f"provider.desec.{key}"


def test_insecure_http_allows_a_remote_plain_url(tmp_path: Path) -> None:
    table = (
        '[[provider]]\nname = "desec"\ntype = "desec"\ntoken = "t0ken"\n'
        'hostnames = ["a.dedyn.io"]\nurl = "http://update.dedyn.io/"\ninsecure_http = true\n'
    )
    (settings,) = make_config(tmp_path, table).providers
    assert settings.url == "http://update.dedyn.io/"


# == dyndns2 presets ===========================================================================

EXPECTED_PRESETS = {
    "noip": ("https://dynupdate.no-ip.com/nic/update", 1800.0, 25 * 86400.0),
    "dynu": ("https://api.dynu.com/nic/update", 600.0, 0.0),
    "dyndns": ("https://members.dyndns.org/nic/update", 1800.0, 0.0),
    "ovh": ("https://www.ovh.com/nic/update?system=dyndns", 1800.0, 0.0),
    "strato": ("https://dyndns.strato.com/nic/update", 1800.0, 0.0),
    "variomedia": ("https://dyndns.variomedia.de/nic/update", 1800.0, 0.0),
}


def test_the_presets_are_the_documented_ones() -> None:
    assert set(dyndns2.PRESETS) == set(EXPECTED_PRESETS)
    assert "google" not in " ".join(str(p) for p in dyndns2.PRESETS.values())


@pytest.mark.parametrize("preset", sorted(EXPECTED_PRESETS))
def test_each_preset_fills_the_server(tmp_path: Path, preset: str) -> None:
    table = f"""
[[provider]]
name = "p"
type = "dyndns2"
preset = "{preset}"
hostnames = ["home.example.net"]
username = "me"
password = "pw-123"
"""
    (settings,) = make_config(tmp_path, table).providers
    server, wait_911, keepalive = EXPECTED_PRESETS[preset]
    assert (settings.server, settings.wait_911, settings.keepalive) == (server, wait_911, keepalive)
    assert settings.server.startswith("https://")
    described = client_for(settings).describe(4, ipaddress.ip_address(ADDR4))
    assert described.count("?") == 1 and "hostname=home.example.net" in described


def test_a_preset_and_a_server_conflict(tmp_path: Path) -> None:
    table = """
[[provider]]
name = "p"
type = "dyndns2"
preset = "strato"
server = "https://dyndns.strato.com/nic/update"
hostnames = ["home.example.net"]
username = "me"
password = "pw-123"
"""
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, table)
    assert caught.value.key == "provider.p.server"


def test_a_query_in_the_server_url_is_sent(tmp_path: Path) -> None:
    """OVH's documented URL carries `system=dyndns`; every update must keep it."""
    with Dyndns2Server({"me": "pw-123"}, {"home.example.net": None}) as dyn:
        table = f"""
[[provider]]
name = "p"
type = "dyndns2"
server = "{dyn.update_url}?system=dyndns"
hostnames = ["home.example.net"]
username = "me"
password = "pw-123"
"""
        cfg = make_config(tmp_path, table)
        assert actions(sync(cfg)) == [("p", 4, "sent")]
        (request,) = dyn.requests
        assert request.query == {
            "system": "dyndns",
            "hostname": "home.example.net",
            "myip": ADDR4,
        }
        assert dyn.violations == []


# == the emulators themselves ===================================================================


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    agent = "ddnsagent/0.1.0 (+https://github.com/ddnsagent/ddnsagent)"
    with httpx.Client(timeout=5, trust_env=False, headers={"User-Agent": agent}) as client:
        yield client


def test_duckdns_fake_rules(http: httpx.Client, duck: DuckDNSServer) -> None:
    url = duck.update_url
    assert http.get(url, params={"domains": "myhome", "token": "nope"}).text == "KO"
    assert http.get(url, params={"domains": "theirs", "token": DUCK_TOKEN}).text == "KO"
    assert duck.violations == []
    # Without ip/ipv6 the IPv4 address comes from the connection.
    answer = http.get(url, params={"domains": "myhome.duckdns.org", "token": DUCK_TOKEN})
    assert answer.text == "OK" and duck.domain("myhome").ipv4 == "127.0.0.1"
    answer = http.get(
        url, params={"domains": "myhome", "token": DUCK_TOKEN, "ip": ADDR6, "verbose": "true"}
    )
    assert answer.text == f"OK\n127.0.0.1\n{ADDR6}\nUPDATED"
    answer = http.get(
        url, params={"domains": "myhome", "token": DUCK_TOKEN, "clear": "true", "verbose": "true"}
    )
    assert answer.text == "OK\n\n\nUPDATED"
    assert http.get(url, params={"domains": "myhome", "token": DUCK_TOKEN, "ip": "x"}).text == "KO"
    http.get(url, params={"domains": "myhome", "token": DUCK_TOKEN, "myip": ADDR4})
    assert http.get(duck.url + "/update/myhome/" + DUCK_TOKEN).status_code == 404
    assert duck.violations == [
        "ip='x' is not an address",
        "undocumented parameter 'myip'",
        "request for '/update/myhome/" + DUCK_TOKEN + "'; updates go to /update",
    ]


def test_dynv6_fake_rules(http: httpx.Client, v6: Dynv6Server) -> None:
    url = v6.update_url
    base = {"token": DYNV6_TOKEN}
    assert http.get(url, params={**base, "token": "x", "zone": "lab.v6.rocks"}).status_code == 401
    assert http.get(url, params={**base, "zone": "theirs.dynv6.net"}).status_code == 404
    answer = http.get(url, params={**base, "hostname": "lab.v6.rocks", "ipv4": "auto"})
    assert (answer.status_code, answer.text) == (200, "addresses updated")
    assert v6.zone("lab.v6.rocks").ipv4 == "127.0.0.1"
    answer = http.get(url, params={**base, "zone": "lab.v6.rocks", "ipv4": "127.0.0.1"})
    assert answer.text == "addresses unchanged"
    answer = http.get(url, params={**base, "zone": "lab.v6.rocks", "ipv6prefix": "2001:db8:1::/56"})
    assert v6.zone("lab.v6.rocks").prefix == "2001:db8:1::/56"
    http.get(url, params={**base, "zone": "lab.v6.rocks", "ipv4": "-"})
    assert v6.zone("lab.v6.rocks").ipv4 is None
    assert v6.violations == []
    assert http.get(url, params={**base, "zone": "lab.v6.rocks", "ipv4": ADDR6}).status_code == 400
    assert http.get(url, params={**base, "zone": "lab.v6.rocks", "ip": ADDR4}).status_code == 200
    assert v6.violations == [
        f"ipv4='{ADDR6}' is not an IPv4 address",
        "undocumented parameter 'ip'",
    ]


def test_desec_fake_authentication(http: httpx.Client, dedyn: DesecServer) -> None:
    url, query = dedyn.update_url, {"hostname": HOME, "myipv4": ADDR4, "myipv6": "preserve"}
    dedyn.rate = 0
    assert http.get(url, params=query).status_code == 401
    assert http.get(url, params=query, auth=(HOME, "wrong")).text == "badauth"
    assert http.get(url, params=query, auth=("stranger.example", DESEC_TOKEN)).status_code == 401
    assert http.get(url, params=query, auth=(dedyn.email, DESEC_TOKEN)).text == "good"
    token_header = {"Authorization": f"Token {DESEC_TOKEN}"}
    assert http.get(url, params=query, headers=token_header).text == "good"
    bad_header = {"Authorization": "Token nope"}
    assert http.get(url, params=query, headers=bad_header).text == "Invalid token."
    assert dedyn.violations == []
    in_url = {**query, "username": HOME, "password": DESEC_TOKEN}
    assert http.get(url, params=in_url).text == "good"
    assert dedyn.violations == ["the token was sent in the URL, which deSEC strongly discourages"]


def test_desec_fake_names_and_addresses(http: httpx.Client, dedyn: DesecServer) -> None:
    url, auth = dedyn.update_url, (APEX, DESEC_TOKEN)
    # The Basic user name is the host when `hostname` is absent; no family given: the IPv4
    # connection address for A, and the AAAA record is deleted (with violations noted).
    assert http.get(url + "nic/update", auth=(HOME, DESEC_TOKEN)).text == "good"
    home = dedyn.records(HOME)
    assert (home.a, home.aaaa, home.deletions) == (["127.0.0.1"], [], 1)
    assert len(dedyn.violations) == 2
    dedyn.clear()
    dedyn.rate = 0
    answer = http.get(url, params={"hostname": HOME, "myip": f"{ADDR4},{ADDR6}"}, auth=auth)
    assert answer.text == "good"
    assert (dedyn.records(HOME).a, dedyn.records(HOME).aaaa) == ([ADDR4], [ADDR6])
    answer = http.get(
        url, params={"hostname": HOME, "myipv4": "preserve", "myipv6": "2001:db8:9::/48"}, auth=auth
    )
    assert dedyn.records(HOME).aaaa == ["2001:db8:9::7"]
    assert dedyn.violations == []
    two = {"hostname": f"{HOME},x.other.dedyn.io", "myipv4": ADDR4, "myipv6": "preserve"}
    assert http.get(url, params=two, auth=auth).status_code == 400
    mixed = {"hostname": HOME, "myipv4": f"{ADDR4},preserve", "myipv6": "preserve"}
    assert http.get(url, params=mixed, auth=auth).status_code == 400
    assert http.get(url + "favicon.ico", auth=auth).status_code == 404


def test_desec_fake_throttles_per_domain(http: httpx.Client, dedyn: DesecServer) -> None:
    url, auth = dedyn.update_url, (APEX, DESEC_TOKEN)
    query = {"hostname": HOME, "myipv4": ADDR4, "myipv6": "preserve"}
    assert [http.get(url, params=query, auth=auth).status_code for _ in range(2)] == [200, 200]
    answer = http.get(url, params=query, auth=auth)
    assert answer.status_code == 429
    assert 118 <= int(answer.headers["Retry-After"]) <= 120
    assert answer.text.endswith(f"available in {answer.headers['Retry-After']} seconds.")
    other = {"hostname": "other.dedyn.io", "myipv4": ADDR4, "myipv6": "preserve"}
    assert http.get(url, params=other, auth=auth).status_code == 200  # another domain's window
