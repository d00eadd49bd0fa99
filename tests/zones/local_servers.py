"""Real unbound and dnsmasq for the zone backends' tests, each on 127.0.0.1 at a free high port,
with its own configuration in a temporary directory and nothing read from /etc.

Neither server can reach beyond loopback: unbound refuses every name outside its local zones,
and sends from 127.0.0.1 only if it ever tried; dnsmasq has no upstream servers. Both run in the
foreground as children of the test, as the current user, and are stopped in `__exit__`.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
START_TIMEOUT = 10.0


def program(name: str) -> str | None:
    """`name` on PATH or in the sbin directories, which a normal user's PATH may lack."""
    return shutil.which(name, path=_SBIN_PATH)


def require(*names: str) -> list[str]:
    """The programs' paths, or skip the test naming the package that brings them."""
    paths = [program(n) for n in names]
    missing = [n for n, p in zip(names, paths, strict=True) if p is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (apt-get install unbound dnsmasq-base; "
            ".ci/run installs them)"
        )
    return [p for p in paths if p is not None]


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP, as a DNS server needs both."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1 for UDP and TCP after 50 tries")


def lookup(port: int, name: str, family: int = 4) -> set[str]:
    """The A (family 4) or AAAA (6) addresses 127.0.0.1:`port` answers for `name`."""
    rdtype = dns.rdatatype.A if family == 4 else dns.rdatatype.AAAA
    answer = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", 2.0, port)
    return {
        str(ipaddress.ip_address(rr.address))
        for rrset in answer.answer
        if rrset.rdtype == rdtype
        for rr in rrset
    }


def wait_for(
    check: Callable[[], bool], what: str, timeout: float = 5.0, step: float = 0.05
) -> None:
    """Poll `check` until it is true; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(step)


class _Server:
    """A server process in the foreground; subclasses give its argv and readiness check."""

    name = "server"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.log = directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        assert self.process is None, "already running"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def answers(self) -> bool:
        """True once the DNS port gives any answer at all (REFUSED included)."""
        try:
            query = dns.message.make_query("ready.invalid.", dns.rdatatype.A)
            dns.query.udp(query, "127.0.0.1", 0.5, self.port)
        except (dns.exception.DNSException, OSError):
            return False
        return True


class UnboundServer(_Server):
    """unbound with remote control on 127.0.0.1 (no certificates), a `local-zone` for `zone`
    and `include` read with include-toplevel:, as Debian's unbound.conf reads conf.d."""

    name = "unbound"

    def __init__(self, directory: Path, zone: str = "example.net.", zone_type: str = "static"):
        super().__init__(directory)
        self.unbound, self.unbound_control = require("unbound", "unbound-control")
        self.control_port = free_port()
        self.conf = directory / "unbound.conf"
        self.include = directory / "ddnsagent.conf"
        self.control = (self.unbound_control, "-c", str(self.conf))
        # A plain include of a missing file stops unbound at start; an empty one is the agent's.
        self.include.touch()
        self.conf.write_text(
            "server:\n"
            "    interface: 127.0.0.1\n"
            f"    port: {self.port}\n"
            "    do-ip6: no\n"
            '    username: ""\n'
            '    chroot: ""\n'
            f'    directory: "{directory}"\n'
            f'    pidfile: "{directory}/unbound.pid"\n'
            "    use-syslog: no\n"
            '    logfile: ""\n'
            "    verbosity: 1\n"
            '    module-config: "iterator"\n'
            "    outgoing-interface: 127.0.0.1\n"
            '    local-zone: "." refuse\n'
            f'    local-zone: "{zone}" {zone_type}\n'
            "remote-control:\n"
            "    control-enable: yes\n"
            "    control-interface: 127.0.0.1\n"
            f"    control-port: {self.control_port}\n"
            "    control-use-cert: no\n"
            f'include-toplevel: "{self.include}"\n'
        )

    def argv(self) -> list[str]:
        return [self.unbound, "-d", "-c", str(self.conf)]

    def ready(self) -> bool:
        status = subprocess.run(
            [*self.control, "status"], capture_output=True, timeout=10, check=False
        )
        return status.returncode == 0 and self.answers()


class DnsmasqServer(_Server):
    """dnsmasq serving only `hosts_file` (--addn-hosts, --no-hosts), with its pid in `pidfile`
    (--keep-in-foreground writes one; --no-daemon would not)."""

    name = "dnsmasq"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        (self.dnsmasq,) = require("dnsmasq")
        self.hosts_file = directory / "dnsmasq.hosts"
        self.pidfile = directory / "dnsmasq.pid"

    def argv(self) -> list[str]:
        return [
            self.dnsmasq,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            f"--addn-hosts={self.hosts_file}",
            "--log-facility=-",
            f"--pid-file={self.pidfile}",
            # Stay the current user: the temporary directory is private to it.
            f"--user={getpass.getuser()}",
            f"--group={grp.getgrgid(os.getegid()).gr_name}",
        ]

    def ready(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pidfile.read_text()) == self.pid and self.answers()
        return False

    @property
    def pid(self) -> int:
        assert self.process is not None, "not running"
        return self.process.pid
