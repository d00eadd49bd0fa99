"""Two network namespaces, `isp` and `home`, joined by a veth pair: the smallest Internet in which
a home server's WAN address can change under a running Postfix.

    isp namespace                          home namespace
    up0  198.51.100.1/24  <── veth ──>     wan0  198.51.100.7/24   (the WAN address)

Neither namespace has a default route, so nothing started inside can reach anything but the
other end of the pair (and its own loopback): a DNS query or a stray connection fails at once
instead of leaving the machine. Namespace names carry the pid and a random tag, so parallel runs
never meet. `Lab.close()` stops every process still inside either namespace, then deletes both,
and is safe to call after a half-finished `open()`.

The ISP can also turn hostile: `drop_from(address)` makes it silently drop every packet from that
source (nftables, inside the isp namespace), which is how a relay looks when it stops talking to
an address — the client's connect times out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "HOME_ADDRESS",
    "HOME_IFNAME",
    "ISP_ADDRESS",
    "ISP_IFNAME",
    "PREFIX_LEN",
    "Lab",
    "LabError",
    "Namespace",
    "missing_requirements",
]

ISP_ADDRESS = "198.51.100.1"
HOME_ADDRESS = "198.51.100.7"
PREFIX_LEN = 24
ISP_IFNAME = "up0"
HOME_IFNAME = "wan0"
_NETWORK = ipaddress.ip_network(f"{ISP_ADDRESS}/{PREFIX_LEN}", strict=False)

COMMAND_TIMEOUT = 30.0
STOP_GRACE = 5.0
_NFT_TABLE = "ddnsagent_isp"


class LabError(RuntimeError):
    """A command that builds or changes the lab failed; the message carries its stderr."""


def missing_requirements() -> list[str]:
    """Why the lab cannot be built here (empty when it can): root, `ip`, `nft`."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root: creates network namespaces")
    if shutil.which("ip") is None:
        reasons.append("needs the ip command (Debian package iproute2)")
    if shutil.which("nft") is None:
        reasons.append("needs the nft command (Debian package nftables)")
    return reasons


def _run(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, what: str = "") -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise LabError(f"{what or ' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _documentation(address: str) -> str:
    """Refuse anything outside the lab's network: a typo must not become real traffic."""
    parsed = ipaddress.ip_address(address)
    if parsed not in _NETWORK:
        raise ValueError(f"{address} is outside the lab network {_NETWORK}")
    return str(parsed)


class Namespace:
    """One named network namespace: run commands and processes inside it, stop them all."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed so that it runs inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def ip(self, *args: str) -> str:
        """`ip -n NAME ARGS…`; raises `LabError` on failure."""
        return _run(["ip", "-n", self.name, *args], what=f"ip -n {self.name} {' '.join(args)}")

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = COMMAND_TIMEOUT,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace to completion (bounded by `timeout`)."""
        done = subprocess.run(
            self.argv(argv),
            capture_output=True,
            text=True,
            input=input,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise LabError(
                f"in {self.name}: {' '.join(argv)}: exit {done.returncode}\n"
                f"{done.stderr.strip()}\n{done.stdout.strip()}"
            )
        return done

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside the namespace; the caller owns the process (`close()` stops it
        anyway if it is still in the namespace)."""
        return subprocess.Popen(self.argv(argv), **kwargs)

    def pids(self) -> list[int]:
        """Processes whose network namespace is this one (`ip netns pids`)."""
        done = subprocess.run(
            ["ip", "netns", "pids", self.name],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return [int(word) for word in done.stdout.split() if word.isdigit()]

    def stop_processes(self, grace: float = STOP_GRACE) -> list[int]:
        """SIGTERM every process in the namespace, SIGKILL what is left after `grace` seconds.

        Returns the pids that had to be killed. Only processes inside this namespace are
        touched, and only this lab created it.
        """
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = self.pids()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        return killed


class Lab:
    """The isp and home namespaces and the link between them. Use as a context manager.

    `wan_address` is home's current address; `move_home()` changes it the way a PPPoE reconnect
    does (the old address disappears, a new one appears). `drop_from()`/`allow_from()` make the
    ISP silently drop, or accept again, everything from one source address.
    """

    def __init__(self, tag: str | None = None) -> None:
        suffix = tag or f"{os.getpid()}-{secrets.token_hex(3)}"
        self.isp = Namespace(f"ddnsa-isp-{suffix}")
        self.home = Namespace(f"ddnsa-home-{suffix}")
        self.wan_address = HOME_ADDRESS
        self._created: list[Namespace] = []

    # -- life cycle ------------------------------------------------------------------------------

    def open(self) -> Self:
        for ns in (self.isp, self.home):
            _run(["ip", "netns", "add", ns.name])
            self._created.append(ns)
            ns.ip("link", "set", "lo", "up")
        # Created inside isp with its peer placed straight into home: the names never exist in
        # the host's namespace, so two labs cannot collide on them.
        peer = ["peer", "name", HOME_IFNAME, "netns", self.home.name]
        self.isp.ip("link", "add", ISP_IFNAME, "type", "veth", *peer)
        self.isp.ip("addr", "add", f"{ISP_ADDRESS}/{PREFIX_LEN}", "dev", ISP_IFNAME)
        self.home.ip("addr", "add", f"{HOME_ADDRESS}/{PREFIX_LEN}", "dev", HOME_IFNAME)
        self.isp.ip("link", "set", ISP_IFNAME, "up")
        self.home.ip("link", "set", HOME_IFNAME, "up")
        self._nft_setup()
        return self

    def close(self) -> None:
        """Stop every process left in the namespaces, then delete them. Never raises."""
        while self._created:
            ns = self._created.pop()
            with contextlib.suppress(Exception):
                ns.stop_processes()
            with contextlib.suppress(Exception):
                _run(["ip", "netns", "del", ns.name])

    def __enter__(self) -> Self:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the WAN address -------------------------------------------------------------------------

    def move_home(self, new_address: str, *, kill_sockets: bool = True) -> None:
        """Replace home's WAN address by `new_address` (a reconnect that got a new address).

        A reconnect also ends the TCP connections of the old address; the kernel does not do
        that when an address is merely deleted, so with `kill_sockets` they are destroyed
        (`ss -K`, best effort: kernels without CONFIG_INET_DIAG_DESTROY leave them, and a
        connection Postfix cached then hangs until its smtp_*_timeout).
        """
        new = _documentation(new_address)
        old = self.wan_address
        self.home.ip("addr", "del", f"{old}/{PREFIX_LEN}", "dev", HOME_IFNAME)
        self.home.ip("addr", "add", f"{new}/{PREFIX_LEN}", "dev", HOME_IFNAME)
        self.wan_address = new
        if kill_sockets:
            self.home.run(["ss", "-K", "-tn", "src", old], check=False)

    def home_addresses(self) -> list[str]:
        """The IPv4 addresses on home's WAN interface, as the kernel lists them."""
        out = self.home.ip("-4", "-o", "addr", "show", "dev", HOME_IFNAME)
        return [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]

    # -- a hostile ISP ---------------------------------------------------------------------------

    def _nft(self, script: str) -> None:
        done = self.isp.run(["nft", "-f", "-"], input=script, check=False)
        if done.returncode != 0:
            raise LabError(f"nft in {self.isp.name}: {done.stderr.strip()}\n{script}")

    def _nft_setup(self) -> None:
        self._nft(
            f"table inet {_NFT_TABLE} {{\n"
            "  set dropped4 { type ipv4_addr; }\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            "    ip saddr @dropped4 drop\n"
            "  }\n"
            "}\n"
        )

    def drop_from(self, address: str) -> None:
        """The ISP silently drops every packet from `address` (connects to it time out)."""
        self._nft(f"add element inet {_NFT_TABLE} dropped4 {{ {_documentation(address)} }}\n")

    def allow_from(self, address: str) -> None:
        """Undo `drop_from(address)`."""
        self._nft(f"delete element inet {_NFT_TABLE} dropped4 {{ {_documentation(address)} }}\n")

    def dropped(self) -> list[str]:
        """Source addresses the ISP currently drops."""
        out = self.isp.run(["nft", "-j", "list", "set", "inet", _NFT_TABLE, "dropped4"]).stdout
        for item in json.loads(out).get("nftables", []):
            if "set" in item:
                return [str(e) for e in item["set"].get("elem", [])]
        return []
