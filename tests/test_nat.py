"""Double NAT and CGNAT (issue 14 part 5): the verdict, when it is asked for, the episode said
once, the state, `status` and `doctor` — without root: the kernel's address list is replaced by
a table the test writes, and the echo is a local EchoServer.

The network-namespace test with a real NAT hop (nftables masquerade) is test_nat_netns.py.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import ddnsagent.sync as sync_mod
from ddnsagent import cli
from ddnsagent.config import AgentConfig, Config
from ddnsagent.detect import nat, netlink
from ddnsagent.detect.finder import crosscheck
from ddnsagent.detect.nat import judge
from ddnsagent.detect.netlink import InterfaceAddress
from ddnsagent.detect.settings import DetectConfig, Source
from ddnsagent.doctor import Options
from ddnsagent.doctor.nat import check_nat
from ddnsagent.store import NatCheck, Store
from ddnsagent.sync import Agent, SyncOptions
from tests.fakes import EchoServer

ip = ipaddress.ip_address

# The echo's answer when it must pass accept = "global": only text in an HTTP body served on
# loopback; nothing ever connects to it.
PUBLIC = "8.8.8.8"


def src(text: str) -> Source:
    kind, _, arg = text.partition(":")
    return Source(kind, arg, text)


# -- the verdict (pure) ----------------------------------------------------------------------


def test_an_interface_in_the_cgnat_range_and_a_public_echo_is_cgnat() -> None:
    v = judge("ppp0", [ip("100.64.0.2")], [ip("100.64.0.2"), ip("192.168.1.5")], ip(PUBLIC))
    assert v is not None and v.kind == nat.CGNAT and v.nat
    assert v.local == ("100.64.0.2",) and v.echo == PUBLIC


def test_a_private_interface_address_is_a_double_nat() -> None:
    v = judge("eth0", [ip("10.0.0.2")], [ip("10.0.0.2")], ip(PUBLIC))
    assert v is not None and v.kind == nat.PRIVATE


def test_a_public_interface_address_the_echo_does_not_see_is_elsewhere() -> None:
    v = judge("ppp0", [ip("198.51.100.7")], [ip("198.51.100.7")], ip("203.0.113.9"))
    assert v is not None and v.kind == nat.ELSEWHERE


def test_the_same_address_on_both_sides_is_fine() -> None:
    v = judge("eth0", [ip("203.0.113.9")], [ip("203.0.113.9")], ip("203.0.113.9"))
    assert v is not None and v.kind == nat.AGREE and not v.nat


def test_an_echo_answer_held_by_another_interface_is_no_nat() -> None:
    """A second uplink, or IPv6 whose global address is on the LAN side: nothing to say."""
    v = judge("ppp0", [ip("100.64.0.2")], [ip("100.64.0.2"), ip(PUBLIC)], ip(PUBLIC))
    assert v is not None and v.kind == nat.AGREE
    v6 = judge("ppp0", [ip("fe80::1"), ip("fd00::2")], [ip("2001:db8::5")], ip("2001:db8::5"))
    assert v6 is not None and v6.kind == nat.AGREE


def test_an_interface_with_only_link_local_addresses_is_not_judged() -> None:
    assert judge("ppp0", [ip("fe80::1")], [ip("fe80::1")], ip("2001:db8::5")) is None
    assert judge("ppp0", [], [ip("10.0.0.2")], ip(PUBLIC)) is None


def test_a_cgnat_address_outweighs_a_private_one_on_the_same_interface() -> None:
    v = judge("ppp0", [ip("10.0.0.2"), ip("100.100.1.1")], [], ip(PUBLIC))
    assert v is not None and v.kind == nat.CGNAT


# -- when to compare ------------------------------------------------------------------------

IFACE_AND_WEB = (src("interface:ppp0"), src("web"))


def kept(tried: float, checked: float | None, result: str = "agree") -> NatCheck:
    return NatCheck(tried=tried, result=result, checked=checked, local=PUBLIC)


def test_no_interface_source_means_no_comparison_ever() -> None:
    """Behind a home router with an echo-only configuration the router's NAT is expected."""
    assert nat.due((src("web"),), "web:https://api.ipify.org/", PUBLIC, None, True, 0.0) is None


def test_an_echo_answer_with_an_interface_source_is_compared_for_free() -> None:
    by = "web:https://a/ + web:https://b/"
    how = nat.due(IFACE_AND_WEB, by, PUBLIC, kept(9.0, 9.0), False, 10.0)
    assert how == "free"


def test_an_interface_that_answered_alone_is_compared_first_after_a_change_and_daily() -> None:
    by = "interface:ppp0"
    now = 1_000_000.0
    assert nat.due(IFACE_AND_WEB, by, PUBLIC, None, False, now) == "ask"  # first time
    assert nat.due(IFACE_AND_WEB, by, PUBLIC, kept(now - 60, now - 60), False, now) is None
    assert (
        nat.due(IFACE_AND_WEB, by, PUBLIC, kept(now - 60, now - 60), True, now) == "ask"
    )  # changed
    day = kept(now - nat.DAY, now - nat.DAY)
    assert nat.due(IFACE_AND_WEB, by, PUBLIC, day, False, now) == "ask"
    failed = kept(now - 60, now - nat.DAY)  # a try a minute ago did not come to a verdict
    assert nat.due(IFACE_AND_WEB, by, PUBLIC, failed, False, now) is None
    retry = kept(now - nat.RETRY, None, "unknown")
    assert nat.due(IFACE_AND_WEB, by, PUBLIC, retry, False, now) == "ask"
    # The interface answers alone with an address other than the one last compared.
    assert nat.due(IFACE_AND_WEB, by, "8.8.4.4", kept(now, now), False, now) == "ask"


def test_nothing_is_asked_without_an_echo_source_or_for_a_command_source() -> None:
    assert nat.due((src("interface:ppp0"),), "interface:ppp0", PUBLIC, None, True, 0.0) is None
    sources = (src("interface:ppp0"), src("command:/bin/wanip"), src("web"))
    assert nat.due(sources, "command:/bin/wanip", PUBLIC, None, True, 0.0) is None
    assert nat.due(IFACE_AND_WEB, None, None, None, True, 0.0) is None  # nothing detected


# -- the words ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", nat.NAT_KINDS)
def test_every_episode_says_nat_mail_and_what_to_check(kind: str) -> None:
    message, fix = nat.words(kind, "ppp0", "100.64.0.2", "203.0.113.9")
    assert "ppp0" in message and "100.64.0.2" in message and "203.0.113.9" in message
    assert "NAT" in message and "mail" in message
    assert fix


def test_the_words_name_cgnat_bridge_mode_and_a_public_address() -> None:
    message, fix = nat.words(nat.CGNAT, "ppp0", "100.64.0.2", "203.0.113.9")
    assert "carrier-grade NAT" in message and "cannot reach" in message
    assert "public address" in fix and "IPv6" in fix
    message, fix = nat.words(nat.PRIVATE, "eth0", "10.0.0.2", "203.0.113.9")
    assert "bridge mode" in fix and "port 25" in fix


# -- the agent: a fake kernel address table and a local echo ---------------------------------


@pytest.fixture
def addresses(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The machine's addresses by interface, as the test writes them; netlink reads these."""
    table: dict[str, list[str]] = {"lo": ["127.0.0.1"]}

    def listed(ifname: str | None = None, family: int | None = None) -> list[InterfaceAddress]:
        if ifname is not None and ifname not in table:
            raise netlink.InterfaceNotFound(ifname)
        out = []
        for i, (name, texts) in enumerate(sorted(table.items())):
            for text in texts:
                a = ip(text)
                if (ifname is None or name == ifname) and family in (None, a.version):
                    scope = 254 if a.is_loopback else 0
                    out.append(InterfaceAddress(name, i + 1, a, 24, scope=scope))
        return out

    monkeypatch.setattr(netlink, "list_addresses", listed)
    return table


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer(PUBLIC + "\n") as server:
        yield server


def make_config(tmp_path: Path, echo: EchoServer, *sources: str, accept: str = "global") -> Config:
    detect = DetectConfig(
        ipv4=tuple(src(s.replace("ECHO", f"web:{echo.echo_url}")) for s in sources),
        accept=accept,
        quorum=1,
        timeout=2.0,
    )
    return Config(tmp_path / "config.toml", AgentConfig(state_dir=tmp_path / "state"), detect, ())


def sync(cfg: Config) -> Any:
    return asyncio.run(Agent(cfg).sync(SyncOptions()))


def nat_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "BEHIND ANOTHER NAT" in r.getMessage()
    ]


def test_a_refused_cgnat_interface_falls_through_to_the_echo_and_is_said_once(
    tmp_path: Path,
    addresses: dict[str, list[str]],
    echo: EchoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The default configuration (interface:ppp0, then web) on a CGNAT line: the accept policy
    refuses 100.64.0.2 and the echo's address is published — the double NAT, noticed from the
    answers the sync has anyway: no extra request, one warning for the episode."""
    addresses["ppp0"] = ["100.64.0.2"]
    cfg = make_config(tmp_path, echo, "interface:ppp0", "ECHO")
    with caplog.at_level(logging.DEBUG, logger="ddnsagent"):
        for _ in range(3):
            report = sync(cfg)
            assert str(report.detections[4].address) == PUBLIC
    assert len(echo.requests) == 3  # one per sync, as the detection alone asks
    (warning,) = nat_warnings(caplog)
    assert "ppp0 holds 100.64.0.2" in warning and PUBLIC in warning
    assert "carrier-grade NAT" in warning
    state = Store.of(cfg.agent).load()
    assert state.nat[4].result == nat.CGNAT and state.nat[4].echo == PUBLIC
    first = state.nat[4].since

    # The pair changes (the CGNAT gave another public address): said again, once.
    caplog.clear()
    echo.answer = "8.8.4.4\n"
    with caplog.at_level(logging.INFO, logger="ddnsagent"):
        sync(cfg)
        sync(cfg)
    (again,) = nat_warnings(caplog)
    assert "8.8.4.4" in again
    assert Store.of(cfg.agent).load().nat[4].since != first

    # A public address on ppp0 at last (and the echo sees it): the episode ends, in one line.
    caplog.clear()
    addresses["ppp0"] = ["8.8.4.4"]
    with caplog.at_level(logging.INFO, logger="ddnsagent"):
        sync(cfg)
    assert nat_warnings(caplog) == []
    assert any("agree now" in r.getMessage() for r in caplog.records)
    assert Store.of(cfg.agent).load().nat[4].result == nat.AGREE


def test_an_interface_that_answers_alone_is_compared_once_then_daily(
    tmp_path: Path,
    addresses: dict[str, list[str]],
    echo: EchoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """interface:wan0 holds a public address and decides alone: the echo is asked at the first
    sync (and after a change, and daily), never at every sync."""
    addresses["wan0"] = [PUBLIC]
    cfg = make_config(tmp_path, echo, "interface:wan0", "ECHO")
    with caplog.at_level(logging.WARNING, logger="ddnsagent"):
        for _ in range(4):
            report = sync(cfg)
            assert report.detections[4].source == "interface:wan0"
    assert len(echo.requests) == 1
    assert nat_warnings(caplog) == []
    assert Store.of(cfg.agent).load().nat[4].result == nat.AGREE

    # The interface's address changes, and the echo sees another one no interface holds.
    addresses["wan0"] = ["8.8.4.4"]
    with caplog.at_level(logging.WARNING, logger="ddnsagent"):
        sync(cfg)
        sync(cfg)
    assert len(echo.requests) == 2
    (warning,) = nat_warnings(caplog)
    assert "no interface of this machine holds" in warning
    assert Store.of(cfg.agent).load().nat[4].result == nat.ELSEWHERE


def test_an_echo_only_configuration_behind_a_router_says_nothing(
    tmp_path: Path,
    addresses: dict[str, list[str]],
    echo: EchoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    addresses["eth0"] = ["192.168.1.10"]
    cfg = make_config(tmp_path, echo, "ECHO")
    with caplog.at_level(logging.DEBUG, logger="ddnsagent"):
        sync(cfg)
    assert nat_warnings(caplog) == []
    assert Store.of(cfg.agent).load().nat == {}


def test_a_failed_echo_is_retried_after_an_hour_not_at_every_sync(
    tmp_path: Path,
    addresses: dict[str, list[str]],
    echo: EchoServer,
) -> None:
    addresses["wan0"] = [PUBLIC]
    echo.status = 503
    cfg = make_config(tmp_path, echo, "interface:wan0", "ECHO")
    sync(cfg)
    sync(cfg)
    assert len(echo.requests) == 1
    check = Store.of(cfg.agent).load().nat[4]
    assert check.result == "unknown" and check.checked is None


def test_dry_run_and_given_addresses_compare_nothing(
    tmp_path: Path, addresses: dict[str, list[str]], echo: EchoServer
) -> None:
    addresses["ppp0"] = ["100.64.0.2"]
    cfg = make_config(tmp_path, echo, "interface:ppp0", "ECHO")
    asyncio.run(Agent(cfg).sync(SyncOptions(dry_run=True)))
    asyncio.run(Agent(cfg).sync(SyncOptions(addresses={4: ip("198.51.100.7")})))
    assert Store.of(cfg.agent).load().nat == {}


def test_crosscheck_asks_the_given_echoes(
    tmp_path: Path, addresses: dict[str, list[str]], echo: EchoServer
) -> None:
    addresses["ppp0"] = ["10.0.0.2"]
    cfg = make_config(tmp_path, echo, "interface:ppp0")
    verdict, notes = asyncio.run(crosscheck(cfg.detect, 4))
    assert verdict is None and "no echo source" in notes[0]
    given = (src(f"web:{echo.echo_url}"),)
    verdict, notes = asyncio.run(crosscheck(cfg.detect, 4, None, given))
    assert verdict is not None and verdict.kind == nat.PRIVATE, notes


# -- the state, status and doctor -----------------------------------------------------------


def test_the_record_survives_the_file_and_a_wrong_one_is_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    with store.edit() as state:
        state.nat[4] = NatCheck(5.0, nat.CGNAT, 5.0, "ppp0", "100.64.0.2", PUBLIC, 4.0)
        state.nat[6] = NatCheck(6.0)
    assert store.load().nat == {
        4: NatCheck(5.0, nat.CGNAT, 5.0, "ppp0", "100.64.0.2", PUBLIC, 4.0),
        6: NatCheck(6.0),
    }
    data = json.loads(store.path.read_text())
    data["nat"]["6"] = {"tried": "yesterday"}
    store.path.write_text(json.dumps(data))
    assert list(store.load().nat) == [4]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[detect]\nipv4 = ["interface:ppp0", "web"]\n'
    )
    path.chmod(0o600)
    return path


def status(tmp_path: Path, *args: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        cli.main(["--config", str(write_config(tmp_path)), "status", *args])
    return out.getvalue()


def test_status_shows_the_episode_in_text_and_json(tmp_path: Path) -> None:
    assert json.loads(status(tmp_path, "--json"))["nat"] == {}
    with Store(tmp_path / "state").edit() as state:
        state.nat[4] = NatCheck(5.0, nat.CGNAT, 5.0, "ppp0", "100.64.0.2", PUBLIC, 4.0)
    got = json.loads(status(tmp_path, "--json"))["nat"]["ipv4"]
    assert got["result"] == "cgnat" and got["local"] == ["100.64.0.2"] and got["echo"] == PUBLIC
    assert got["since"] == 4.0 and got["checked"] == got["tried"] == 5.0
    assert "carrier-grade NAT" in got["message"] and "public address" in got["fix"]
    text = status(tmp_path)
    assert "ipv4 BEHIND ANOTHER NAT since" in text and "100.64.0.2" in text
    assert "fix: ask the ISP for a public address" in text


def test_status_says_nothing_when_they_agree(tmp_path: Path) -> None:
    with Store(tmp_path / "state").edit() as state:
        state.nat[4] = NatCheck(5.0, nat.AGREE, 5.0, "ppp0", PUBLIC, PUBLIC, 4.0)
    assert "NAT" not in status(tmp_path)
    assert json.loads(status(tmp_path, "--json"))["nat"]["ipv4"]["message"] is None


def test_doctor_asks_both_and_warns(
    tmp_path: Path, addresses: dict[str, list[str]], echo: EchoServer
) -> None:
    cfg = make_config(tmp_path, echo, "interface:ppp0", "ECHO")
    addresses["ppp0"] = ["100.64.0.2"]
    (finding,) = check_nat(cfg, Options())
    assert finding.status == "warn" and "carrier-grade NAT" in finding.message
    assert finding.fix and "public address" in finding.fix
    addresses["ppp0"] = [PUBLIC]
    (finding,) = check_nat(cfg, Options())
    assert finding.status == "pass", finding
    del addresses["ppp0"]
    (finding,) = check_nat(cfg, Options())
    assert finding.status == "skip" and "ppp0" in finding.message


def test_doctor_without_an_interface_source_says_nothing_and_asks_nothing(
    tmp_path: Path, echo: EchoServer
) -> None:
    cfg = make_config(tmp_path, echo, "ECHO")
    assert check_nat(cfg, Options()) == []
    assert echo.requests == []


def test_doctor_asks_the_echoes_it_is_given_when_the_config_has_none(
    tmp_path: Path, addresses: dict[str, list[str]], echo: EchoServer
) -> None:
    addresses["eth0"] = ["10.0.0.2"]
    cfg = make_config(tmp_path, echo, "interface:eth0", accept="any")
    (finding,) = check_nat(cfg, Options(echoes=(echo.echo_url,)))
    assert finding.status == "warn" and "private address" in finding.message
    assert len(echo.requests) == 1


def test_a_failing_comparison_never_fails_the_sync(
    tmp_path: Path,
    addresses: dict[str, list[str]],
    echo: EchoServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug in the comparison")

    monkeypatch.setattr(sync_mod, "crosscheck", broken)
    addresses["ppp0"] = ["100.64.0.2"]
    cfg = make_config(tmp_path, echo, "interface:ppp0", "ECHO")
    with caplog.at_level(logging.ERROR, logger="ddnsagent"):
        report = sync(cfg)
    assert str(report.detections[4].address) == PUBLIC and report.exit_code == 0
    assert any("comparing the interface" in r.getMessage() for r in caplog.records)
    assert Store.of(cfg.agent).load().nat[4].result == "unknown"
