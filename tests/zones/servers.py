"""Real name servers on loopback for the zone-backend tests.

`Named` runs BIND's named and `Knot` runs knotd, each in its own directory with its own
configuration, on 127.0.0.1 and a free high port, never touching the system's instances or port
53. Named gets an rndc control channel on its own port with its own key; both get a TSIG key
for dynamic updates. Start-up waits a bounded time for the server to answer, and the context
manager stops the server whatever happened (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

_SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])


def tool(name: str) -> str | None:
    return shutil.which(name, path=_SBIN)


NAMED = tool("named")
RNDC = tool("rndc")
KNOTD = tool("knotd")
CHECKZONE = tool("named-checkzone")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

MISSING_BIND = "named/rndc not installed (Debian packages bind9 bind9-utils; .ci/run installs them)"


def _apparmor_confines_named() -> bool:
    """Debian's AppArmor profile for named allows /etc/bind, /var/lib/bind and /var/cache/bind
    only: enforced, it keeps named from reading test directories under /tmp."""
    try:
        profiles = Path("/sys/kernel/security/apparmor/profiles").read_text()
    except OSError:
        return False
    return any(
        line.startswith(("/usr/sbin/named (enforce)", "named (enforce)"))
        for line in profiles.splitlines()
    )


if NAMED is not None and RNDC is not None and _apparmor_confines_named():
    NAMED = None
    MISSING_BIND = (
        "AppArmor enforces named's profile, which forbids files under /tmp: "
        "run `aa-complain /usr/sbin/named` (apparmor-utils) to run these tests"
    )
MISSING_KNOT = "knotd not installed (Debian package knot; .ci/run installs it)"


def free_port() -> int:
    """A port of 127.0.0.1 free for UDP and TCP at the time of asking."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            if port >= 1024:
                return port
    raise RuntimeError("no free port on 127.0.0.1")


@dataclass(frozen=True)
class TsigKey:
    name: str
    secret: str  # base64
    algorithm: str = "hmac-sha256"

    @classmethod
    def new(cls, name: str) -> TsigKey:
        return cls(name, base64.b64encode(secrets.token_bytes(32)).decode())

    def bind_text(self) -> str:
        return (
            f'key "{self.name}" {{\n\talgorithm {self.algorithm};\n\tsecret "{self.secret}";\n}};\n'
        )

    def write(self, path: Path) -> Path:
        """A BIND key file, mode 0600."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.bind_text())
        os.chmod(path, 0o600)
        return path


@dataclass
class Zone:
    """One zone a server loads: `file` (relative to the server's directory) and its text.
    A `dynamic` zone accepts updates signed with the server's TSIG key: BIND grants the key
    `grant` (an update-policy rule), Knot an ACL with action update."""

    origin: str  # without the trailing dot
    text: str
    file: str = ""
    dynamic: bool = False
    grant: str = "zonesub ANY"  # BIND update-policy rule for the TSIG key

    def __post_init__(self) -> None:
        if not self.file:
            self.file = f"db.{self.origin}"


class _Server:
    """The start/stop logic both servers share."""

    program = ""
    log_name = "server.log"

    def __init__(self, workdir: Path, zones: list[Zone]) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.zones = zones
        self.port = 0
        self.key = TsigKey.new("ddns-key")
        self.key_file = self.key.write(self.dir / "ddns.key")
        self.log = self.dir / self.log_name
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def path(self, origin: str) -> Path:
        zone = next(z for z in self.zones if z.origin == origin)
        return self.dir / zone.file

    def __enter__(self) -> Self:
        try:
            for zone in self.zones:
                (self.dir / zone.file).write_text(zone.text, encoding="utf-8")
            for _ in range(3):  # another process may take the port between choice and bind
                self.choose_ports()
                self.write_config()
                with self.log.open("ab") as log:
                    self.process = subprocess.Popen(
                        self.argv(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=self.dir,
                        start_new_session=True,
                    )
                if self._wait_ready():
                    return self
                self.stop()
            raise RuntimeError(f"{self.program} did not start; its log:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def choose_ports(self) -> None:
        self.port = free_port()

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            if all(self.soa_serial(z.origin, 0.2) is not None for z in self.zones):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def query(self, name: str, rdtype: str, timeout: float = 1.0) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        return dns.query.udp(q, "127.0.0.1", timeout=timeout, port=self.port)

    def addresses(self, name: str, rdtype: str) -> set[str]:
        """The A/AAAA addresses the server answers now (Python's spelling); empty for none."""
        try:
            reply = self.query(name, rdtype)
        except (dns.exception.DNSException, OSError):
            return {"(no answer)"}
        want = dns.rdatatype.from_text(rdtype)
        return {
            str(ipaddress.ip_address(rd.address))
            for rrset in reply.answer
            if rrset.rdtype == want
            for rd in rrset
        }

    def soa_serial(self, origin: str, timeout: float = 1.0) -> int | None:
        try:
            reply = self.query(origin + ".", "SOA", timeout)
        except (dns.exception.DNSException, OSError):
            return None
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    def wait_for(self, name: str, rdtype: str, expected: set[str], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.addresses(name, rdtype) == expected:
                return True
            time.sleep(0.05)
        return False


class Named(_Server):
    """named -g (foreground, logs to stderr) with its own named.conf, rndc channel and keys."""

    program = "named"
    log_name = "named.log"

    def __init__(self, workdir: Path, zones: list[Zone]) -> None:
        if NAMED is None or RNDC is None:
            raise RuntimeError(MISSING_BIND)
        super().__init__(workdir, zones)
        self.rndc_port = 0
        self.rndc_key = TsigKey("rndc-key", TsigKey.new("x").secret)
        self.rndc_key_file = self.rndc_key.write(self.dir / "rndc.key")

    def choose_ports(self) -> None:
        super().choose_ports()
        self.rndc_port = free_port()

    def argv(self) -> list[str]:
        assert NAMED is not None
        # -g: foreground, log to stderr; -n 1: one worker; no -u, so it keeps our user.
        return [NAMED, "-g", "-4", "-n", "1", "-c", str(self.dir / "named.conf")]

    def rndc(self, *args: str, port: int | None = None) -> list[str]:
        """The rndc command line that reaches this instance (`port` overrides, for failures)."""
        assert RNDC is not None
        return [
            RNDC,
            "-k",
            str(self.rndc_key_file),
            "-s",
            "127.0.0.1",
            "-p",
            str(port if port is not None else self.rndc_port),
            *args,
        ]

    def write_config(self) -> None:
        d = self.dir
        zones = []
        for z in self.zones:
            policy = (
                f"  update-policy {{ grant {self.key.name} {z.grant}; }};\n" if z.dynamic else ""
            )
            zones.append(
                f'zone "{z.origin}" {{\n  type primary;\n  file "{d / z.file}";\n{policy}}};\n'
            )
        (d / "named.conf").write_text(
            f'include "{self.rndc_key_file}";\n'
            f'include "{self.key_file}";\n'
            f"controls {{ inet 127.0.0.1 port {self.rndc_port} allow {{ 127.0.0.1; }} "
            f'keys {{ "{self.rndc_key.name}"; }}; }};\n'
            "options {\n"
            f'  directory "{d}";\n'
            f'  pid-file "{d}/named.pid";\n'
            f'  lock-file "{d}/named.lock";\n'
            f'  session-keyfile "{d}/session.key";\n'
            f'  managed-keys-directory "{d}";\n'
            f"  listen-on port {self.port} {{ 127.0.0.1; }};\n"
            "  listen-on-v6 { none; };\n"
            "  recursion no;\n"
            "  dnssec-validation no;\n"
            "  notify no;\n"
            "  allow-transfer { none; };\n"
            "};\n" + "".join(zones),
            encoding="utf-8",
        )


class Knot(_Server):
    """knotd (foreground by default) with its own knot.conf, database and control socket."""

    program = "knotd"
    log_name = "knot.log"

    def __init__(self, workdir: Path, zones: list[Zone]) -> None:
        if KNOTD is None:
            raise RuntimeError(MISSING_KNOT)
        super().__init__(workdir, zones)

    def argv(self) -> list[str]:
        assert KNOTD is not None
        return [KNOTD, "-c", str(self.dir / "knot.conf")]

    def write_config(self) -> None:
        d = self.dir
        (d / "db").mkdir(exist_ok=True)
        zones = "".join(
            f'  - domain: "{z.origin}"\n    file: "{d / z.file}"\n'
            + ("    acl: update\n" if z.dynamic else "")
            for z in self.zones
        )
        (d / "knot.conf").write_text(
            "server:\n"
            f'    rundir: "{d}"\n'
            f'    pidfile: "{d}/knot.pid"\n'
            f"    listen: 127.0.0.1@{self.port}\n"
            "control:\n"
            f'    listen: "{d}/knot.sock"\n'
            "log:\n"
            "  - target: stderr\n"
            "    any: info\n"
            "database:\n"
            f'    storage: "{d}/db"\n'
            "key:\n"
            f'  - id: "{self.key.name}"\n'
            f"    algorithm: {self.key.algorithm}\n"
            f"    secret: {self.key.secret}\n"
            "acl:\n"
            "  - id: update\n"
            f'    key: "{self.key.name}"\n'
            "    action: update\n"
            "template:\n"
            "  - id: default\n"
            f'    storage: "{d}"\n'
            "    zonefile-sync: -1\n"
            "zone:\n" + zones,
            encoding="utf-8",
        )
