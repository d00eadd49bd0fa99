"""The dnsmasq backend: configuration, the hosts file, the pidfile checks, and a real dnsmasq
(started by tests/zones/local_servers.py on 127.0.0.1) that must serve the new addresses after
the SIGHUP."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.address import IPAddress
from ddnsagent.errors import ConfigError, ZoneApplyError
from ddnsagent.table import Table
from ddnsagent.zones import dnsmasq, owned, registry
from ddnsagent.zones.base import desired
from tests.zones.local_servers import DnsmasqServer, lookup, wait_for

WAN4 = ipaddress.IPv4Address("203.0.113.7")
WAN6 = ipaddress.IPv6Address("2001:db8:1:2::7")
NAS_IID = "::11:22ff:fe33:4455"
NAS6 = "2001:db8:1:2:11:22ff:fe33:4455"


def settings_for(**keys: Any) -> dnsmasq.Settings:
    data: dict[str, Any] = {
        "name": "home",
        "type": "dnsmasq",
        "origin": "example.net",
        "names": ["@", "mail"],
        "hosts": {"nas": NAS_IID},
        **keys,
    }
    s = registry.parse_settings(Table(data, "zone.home", Path("/etc/ddnsagent/config.toml")))
    assert isinstance(s, dnsmasq.Settings)
    return s


def apply(settings: dnsmasq.Settings, addresses: dict[int, IPAddress]) -> str:
    result: str = asyncio.run(registry.backend_for(settings).apply(desired(settings, addresses)))
    return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DnsmasqServer]:
    with DnsmasqServer(tmp_path) as running:
        yield running


def server_settings(server: DnsmasqServer, **keys: Any) -> dnsmasq.Settings:
    given: dict[str, Any] = {
        "hosts_file": str(server.hosts_file),
        "pidfile": str(server.pidfile),
        "verify": f"127.0.0.1:{server.port}",
    }
    return settings_for(**{**given, **keys})


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait(5)


# -- configuration, the file and the pidfile, no server --------------------------------------


def test_defaults() -> None:
    s = settings_for()
    assert s.hosts_file == Path("/var/lib/ddnsagent/dnsmasq.hosts")
    assert s.pidfile == Path("/run/dnsmasq/dnsmasq.pid")


@pytest.mark.parametrize(
    ("keys", "key"),
    [
        ({"hosts_file": "dnsmasq.hosts"}, "hosts_file"),
        ({"pidfile": "dnsmasq.pid"}, "pidfile"),
        ({"names": ["mail#x"]}, "names"),
        ({"include": "/etc/x.conf"}, "include"),
    ],
)
def test_configuration_errors_name_the_key(keys: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(**keys)
    assert f"zone.home.{key}" in str(caught.value)


def test_hosts_file_lines_and_round_trip() -> None:
    s = settings_for(names=["@", "mail", "www.dept"])
    records = owned.carry_over(s, desired(s, {4: WAN4, 6: WAN6}), {})
    text = dnsmasq.render(s, records)
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "203.0.113.7 example.net",
        "2001:db8:1:2::7 example.net",
        "203.0.113.7 mail.example.net mail",
        "2001:db8:1:2::7 mail.example.net mail",
        "203.0.113.7 www.dept.example.net",
        "2001:db8:1:2::7 www.dept.example.net",
        f"{NAS6} nas.example.net nas",
    ]
    assert dnsmasq.parse(text) == records


def test_missing_pidfile_is_reported_after_writing(tmp_path: Path) -> None:
    hosts = tmp_path / "h.hosts"
    s = settings_for(hosts_file=str(hosts), pidfile=str(tmp_path / "none.pid"))
    with pytest.raises(ZoneApplyError) as caught:
        apply(s, {4: WAN4})
    assert str(caught.value) == (
        f"wrote 2 records to {hosts}, but {tmp_path}/none.pid does not exist: is dnsmasq "
        "running? start dnsmasq (it reads the hosts file at start), or set pidfile to its "
        "--pid-file"
    )
    assert "203.0.113.7 mail.example.net mail" in hosts.read_text()


@pytest.mark.parametrize("content", ["0", "-1", "", "12ab"])
def test_a_pidfile_without_a_process_id_is_refused(tmp_path: Path, content: str) -> None:
    pidfile = tmp_path / "bad.pid"
    pidfile.write_text(content + "\n")
    with pytest.raises(ZoneApplyError, match="not a process id"):
        dnsmasq.hang_up(pidfile)


def test_stale_pidfile_is_a_clear_error(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait(5)
    pidfile = tmp_path / "stale.pid"
    pidfile.write_text(f"{gone.pid}\n")
    s = settings_for(hosts_file=str(tmp_path / "h.hosts"), pidfile=str(pidfile))
    with pytest.raises(ZoneApplyError, match=rf"is stale: no process {gone.pid} is running"):
        apply(s, {4: WAN4})


def test_another_program_behind_the_pid_is_not_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    s = settings_for(hosts_file=str(tmp_path / "h.hosts"), pidfile=str(pidfile))
    with pytest.raises(ZoneApplyError, match=rf"process {sleeper.pid}, which is 'sleep'"):
        apply(s, {4: WAN4})
    # SIGHUP would have ended sleep.
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(0.2)


def test_a_foreign_hosts_file_is_never_overwritten(tmp_path: Path) -> None:
    hosts = tmp_path / "h.hosts"
    hosts.write_text("192.0.2.1 printer.lan\n")
    s = settings_for(hosts_file=str(hosts), pidfile=str(tmp_path / "none.pid"))
    with pytest.raises(ZoneApplyError, match="not written by ddnsagent"):
        apply(s, {4: WAN4})
    assert hosts.read_text() == "192.0.2.1 printer.lan\n"


# -- a real dnsmasq --------------------------------------------------------------------------


def test_apply_is_served_after_sighup(server: DnsmasqServer) -> None:
    # dnsmasq started before the file existed. Written without a signal, it is not read:
    assert not server.hosts_file.exists()
    unsignalled = server_settings(server, pidfile=str(server.directory / "elsewhere.pid"))
    with pytest.raises(ZoneApplyError, match="does not exist"):
        apply(unsignalled, {4: WAN4})
    assert lookup(server.port, "mail.example.net.", 4) == set()
    # With the SIGHUP it is.
    s = server_settings(server)
    message = apply(s, {4: WAN4, 6: WAN6})
    assert f"sent SIGHUP to dnsmasq (pid {server.pid})" in message
    assert "serves them" in message
    assert lookup(server.port, "mail.example.net.", 4) == {str(WAN4)}
    assert lookup(server.port, "example.net.", 6) == {str(WAN6)}
    assert lookup(server.port, "nas.example.net.", 6) == {NAS6}

    apply(s, {4: ipaddress.IPv4Address("198.51.100.20"), 6: WAN6})
    assert lookup(server.port, "mail.example.net.", 4) == {"198.51.100.20"}


def test_a_new_prefix_renumbers_the_lan_host(server: DnsmasqServer) -> None:
    s = server_settings(server)
    apply(s, {4: WAN4, 6: WAN6})
    assert lookup(server.port, "nas.example.net.", 6) == {NAS6}
    apply(s, {4: WAN4, 6: ipaddress.IPv6Address("2001:db8:9:8::1")})
    assert lookup(server.port, "nas.example.net.", 6) == {"2001:db8:9:8:11:22ff:fe33:4455"}
    assert lookup(server.port, "mail.example.net.", 6) == {"2001:db8:9:8::1"}


def test_an_update_without_ipv6_keeps_the_aaaa_records(server: DnsmasqServer) -> None:
    s = server_settings(server)
    apply(s, {4: WAN4, 6: WAN6})
    apply(s, {4: ipaddress.IPv4Address("198.51.100.20")})
    assert lookup(server.port, "mail.example.net.", 4) == {"198.51.100.20"}
    assert lookup(server.port, "mail.example.net.", 6) == {str(WAN6)}
    assert lookup(server.port, "nas.example.net.", 6) == {NAS6}


def test_stopped_dnsmasq_reads_the_file_when_started(server: DnsmasqServer) -> None:
    s = server_settings(server)
    server.stop()
    with pytest.raises(ZoneApplyError, match=r"is stale|does not exist"):
        apply(s, {4: WAN4})
    server.start()
    wait_for(
        lambda: lookup(server.port, "mail.example.net.", 4) == {str(WAN4)},
        "restarted dnsmasq serves the file",
    )
