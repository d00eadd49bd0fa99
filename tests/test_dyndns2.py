"""dyndns2 as the services document it (issue 12, items 11–14), against tests/fakes/dyndns2.py.

Dual stack per service, a refused name stopping only itself, `good 127.0.0.1` and `badsys`,
and the `user_agent` key. The emulator cites where each rule comes from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddnsagent import USER_AGENT, cli, config, http
from ddnsagent.errors import ConfigError, FatalAnswer
from ddnsagent.outcome import SyncReport
from ddnsagent.providers import client_for, dyndns2
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions, reset
from tests.fakes import Dyndns2Server

PASSWORD = "s3cret-Pa55word"
V4, V6 = "203.0.113.7", "2001:db8::7"
HOSTS = ("home.example.net", "mail.example.net")


def make_config(tmp_path: Path, providers: str, agent: str = "") -> config.Config:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[agent]
state_dir = "{tmp_path / "state"}"
retries = 1
retry_delay = "0s"
{agent}
[detect]
ipv4 = ["web:http://127.0.0.1:9/"]
ipv6 = ["web:http://[::1]:9/"]
accept = "any"
timeout = "2s"
{providers}
"""
    )
    os.chmod(path, 0o600)
    return config.load(path)


def table(server: str, hostnames: tuple[str, ...] = HOSTS, extra: str = "") -> str:
    names = ", ".join(f'"{h}"' for h in hostnames)
    return f"""
[[provider]]
name = "dd"
type = "dyndns2"
server = "{server}"
hostnames = [{names}]
username = "me"
password = "{PASSWORD}"
{extra}
"""


def sync(cfg: config.Config, **addresses: str) -> SyncReport:
    given = {int(k[-1]): ipaddress.ip_address(v) for k, v in (addresses or {"ipv4": V4}).items()}
    return asyncio.run(Agent(cfg).sync(SyncOptions(addresses=given)))


def actions(report: SyncReport) -> list[tuple[str, int, str]]:
    return [(t.name, t.family, t.action) for t in report.targets]


@pytest.fixture
def dyn() -> Iterator[Dyndns2Server]:
    with Dyndns2Server({"me": PASSWORD}, dict.fromkeys(HOSTS, "198.51.100.1,2001:db8::1")) as s:
        yield s


# -- 11. dual stack ------------------------------------------------------------------------------


def test_combined_keeps_both_records_where_the_service_replaces_them(
    tmp_path: Path, dyn: Dyndns2Server
) -> None:
    dyn.family_rule = "replace"  # Dyn: an IPv4-only update deletes the AAAA
    cfg = make_config(tmp_path, table(dyn.update_url, extra='ipv6 = true\ndual_stack = "combined"'))
    report = sync(cfg, ipv4=V4, ipv6=V6)
    assert actions(report) == [("dd", 4, "sent"), ("dd", 6, "sent")]
    (request,) = dyn.requests  # one request carried both; the IPv6 entry says so
    assert request.query["myip"] == f"{V4},{V6}"
    assert "in one request with IPv4" in report.targets[1].message
    assert [(dyn.record(h).ipv4, dyn.record(h).ipv6) for h in HOSTS] == [(V4, V6)] * 2
    # Only IPv4 changes: the request still names the IPv6 address, so the AAAA stays.
    report = sync(cfg, ipv4="203.0.113.8", ipv6=V6)
    assert actions(report) == [("dd", 4, "sent"), ("dd", 6, "unchanged")]
    assert dyn.requests[-1].query["myip"] == f"203.0.113.8,{V6}"
    assert dyn.record(HOSTS[0]).ipv6 == V6
    # IPv6 not detected this time: the address last sent for it is carried instead.
    sync(cfg, ipv4="203.0.113.9")
    assert dyn.requests[-1].query["myip"] == f"203.0.113.9,{V6}"
    assert dyn.record(HOSTS[0]).ipv6 == V6
    assert dyn.violations == []


def test_separate_requests_lose_a_record_where_the_service_replaces_them(
    tmp_path: Path, dyn: Dyndns2Server
) -> None:
    """Why the Dyn-like presets combine: the emulator catches a client that does not."""
    dyn.family_rule = "replace"
    cfg = make_config(tmp_path, table(dyn.update_url, extra="ipv6 = true"))  # default: separate
    sync(cfg, ipv4=V4, ipv6=V6)
    assert [r.query["myip"] for r in dyn.requests] == [V4, V6]
    assert (dyn.record(HOSTS[0]).ipv4, dyn.record(HOSTS[0]).ipv6) == (None, V6)


def test_separate_is_the_default_and_fine_where_the_service_keeps_the_other(
    tmp_path: Path, dyn: Dyndns2Server
) -> None:
    cfg = make_config(tmp_path, table(dyn.update_url, extra="ipv6 = true"))
    assert cfg.providers[0].dual_stack == "separate"  # type: ignore[attr-defined]
    sync(cfg, ipv4=V4, ipv6=V6)
    assert [r.query["myip"] for r in dyn.requests] == [V4, V6]
    assert (dyn.record(HOSTS[0]).ipv4, dyn.record(HOSTS[0]).ipv6) == (V4, V6)


def preset_settings(tmp_path: Path, preset: str, server: str, ipv6: bool) -> dyndns2.Settings:
    text = f"""
[[provider]]
name = "p"
type = "dyndns2"
preset = "{preset}"
hostnames = ["{HOSTS[0]}"]
username = "me"
password = "{PASSWORD}"
ipv6 = {str(ipv6).lower()}
"""
    (settings,) = make_config(tmp_path, text).providers
    assert isinstance(settings, dyndns2.Settings)
    return dataclasses.replace(settings, server=server)  # the preset's rules, our emulator


async def send_both(settings: dyndns2.Settings, v6: str | None) -> list[str]:
    client = client_for(settings)
    addresses = {4: ipaddress.ip_address(V4)}
    if v6:
        addresses[6] = ipaddress.ip_address(v6)
    client.prepare(addresses, {}, set())  # type: ignore[attr-defined]
    async with http.client(None, 5.0) as session:
        return [await client.update(f, a, session) for f, a in addresses.items()]


# preset → (the emulator's rule for that service, the query both families go out as)
DUAL = {
    "dyndns": ("replace", {"myip": f"{V4},{V6}"}),
    "strato": ("keep", {"myip": f"{V4},{V6}"}),
    "variomedia": ("keep", {"myip": f"{V4},{V6}"}),
    "noip": ("keep", {"myip": V4, "myipv6": V6}),
    "dynu": ("dynu", {"myip": V4, "myipv6": V6}),
}


@pytest.mark.parametrize("preset", sorted(DUAL))
def test_each_preset_sends_both_families_as_its_service_documents(
    tmp_path: Path, dyn: Dyndns2Server, preset: str
) -> None:
    rule, query = DUAL[preset]
    dyn.family_rule = rule
    dyn.pretend_peer = "2001:db8::bad"  # what Dynu would read from an IPv6 connection
    settings = preset_settings(tmp_path, preset, dyn.update_url, ipv6=True)
    asyncio.run(send_both(settings, V6))
    (request,) = dyn.requests
    assert {k: v for k, v in request.query.items() if k != "hostname"} == query
    assert (dyn.record(HOSTS[0]).ipv4, dyn.record(HOSTS[0]).ipv6) == (V4, V6)
    assert dyn.violations == []


def test_dynu_ipv4_only_says_myipv6_no(tmp_path: Path, dyn: Dyndns2Server) -> None:
    """Dynu fills a missing `myipv6` from the connection; `no` keeps the AAAA as it is."""
    dyn.family_rule = "dynu"
    dyn.pretend_peer = "2001:db8::bad"  # the request happened to leave over IPv6
    settings = preset_settings(tmp_path, "dynu", dyn.update_url, ipv6=False)
    asyncio.run(send_both(settings, None))
    assert dyn.requests[0].query["myipv6"] == "no"
    assert (dyn.record(HOSTS[0]).ipv4, dyn.record(HOSTS[0]).ipv6) == (V4, "2001:db8::1")
    # What a client that leaves the parameter out would have done:
    dyn.requests.clear()
    settings = preset_settings(tmp_path / "b", "dyndns", dyn.update_url, ipv6=False)
    asyncio.run(send_both(settings, None))
    assert dyn.record(HOSTS[0]).ipv6 == "2001:db8::bad"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('dual_stack = "both"', "dual_stack"),
        ('preset = "strato"\ndual_stack = "combined"', "dual_stack"),
        ('preset = "ovh"\nipv6 = true', "ipv6"),
    ],
)
def test_dual_stack_mistakes_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    text = table("https://dyn.example.net/nic/update", extra=extra)
    if "preset" in extra:
        text = text.replace('server = "https://dyn.example.net/nic/update"\n', "")
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, text)
    assert caught.value.key == f"provider.dd.{key}"


def test_new_keys_at_their_defaults_leave_the_fingerprint_alone(tmp_path: Path) -> None:
    """An upgrade alone must not lift stops or resend every address."""
    (settings,) = make_config(tmp_path, table("https://dyn.example.net/nic/update")).providers
    data = settings.fingerprint_data()
    assert "user_agent" not in data and "dual_stack" not in data
    changed = dataclasses.replace(settings, user_agent="x/1 a@example.net", dual_stack="combined")
    assert "user_agent='x/1" in changed.fingerprint_data()
    assert "dual_stack='combined'" in changed.fingerprint_data()


# -- 12. one refused name in a batch -------------------------------------------------------------


def test_one_nohost_in_a_batch_of_twenty_stops_only_that_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tuple(f"h{i}.example.net" for i in range(20))
    typo = names[7]
    with Dyndns2Server({"me": PASSWORD}, {n: None for n in names if n != typo}) as dyn:
        cfg = make_config(tmp_path, table(dyn.update_url, names))
        report = sync(cfg)
        assert actions(report) == [("dd", 4, "sent")]
        (request,) = dyn.requests
        assert request.query["hostname"].split(",") == list(names)
        message = report.targets[0].message
        assert f"{typo}: nohost — STOPPED" in message and f"{names[8]}: good" in message
        assert typo in (report.targets[0].fix or "") and "reset dd" in (report.targets[0].fix or "")
        assert all(dyn.record(n).ipv4 == V4 for n in names if n != typo)
        target = Store.of(cfg.agent).load().targets["dd"]
        assert target.stopped is None and set(target.stopped_names) == {typo}
        assert "nohost" in target.stopped_names[typo].reason
        # `status` names it, in text and JSON, beside the target that goes on
        path = str(tmp_path / "config.toml")
        cli.main(["status", "--config", path])
        assert f"  {typo} STOPPED since" in capsys.readouterr().out
        cli.main(["status", "--json", "--config", path])
        (shown,) = json.loads(capsys.readouterr().out)["targets"]
        assert list(shown["stopped_names"]) == [typo] and shown["stopped"] is None
        # A new process, a new address: the 19 others go on, the stopped name is not sent.
        report = sync(cfg, ipv4="203.0.113.8")
        assert actions(report) == [("dd", 4, "sent")]
        assert typo not in dyn.requests[-1].query["hostname"].split(",")
        assert len(dyn.requests[-1].query["hostname"].split(",")) == 19
        assert dyn.record(names[0]).ipv4 == "203.0.113.8"
        # `ddnsagent reset dd` lifts it: the name is asked for again.
        assert reset(Store.of(cfg.agent), "dd")
        sync(cfg, ipv4="203.0.113.9")
        assert typo in dyn.requests[-1].query["hostname"].split(",")


def test_every_name_refused_stops_the_target(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, table(dyn.update_url, ("a.example.net", "b.example.net")))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "stopped")]
    assert "nohost" in report.targets[0].message and "b.example.net" in report.targets[0].message
    assert actions(sync(cfg, ipv4="203.0.113.8")) == [("dd", 4, "stopped")]
    assert len(dyn.requests) == 1


def test_a_stopped_name_is_lifted_by_a_config_change(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, table(dyn.update_url, (*HOSTS, "typo.example.net")))
    sync(cfg)
    assert set(Store.of(cfg.agent).load().targets["dd"].stopped_names) == {"typo.example.net"}
    fixed = make_config(tmp_path, table(dyn.update_url))
    assert actions(sync(fixed)) == [("dd", 4, "sent")]
    assert Store.of(cfg.agent).load().targets["dd"].stopped_names == {}


def test_one_answer_line_for_many_names_cannot_stop_only_one() -> None:
    with pytest.raises(FatalAnswer, match="one answer for 2 hostnames"):
        dyndns2.judge(200, "nohost\n", list(HOSTS), 1800)


# -- 13. good 127.0.0.1 and badsys ---------------------------------------------------------------


def test_good_127_0_0_1_is_an_ignored_update_and_stops(tmp_path: Path, dyn: Dyndns2Server) -> None:
    dyn.refused_agents = ("ddnsagent/",)  # the service does not accept our client …
    dyn.agent_refusal = "good 127.0.0.1"  # … and says so as Dyn does
    cfg = make_config(tmp_path, table(dyn.update_url))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "stopped")]
    assert "ignored" in report.targets[0].message
    assert "user_agent" in (report.targets[0].fix or "")
    assert dyn.record(HOSTS[0]).ipv4 == "198.51.100.1"  # nothing changed
    assert actions(sync(cfg, ipv4="203.0.113.8")) == [("dd", 4, "stopped")]
    assert len(dyn.requests) == 1


def test_good_127_0_0_1_is_success_when_asked_for() -> None:
    answered = dyndns2.judge_batch(200, "good 127.0.0.1\n", [HOSTS[0]], 1800, sent=("127.0.0.1",))
    assert answered.message == f"{HOSTS[0]}: good" and answered.stops == {}


def test_badsys_is_fatal(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, table(dyn.update_url + "?system=bogus"))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "stopped")]
    assert "badsys" in report.targets[0].message and "system" in (report.targets[0].fix or "")
    assert len(dyn.requests) == 1  # not retried: retries cannot help


# -- 14. user_agent ------------------------------------------------------------------------------


def test_default_user_agent_names_version_and_project(tmp_path: Path, dyn: Dyndns2Server) -> None:
    dyn.require_contact = True  # No-IP's rule: program/version and a contact
    cfg = make_config(tmp_path, table(dyn.update_url))
    assert actions(sync(cfg)) == [("dd", 4, "sent")]
    assert dyn.requests[0].header("user-agent") == USER_AGENT
    assert dyn.violations == []


def test_user_agent_global_and_per_provider(tmp_path: Path, dyn: Dyndns2Server) -> None:
    dyn.require_contact = True
    mine = "Example ddnsagent/0.1 admin@example.net"
    cfg = make_config(tmp_path, table(dyn.update_url), agent=f'user_agent = "{mine}"')
    assert actions(sync(cfg)) == [("dd", 4, "sent")]
    assert dyn.requests[-1].header("user-agent") == mine
    own = "Home mailbox/2.0 postmaster@example.net"
    cfg = make_config(
        tmp_path / "b",
        table(dyn.update_url, extra=f'user_agent = "{own}"'),
        agent=f'user_agent = "{mine}"',
    )
    sync(cfg)
    assert dyn.requests[-1].header("user-agent") == own
    assert dyn.violations == []


def test_user_agent_without_contact_is_refused_by_a_noip_like_service(
    tmp_path: Path, dyn: Dyndns2Server
) -> None:
    dyn.require_contact = True
    cfg = make_config(tmp_path, table(dyn.update_url, extra='user_agent = "homebox/1.0"'))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "stopped")] and "badagent" in report.targets[0].message
    assert "user_agent" in (report.targets[0].fix or "")


def test_a_secret_in_the_user_agent_is_never_sent(tmp_path: Path, dyn: Dyndns2Server) -> None:
    cfg = make_config(tmp_path, table(dyn.update_url, extra=f'user_agent = "x/1 {PASSWORD}"'))
    report = sync(cfg)
    assert actions(report) == [("dd", 4, "config")]
    assert PASSWORD not in report.targets[0].message and "user_agent" in report.targets[0].message
    assert dyn.requests == []


@pytest.mark.parametrize("value", ["", " x/1", "x/1\\nInjected: 1", "ddnsagent/1 ü@example.net"])
def test_bad_user_agent_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, "", agent=f'user_agent = "{value}"')
    assert caught.value.key == "agent.user_agent"
    with pytest.raises(ConfigError) as caught:
        make_config(
            tmp_path, table("https://dyn.example.net/nic/update", extra=f'user_agent = "{value}"')
        )
    assert caught.value.key == "provider.dd.user_agent"
