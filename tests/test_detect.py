"""Detection against local echo servers that agree, disagree, lie or ramble."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.detect import settings
from ddnsagent.detect.dns import parse_dns_source
from ddnsagent.detect.finder import detect
from ddnsagent.detect.settings import DetectConfig, Source
from ddnsagent.errors import ConfigError
from ddnsagent.outcome import Detection
from ddnsagent.table import Table
from tests.fakes import EchoServer
from tests.fakes.dnsecho import DnsEchoServer

ROOT = Path(__file__).resolve().parent.parent


def src(text: str) -> Source:
    kind, _, arg = text.partition(":")
    return Source(kind, arg, text)


def run(*sources: str, family: int = 4, quorum: int = 2, accept: str = "any") -> Detection:
    cfg = DetectConfig(
        ipv4=tuple(src(s) for s in sources) if family == 4 else (),
        ipv6=tuple(src(s) for s in sources) if family == 6 else (),
        accept=accept,
        quorum=quorum,
        timeout=1.0,
    )
    return asyncio.run(detect(cfg, family))


@pytest.fixture
def echoes() -> Iterator[list[EchoServer]]:
    servers = [EchoServer("203.0.113.7\n") for _ in range(3)]
    for s in servers:
        s.start()
    yield servers
    for s in servers:
        s.stop()


def web(server: EchoServer) -> str:
    return f"web:{server.echo_url}"


def test_two_agreeing_echoes(echoes: list[EchoServer]) -> None:
    d = run(web(echoes[0]), web(echoes[1]))
    assert str(d.address) == "203.0.113.7"
    assert d.notes == []
    assert len(echoes[0].requests) == len(echoes[1].requests) == 1


def test_disagreement_means_no_address_and_names_both(echoes: list[EchoServer]) -> None:
    echoes[1].answer = "203.0.113.99"
    d = run(web(echoes[0]), web(echoes[1]), web(echoes[2]))
    assert d.address is None and d.conflict
    (note,) = d.notes
    assert echoes[0].echo_url in note and "203.0.113.7" in note
    assert echoes[1].echo_url in note and "203.0.113.99" in note


def test_failed_source_is_replaced_by_the_next(echoes: list[EchoServer]) -> None:
    echoes[0].status = 503
    d = run(web(echoes[0]), web(echoes[1]), web(echoes[2]))
    assert str(d.address) == "203.0.113.7"
    assert any("HTTP 503" in n for n in d.notes)
    assert len(echoes[2].requests) == 1


def test_quorum_not_reached(echoes: list[EchoServer]) -> None:
    echoes[0].status = 500
    d = run(web(echoes[0]), web(echoes[1]))
    assert d.address is None and not d.conflict
    assert any("quorum" in n for n in d.notes)


def test_single_source_needs_no_quorum(echoes: list[EchoServer]) -> None:
    assert str(run(web(echoes[0])).address) == "203.0.113.7"


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ("10.0.0.5\n", "private"),
        ("100.64.3.4", "carrier-grade NAT"),
        ("<html><body>Current IP Address: 8.8.8.8</body></html>", "words instead of one"),
        ("<html>", "not an address"),
        ("8.8.8.8\n8.8.4.4\n", "2 words"),
        ("2001:db8::1", "IPv6 address"),
        ("", "empty"),
    ],
)
def test_lying_or_rambling_echo_is_refused(
    echoes: list[EchoServer], answer: str, fragment: str
) -> None:
    echoes[0].answer = answer
    d = run(web(echoes[0]), accept="global")
    assert d.address is None
    assert fragment in d.notes[0]
    assert echoes[0].echo_url in d.notes[0]


def test_documentation_address_refused_under_global(echoes: list[EchoServer]) -> None:
    d = run(web(echoes[0]), accept="global")
    assert d.address is None and "refused" in d.notes[0]


def test_huge_echo_body_is_cut_off(echoes: list[EchoServer]) -> None:
    echoes[0].huge_body = 10 * 1024 * 1024
    d = run(web(echoes[0]))
    assert d.address is None and "larger than" in d.notes[0]


def test_slow_echo_times_out(echoes: list[EchoServer]) -> None:
    echoes[0].delay = 3
    d = run(web(echoes[0]))
    assert d.address is None and "timed out" in d.notes[0]


def test_ipv6_echo_over_ipv6() -> None:
    with EchoServer(echo_client=True, host="::1") as six:
        d = run(f"web:{six.echo_url}", family=6)
        assert str(d.address) == "::1"


def test_ipv4_question_does_not_leave_over_ipv6() -> None:
    with EchoServer("203.0.113.7", host="::1") as six:
        d = run(f"web:{six.echo_url}", family=4)
        assert d.address is None and "cannot connect" in d.notes[0]
        assert six.requests == []


def test_dns_echo() -> None:
    with DnsEchoServer() as server:
        d = run(server.source)
        assert str(d.address) == "127.0.0.1"
        assert server.queries == [("myip.opendns.com.", "A", "127.0.0.1")]


def test_dns_echo_ipv6() -> None:
    with DnsEchoServer(host="::1") as server:
        d = run(server.source, family=6)
        assert str(d.address) == "::1"
        assert server.queries[0][1] == "AAAA"


@pytest.mark.parametrize(
    ("knob", "fragment"),
    [("nx", "NXDOMAIN"), ("two", "2 records"), ("none", "0 records"), ("silent", "no answer")],
)
def test_dns_echo_failures(knob: str, fragment: str) -> None:
    with DnsEchoServer() as server:
        source = server.source
        if knob == "nx":
            server.qname = "other.example."
        elif knob == "two":
            server.answers = ["203.0.113.1", "203.0.113.2"]
        elif knob == "none":
            server.answers = []
        else:
            server.silent = True
        d = run(source)
        assert d.address is None and fragment in d.notes[0]


def test_dns_and_web_form_a_quorum(echoes: list[EchoServer]) -> None:
    with DnsEchoServer() as server:
        server.answers = ["203.0.113.7"]
        d = run(server.source, web(echoes[0]))
        assert str(d.address) == "203.0.113.7"
        assert "dns:" in (d.source or "") and "web:" in (d.source or "")


def test_command_source(tmp_path: Path) -> None:
    script = tmp_path / "wanip"
    script.write_text("#!/bin/sh\necho 203.0.113.44\n")
    script.chmod(0o755)
    assert str(run(f"command:{script}").address) == "203.0.113.44"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("echo oops >&2; exit 3", "status 3 oops"),
        ("sleep 5", "killed"),
        ("echo not-an-ip", "not an address"),
    ],
)
def test_command_source_failures(tmp_path: Path, body: str, fragment: str) -> None:
    script = tmp_path / "wanip"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    d = run(f"command:{script}")
    assert d.address is None and fragment in d.notes[0]


def test_missing_command(tmp_path: Path) -> None:
    d = run(f"command:{tmp_path}/nope")
    assert d.address is None and "cannot run" in d.notes[0]


def test_local_source_decides_before_remote(echoes: list[EchoServer], tmp_path: Path) -> None:
    script = tmp_path / "wanip"
    script.write_text("#!/bin/sh\necho 203.0.113.44\n")
    script.chmod(0o755)
    d = run(f"command:{script}", web(echoes[0]), web(echoes[1]))
    assert str(d.address) == "203.0.113.44"
    assert echoes[0].requests == []


def test_missing_interface_falls_through_to_web(echoes: list[EchoServer]) -> None:
    d = run("interface:nosuchif0", web(echoes[0]), web(echoes[1]))
    assert str(d.address) == "203.0.113.7"
    assert "no interface named nosuchif0" in d.notes[0]


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to create a network namespace",
)


@needs_root
def test_interface_source_in_a_network_namespace(tmp_path: Path) -> None:
    """A WAN interface with a point-to-point address, as pppd sets it up, in a namespace."""
    ns = f"ddnsa-det-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:

        def sh(*cmd: str) -> None:
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)

        sh("ip", "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
        sh("ip", "link", "set", "wan0p", "up")
        sh("ip", "link", "set", "wan0", "up")
        sh("ip", "addr", "add", "10.0.0.2/24", "dev", "wan0")
        sh("ip", "addr", "add", "203.0.113.5", "peer", "198.51.100.1", "dev", "wan0")
        sh("ip", "-6", "addr", "add", "2001:db8::5/64", "dev", "wan0", "nodad")
        config = tmp_path / "config.toml"
        config.write_text(
            f'[agent]\nstate_dir = "{tmp_path}/state"\n'
            '[detect]\nipv4 = ["interface:wan0"]\nipv6 = ["interface:wan0"]\naccept = "any"\n'
        )
        config.chmod(0o600)

        def dry_run_json() -> dict[str, Any]:
            """What `notify-now --dry-run --json` reports from inside the namespace."""
            out = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    "-m",
                    "ddnsagent",
                    "notify-now",
                    "--dry-run",
                    "--json",
                    "--config",
                    str(config),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
            )
            report: dict[str, Any] = json.loads(out.stdout)
            return report

        report = dry_run_json()
        # 10.0.0.2 is listed first but private; with accept = "any" the lowest address wins.
        assert report["detected"]["ipv4"]["address"] in ("10.0.0.2", "203.0.113.5")
        assert report["detected"]["ipv6"]["address"] == "2001:db8::5"
        config.write_text(config.read_text().replace('accept = "any"', 'accept = "global"'))
        report = dry_run_json()
        assert report["detected"]["ipv4"]["address"] is None
        notes = " ".join(report["detected"]["ipv4"]["notes"])
        assert "203.0.113.5" in notes and "10.0.0.2" in notes and "private" in notes
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.mark.parametrize(
    ("arg", "family", "server", "port"),
    [
        ("myip@127.0.0.1", 4, "127.0.0.1", 53),
        ("myip@127.0.0.1:5353", 4, "127.0.0.1", 5353),
        ("myip@::1", 6, "::1", 53),
        ("myip@[::1]", 6, "::1", 53),
        ("myip@[::1]:5353", 6, "::1", 5353),
    ],
)
def test_dns_source_names_its_server(arg: str, family: int, server: str, port: int) -> None:
    echo = parse_dns_source(arg, family)
    assert (echo.qname, echo.server, echo.port) == ("myip", server, port)


@pytest.mark.parametrize(
    ("arg", "family", "fragment"),
    [
        ("myip@resolver.example", 4, "must be an IP address"),
        ("myip@127.0.0.1:0", 4, "port"),
        ("myip@127.0.0.1:dns", 4, "port"),
        ("myip@[::1]junk", 6, "[ADDRESS]:PORT"),
        ("myip@::1", 4, "IPv4 address"),
        ("@127.0.0.1", 4, "dns:opendns"),
    ],
)
def test_dns_source_refusals(arg: str, family: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_dns_source(arg, family)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("command:/usr/local/bin/wanip 'unclosed", "cannot be split into words"),
        ("command:", "names no command"),
        ("dns:myip@[::1]:99999", "port"),
        ("gopher:x", "unknown source"),
    ],
)
def test_detect_section_refusals(source: str, fragment: str) -> None:
    table = Table({"ipv4": [source]}, "detect", Path("/etc/ddnsagent/config.toml"))
    with pytest.raises(ConfigError, match=re.escape(fragment)) as caught:
        settings.from_table(table)
    assert caught.value.key == "detect.ipv4[0]"
