"""The unbound backend: configuration, the include file, and a real unbound driven through
unbound-control (started by tests/zones/local_servers.py on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.address import IPAddress
from ddnsagent.errors import ConfigError, ZoneApplyError
from ddnsagent.table import Table
from ddnsagent.zones import owned, registry, unbound
from ddnsagent.zones.base import desired
from tests.zones.local_servers import UnboundServer, lookup

WAN4 = ipaddress.IPv4Address("203.0.113.7")
WAN6 = ipaddress.IPv6Address("2001:db8:1:2::7")
NAS_IID = "::11:22ff:fe33:4455"


def settings_for(**keys: Any) -> unbound.Settings:
    data: dict[str, Any] = {
        "name": "home",
        "type": "unbound",
        "origin": "example.net",
        "names": ["@", "mail"],
        "hosts": {"nas": NAS_IID},
        **keys,
    }
    s = registry.parse_settings(Table(data, "zone.home", Path("/etc/ddnsagent/config.toml")))
    assert isinstance(s, unbound.Settings)
    return s


def apply(settings: unbound.Settings, addresses: dict[int, IPAddress]) -> str:
    backend = registry.backend_for(settings)
    result: str = asyncio.run(backend.apply(desired(settings, addresses)))
    return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UnboundServer]:
    with UnboundServer(tmp_path) as running:
        yield running


def server_settings(server: UnboundServer, **keys: Any) -> unbound.Settings:
    return settings_for(
        include=str(server.include),
        control=list(server.control),
        verify=f"127.0.0.1:{server.port}",
        **keys,
    )


# -- configuration and the file, no server ---------------------------------------------------


def test_defaults() -> None:
    s = settings_for()
    assert s.include == Path("/etc/unbound/unbound.conf.d/ddnsagent.conf")
    assert s.control == ("unbound-control",)
    assert s.verify is None


@pytest.mark.parametrize(
    ("keys", "key"),
    [
        ({"control": []}, "control"),
        ({"include": "ddnsagent.conf"}, "include"),
        ({"names": ['mail"x']}, "names"),
        ({"hosts": {"nas box": NAS_IID}}, "hosts.nas box"),
        ({"origin": "exa#mple.net"}, "origin"),
        ({"pidfile": "/run/x.pid"}, "pidfile"),
    ],
)
def test_configuration_errors_name_the_key(keys: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(**keys)
    assert f"zone.home.{key}" in str(caught.value)


def test_render_parse_round_trip(tmp_path: Path) -> None:
    s = settings_for(include=str(tmp_path / "x.conf"), ttl=120)
    records = owned.carry_over(s, desired(s, {4: WAN4, 6: WAN6}), {})
    text = unbound.render(s, records)
    assert text.startswith('# Managed by ddnsagent (zone "home"')
    assert "\nserver:\n" in text
    assert '    local-data: "mail.example.net. 120 IN A 203.0.113.7"\n' in text
    assert '    local-data: "nas.example.net. 120 IN AAAA 2001:db8:1:2:11:22ff:fe33:4455"\n' in text
    assert unbound.parse(text) == records
    assert owned.owner(text) == "home"


def test_a_missing_family_keeps_its_records_and_old_names_go() -> None:
    s = settings_for()
    before: owned.Records = {
        "example.net.": {4: [ipaddress.ip_address("192.0.2.1")], 6: [WAN6]},
        "nas.example.net.": {6: [ipaddress.ip_address("2001:db8::11")]},
        "gone.example.net.": {4: [ipaddress.ip_address("192.0.2.9")]},
    }
    now = owned.carry_over(s, desired(s, {4: WAN4}), before)
    assert now == {
        "example.net.": {4: [WAN4], 6: [WAN6]},
        "mail.example.net.": {4: [WAN4]},
        "nas.example.net.": {6: [ipaddress.ip_address("2001:db8::11")]},
    }


def test_a_foreign_file_is_never_overwritten(tmp_path: Path) -> None:
    include = tmp_path / "mine.conf"
    include.write_text('server:\n  local-data: "x.example.net. A 192.0.2.1"\n')
    s = settings_for(include=str(include), control=["/nonexistent/unbound-control"])
    with pytest.raises(ZoneApplyError, match="not written by ddnsagent"):
        apply(s, {4: WAN4})
    assert "192.0.2.1" in include.read_text()


def test_a_file_of_another_zone_is_refused(tmp_path: Path) -> None:
    include = tmp_path / "ddnsagent.conf"
    other = settings_for(include=str(include), name="other")
    include.write_text(unbound.render(other, {}))
    with pytest.raises(ZoneApplyError, match='belongs to zone "other"'):
        apply(settings_for(include=str(include)), {4: WAN4})


def test_missing_unbound_control_is_reported_after_writing(tmp_path: Path) -> None:
    include = tmp_path / "ddnsagent.conf"
    s = settings_for(include=str(include), control=["/nonexistent/unbound-control"])
    with pytest.raises(ZoneApplyError, match="cannot run /nonexistent/unbound-control"):
        apply(s, {4: WAN4})
    assert unbound.parse(include.read_text())["mail.example.net."] == {4: [WAN4]}


# -- a real unbound --------------------------------------------------------------------------


def test_apply_loads_records_into_the_running_server(server: UnboundServer) -> None:
    s = server_settings(server)
    message = apply(s, {4: WAN4, 6: WAN6})
    assert "serves them" in message
    assert lookup(server.port, "example.net.", 4) == {str(WAN4)}
    assert lookup(server.port, "mail.example.net.", 6) == {str(WAN6)}
    assert lookup(server.port, "nas.example.net.", 6) == {"2001:db8:1:2:11:22ff:fe33:4455"}
    assert lookup(server.port, "nas.example.net.", 4) == set()

    # A new address replaces the old one (local_data alone would add to it).
    apply(s, {4: ipaddress.IPv4Address("198.51.100.20"), 6: WAN6})
    assert lookup(server.port, "mail.example.net.", 4) == {"198.51.100.20"}

    # The records survive a restart: unbound reads them from the include file.
    server.restart()
    assert lookup(server.port, "mail.example.net.", 4) == {"198.51.100.20"}
    assert lookup(server.port, "nas.example.net.", 6) == {"2001:db8:1:2:11:22ff:fe33:4455"}


def test_an_update_without_ipv6_keeps_the_aaaa_records(server: UnboundServer) -> None:
    s = server_settings(server)
    apply(s, {4: WAN4, 6: WAN6})
    apply(s, {4: ipaddress.IPv4Address("198.51.100.20")})
    assert lookup(server.port, "mail.example.net.", 4) == {"198.51.100.20"}
    assert lookup(server.port, "mail.example.net.", 6) == {str(WAN6)}
    assert lookup(server.port, "nas.example.net.", 6) == {"2001:db8:1:2:11:22ff:fe33:4455"}
    assert unbound.parse(server.include.read_text())["mail.example.net."][6] == [WAN6]


def test_a_name_dropped_from_the_configuration_is_removed(server: UnboundServer) -> None:
    apply(server_settings(server), {4: WAN4})
    assert lookup(server.port, "mail.example.net.", 4) == {str(WAN4)}
    apply(server_settings(server, names=["@"], hosts={}), {4: WAN4})
    assert lookup(server.port, "mail.example.net.", 4) == set()
    assert lookup(server.port, "example.net.", 4) == {str(WAN4)}
    assert "mail.example.net." not in server.include.read_text()


def test_server_down_writes_the_file_and_reports(server: UnboundServer) -> None:
    s = server_settings(server)
    server.stop()
    with pytest.raises(ZoneApplyError) as caught:
        apply(s, {4: WAN4})
    message = str(caught.value)
    assert f"wrote 2 records to {server.include}" in message
    assert "local_datas_remove` failed (exit 1" in message
    assert "next start or reload" in message
    # The next start serves what the file holds.
    server.start()
    assert lookup(server.port, "mail.example.net.", 4) == {str(WAN4)}


def test_verify_reports_records_the_server_does_not_serve(server: UnboundServer) -> None:
    wanted: owned.Records = {"other.example.net.": {4: [WAN4]}, "example.net.": {6: [WAN6]}}
    with pytest.raises(ZoneApplyError) as caught:
        asyncio.run(owned.check_served(("127.0.0.1", server.port), wanted, 2, 0.01))
    assert str(caught.value) == (
        f"127.0.0.1 port {server.port} does not serve the new records: "
        "other.example.net. A is empty; example.net. AAAA is empty"
    )


def test_describe_names_file_command_and_records(tmp_path: Path) -> None:
    s = settings_for(include=str(tmp_path / "d.conf"))
    text = unbound.Backend(s).describe(desired(s, {4: WAN4}))
    assert str(tmp_path / "d.conf") in text
    assert "unbound-control" in text
    assert "mail.example.net. A 203.0.113.7" in text
