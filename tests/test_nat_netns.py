"""Double NAT in network namespaces with a real NAT hop (issue 14 part 5).

    home                       cgnat (the ISP's NAT)                 far (the Internet)
    wan0 100.64.0.2/24  <──>   in0 100.64.0.1   out0 203.0.113.9  <──>  up0 203.0.113.1
         default via .1        nftables: oifname out0 masquerade       echo on 127.0.0.1,
                                                                       DNAT 203.0.113.1:80 to it

The agent runs in `home` with `interface:wan0` and the echo `web:http://203.0.113.1/`; the echo
(tests/fakes/echo.py, answering with the peer it sees) runs in `far` and sees the masqueraded
203.0.113.9. Facts used: nftables' masquerade is source NAT to the outgoing interface's address,
set in a `nat` chain on the postrouting hook, and `dnat to ADDR:PORT` in one on prerouting
(wiki.nftables.org, "Performing Network Address Translation (NAT)"); a packet from outside may
be routed to 127.0.0.0/8 only on an interface with `route_localnet=1` (Linux commit "ipv4: Add
interface option to enable routing of 127.0.0.0/8", Documentation/networking/ip-sysctl.rst) —
which keeps the fake on loopback, as tests/fakes demand.

Only addresses of 100.64.0.0/10 and the documentation ranges, inside namespaces this test makes
and always deletes; nothing routes out of them. Skips without root, `ip` or `nft`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
FAR = "203.0.113.1"
MASQUERADED = "203.0.113.9"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="needs root (creates network namespaces), ip (iproute2) and nft (nftables)",
)


def _run(argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class World:
    """The namespaces made for one case; `close()` stops what runs in them and deletes them."""

    tag: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(3)}")
    made: list[str] = field(default_factory=list)
    echo: subprocess.Popen[str] | None = None

    def ns(self, role: str) -> str:
        return f"ddnsa-nat{role}-{self.tag}"

    def add(self, role: str) -> str:
        name = self.ns(role)
        _run(["ip", "netns", "add", name])
        self.made.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def ip(self, role: str, *args: str) -> None:
        _run(["ip", "-n", self.ns(role), *args])

    def exec(self, role: str, *argv: str, stdin: str | None = None) -> str:
        return _run(["ip", "netns", "exec", self.ns(role), *argv], stdin)

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        self.ip(a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", self.ns(b))
        self.ip(a, "link", "set", a_if, "up")
        self.ip(b, "link", "set", b_if, "up")

    def close(self) -> None:
        if self.echo is not None:
            with contextlib.suppress(Exception):
                if self.echo.stdin is not None:
                    self.echo.stdin.close()
                self.echo.wait(timeout=10)
            if self.echo.poll() is None:
                self.echo.kill()
                self.echo.wait(timeout=10)
        while self.made:
            name = self.made.pop()
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=TIMEOUT
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=TIMEOUT)


def build(home_address: str, *, nat_hop: bool) -> World:
    """home → (cgnat →) far, with the echo in far. `home_address` goes on home's wan0."""
    w = World()
    try:
        for role in ("home", "far") + (("cgnat",) if nat_hop else ()):
            w.add(role)
        if nat_hop:
            gateway = home_address.rsplit(".", 1)[0] + ".1"
            w.link("home", "wan0", "cgnat", "in0")
            w.link("cgnat", "out0", "far", "up0")
            w.ip("cgnat", "addr", "add", f"{gateway}/24", "dev", "in0")
            w.ip("cgnat", "addr", "add", f"{MASQUERADED}/24", "dev", "out0")
            w.exec("cgnat", "sysctl", "-qw", "net.ipv4.ip_forward=1")
            w.exec(
                "cgnat",
                "nft",
                "-f",
                "-",
                stdin="table ip ddnsagent_cgnat {\n chain post {\n"
                "  type nat hook postrouting priority 100; policy accept;\n"
                '  oifname "out0" masquerade\n }\n}\n',
            )
        else:
            gateway = FAR
            w.link("home", "wan0", "far", "up0")
        w.ip("home", "addr", "add", f"{home_address}/24", "dev", "wan0")
        w.ip("home", "route", "add", "default", "via", gateway)
        w.ip("far", "addr", "add", f"{FAR}/24", "dev", "up0")
        w.exec("far", "sysctl", "-qw", "net.ipv4.conf.up0.route_localnet=1")
        w.echo = subprocess.Popen(
            ["ip", "netns", "exec", w.ns("far"), sys.executable, "-m", "tests.test_nat_netns"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        port = _first_line(w.echo, TIMEOUT)
        w.exec(
            "far",
            "nft",
            "-f",
            "-",
            stdin="table ip ddnsagent_far {\n chain pre {\n"
            "  type nat hook prerouting priority -100; policy accept;\n"
            f"  ip daddr {FAR} tcp dport 80 dnat to 127.0.0.1:{int(port)}\n }}\n}}\n",
        )
        return w
    except BaseException:
        w.close()
        raise


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first output line, waited for at most `timeout` seconds."""
    got: list[str] = []
    reader = threading.Thread(
        target=lambda: got.append(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    )
    reader.start()
    reader.join(timeout)
    if not got or not got[0].strip():
        raise AssertionError("the echo in the far namespace did not start")
    return got[0].strip()


@contextlib.contextmanager
def world(home_address: str, *, nat_hop: bool) -> Iterator[World]:
    w = build(home_address, nat_hop=nat_hop)
    try:
        yield w
    finally:
        w.close()


def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[detect]\nipv4 = ["interface:wan0", "web:http://{FAR}/"]\n'
        'accept = "any"\nquorum = 1\ntimeout = "5s"\ninsecure_http = true\n'
    )
    path.chmod(0o600)
    return path


def agent(w: World, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ddnsagent ARGS… --config CFG` in home; what it printed and logged."""
    argv = [sys.executable, "-m", "ddnsagent", *args, "--config", str(cfg)]
    return subprocess.run(
        ["ip", "netns", "exec", w.ns("home"), *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        check=False,
    )


def doctor_nat(w: World, cfg: Path) -> list[dict[str, Any]]:
    """The `nat` findings of `ddnsagent doctor --json` run in home."""
    done = agent(w, cfg, "doctor", "--json")
    assert done.stdout, done.stderr
    return [c for c in json.loads(done.stdout)["checks"] if c["check"] == "nat"]


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "BEHIND ANOTHER NAT" in line]


def test_cgnat_is_said_once_in_the_log_status_and_doctor(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with world("100.64.0.2", nat_hop=True) as w:
        first = agent(w, cfg, "notify-now", "--local", "--json")
        assert json.loads(first.stdout)["detected"]["ipv4"]["address"] == "100.64.0.2"
        (warning,) = warnings_in(first.stderr)
        assert "wan0 holds 100.64.0.2" in warning and MASQUERADED in warning
        assert "carrier-grade NAT" in warning and "cannot reach" in warning
        second = agent(w, cfg, "notify-now", "--local")
        assert warnings_in(second.stderr) == [], second.stderr

        got = json.loads(agent(w, cfg, "status", "--json").stdout)["nat"]["ipv4"]
        assert got["result"] == "cgnat" and got["echo"] == MASQUERADED
        assert got["local"] == ["100.64.0.2"] and got["interface"] == "wan0"
        text = agent(w, cfg, "status").stdout
        assert "ipv4 BEHIND ANOTHER NAT since" in text and "fix: ask the ISP" in text

        (finding,) = doctor_nat(w, cfg)
        assert finding["status"] == "warn" and MASQUERADED in finding["message"]
        assert "carrier-grade NAT" in finding["message"] and "public address" in finding["fix"]


def test_a_private_address_behind_the_nat_is_a_double_nat(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with world("10.0.0.2", nat_hop=True) as w:
        (warning,) = warnings_in(agent(w, cfg, "notify-now", "--local").stderr)
        assert "wan0 holds 10.0.0.2, a private address" in warning and MASQUERADED in warning
        (finding,) = doctor_nat(w, cfg)
        assert finding["status"] == "warn" and "bridge mode" in finding["fix"]


def test_a_public_address_on_the_interface_seen_as_itself_says_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with world(MASQUERADED, nat_hop=False) as w:
        done = agent(w, cfg, "notify-now", "--local")
        assert warnings_in(done.stderr) == [] and "NAT" not in done.stderr, done.stderr
        got = json.loads(agent(w, cfg, "status", "--json").stdout)["nat"]["ipv4"]
        assert got["result"] == "agree" and got["echo"] == MASQUERADED and got["message"] is None
        assert "NAT" not in agent(w, cfg, "status").stdout
        (finding,) = doctor_nat(w, cfg)
        assert finding["status"] == "pass", finding


def test_an_echo_answer_no_interface_holds_is_said(tmp_path: Path) -> None:
    """wan0 holds a public-range address, yet the Internet sees another: a NAT in the way."""
    cfg = config(tmp_path)
    with world("198.51.100.7", nat_hop=True) as w:
        (warning,) = warnings_in(agent(w, cfg, "notify-now", "--local").stderr)
        assert f"the Internet sees {MASQUERADED}, which no interface" in warning
        assert "wan0 holds 198.51.100.7" in warning
        got = json.loads(agent(w, cfg, "status", "--json").stdout)["nat"]["ipv4"]
        assert got["result"] == "elsewhere"
        (finding,) = doctor_nat(w, cfg)
        assert finding["status"] == "warn"


def _serve_echo() -> None:
    """In the far namespace: the echo on loopback, answering with the peer it sees; prints its
    port, ends when its stdin closes (or after ten minutes at most)."""
    from tests.fakes import EchoServer

    with EchoServer(echo_client=True) as server:
        print(server.port, flush=True)
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        done.wait(600)


if __name__ == "__main__":
    _serve_echo()
