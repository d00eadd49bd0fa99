"""rtnetlink: decoding, choosing the address to publish, listing and watching.

Decoding and choosing are tested on hand-built messages and objects, the watcher's timing on a
fake socket. Listing and watching are also run against the real kernel, inside a network
namespace each test creates and removes (root only). The code under test runs in a child
process started with `ip netns exec`, because a netlink socket belongs to the namespace of the
process that opens it; the child imports this file and calls one of the `child_*` functions.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import itertools
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.detect import netlink
from ddnsagent.detect.netlink import (
    AddressWatcher,
    InterfaceAddress,
    InterfaceNotFound,
    NetlinkUnavailable,
    list_addresses,
    pick_ipv4,
    pick_ipv6,
)

# Kernel facts, restated here so a typo in the module cannot hide behind its own constants.
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 6, 8
F_SECONDARY = F_TEMPORARY = 0x01
F_DADFAILED, F_DEPRECATED, F_TENTATIVE, F_PERMANENT = 0x08, 0x20, 0x40, 0x80
F_MANAGETEMPADDR = 0x100
SCOPE_GLOBAL, SCOPE_LINK, SCOPE_HOST = 0, 253, 254
FOREVER = 0xFFFFFFFF

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# --- building kernel messages -------------------------------------------------------------


def rtattr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def ifaddrmsg(
    family: int, prefixlen: int, flags: int, scope: int, index: int, *attrs: bytes
) -> bytes:
    return struct.pack("=BBBBI", family, prefixlen, flags, scope, index) + b"".join(attrs)


def nlmsg(kind: int, payload: bytes, seq: int = 0) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, 0, seq, 0) + payload + b"\0" * (-length % 4)


def packed(text: str) -> bytes:
    return ip_address(text).packed


def cacheinfo(preferred: int, valid: int) -> bytes:
    return rtattr(IFA_CACHEINFO, struct.pack("=IIII", preferred, valid, 100, 200))


def decode(payload: bytes) -> InterfaceAddress | None:
    return netlink._decode_ifaddrmsg(payload, lambda index, label: "wan0")


def addr(
    text: str, flags: int = 0, scope: int = SCOPE_GLOBAL, ifname: str = "wan0"
) -> InterfaceAddress:
    address = ip_address(text)
    return InterfaceAddress(ifname, 7, address, 32 if address.version == 4 else 64, scope, flags)


# --- decoding -----------------------------------------------------------------------------


def test_point_to_point_address_is_the_local_one_not_the_peer() -> None:
    payload = ifaddrmsg(
        socket.AF_INET,
        32,
        F_PERMANENT,
        SCOPE_GLOBAL,
        7,
        rtattr(IFA_ADDRESS, packed("198.51.100.1")),
        rtattr(IFA_LOCAL, packed("203.0.113.5")),
        rtattr(IFA_LABEL, b"ppp0\0"),
    )
    got = decode(payload)
    assert got is not None
    assert got.address == IPv4Address("203.0.113.5")
    assert got.peer == IPv4Address("198.51.100.1")
    assert (got.ifname, got.index, got.prefixlen, got.scope) == ("wan0", 7, 32, SCOPE_GLOBAL)
    assert got.permanent


def test_ordinary_ipv4_address_has_no_peer() -> None:
    payload = ifaddrmsg(
        socket.AF_INET,
        24,
        0,
        SCOPE_GLOBAL,
        7,
        rtattr(IFA_ADDRESS, packed("203.0.113.5")),
        rtattr(IFA_LOCAL, packed("203.0.113.5")),
    )
    got = decode(payload)
    assert got is not None
    assert (got.address, got.peer, got.prefixlen) == (IPv4Address("203.0.113.5"), None, 24)


def test_ifa_flags_attribute_overrides_the_8_bit_field() -> None:
    payload = ifaddrmsg(
        socket.AF_INET6,
        64,
        F_PERMANENT,  # the 8-bit field can be stale or truncated; IFA_FLAGS is authoritative
        SCOPE_GLOBAL,
        7,
        rtattr(IFA_ADDRESS, packed("2001:db8::99")),
        rtattr(IFA_FLAGS, struct.pack("=I", F_TEMPORARY | F_MANAGETEMPADDR)),
    )
    got = decode(payload)
    assert got is not None
    assert got.flags == F_TEMPORARY | F_MANAGETEMPADDR
    assert got.temporary and not got.permanent


def test_lifetimes_come_from_cacheinfo_and_infinity_is_none() -> None:
    finite = decode(
        ifaddrmsg(
            socket.AF_INET6,
            64,
            0,
            0,
            7,
            rtattr(IFA_ADDRESS, packed("2001:db8::1")),
            cacheinfo(1800, 3600),
        )
    )
    forever = decode(
        ifaddrmsg(
            socket.AF_INET6,
            64,
            0,
            0,
            7,
            rtattr(IFA_ADDRESS, packed("2001:db8::1")),
            cacheinfo(FOREVER, FOREVER),
        )
    )
    assert finite is not None and forever is not None
    assert (finite.preferred_lifetime, finite.valid_lifetime) == (1800, 3600)
    assert (forever.preferred_lifetime, forever.valid_lifetime) == (None, None)
    assert finite == forever, "lifetimes tick down between queries; they must not break equality"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x02\x18\x00", id="truncated-header"),
        pytest.param(ifaddrmsg(17, 0, 0, 0, 7, rtattr(IFA_ADDRESS, b"\0" * 6)), id="not-ip"),
        pytest.param(ifaddrmsg(socket.AF_INET, 24, 0, 0, 7), id="no-address"),
        pytest.param(
            ifaddrmsg(socket.AF_INET, 24, 0, 0, 7, rtattr(IFA_ADDRESS, b"\1\2")), id="short-address"
        ),
        pytest.param(
            ifaddrmsg(
                socket.AF_INET,
                24,
                0,
                0,
                7,
                struct.pack("=HH", 40, IFA_ADDRESS) + packed("203.0.113.5"),
            ),
            id="attribute-overruns",
        ),
    ],
)
def test_malformed_messages_are_skipped(payload: bytes) -> None:
    assert decode(payload) is None


def test_addresses_of_unwanted_interfaces_are_skipped() -> None:
    payload = ifaddrmsg(socket.AF_INET, 24, 0, 0, 9, rtattr(IFA_ADDRESS, packed("203.0.113.5")))
    assert netlink._decode_ifaddrmsg(payload, lambda index, label: None) is None


def test_messages_are_split_and_trailing_garbage_ignored() -> None:
    first = ifaddrmsg(socket.AF_INET, 24, 0, 0, 7, rtattr(IFA_ADDRESS, packed("203.0.113.5")))
    second = ifaddrmsg(socket.AF_INET6, 64, 0, 0, 7, rtattr(IFA_ADDRESS, packed("2001:db8::5")))
    data = nlmsg(RTM_NEWADDR, first, seq=1) + nlmsg(RTM_DELADDR, second, seq=2) + b"\x40\0\0\0junk"
    got = list(netlink._iter_messages(data))
    assert [(kind, seq) for kind, _flags, seq, _payload in got] == [
        (RTM_NEWADDR, 1),
        (RTM_DELADDR, 2),
    ]
    assert got[0][3].startswith(first)


def test_bit_0_means_secondary_for_ipv4_and_temporary_for_ipv6() -> None:
    v4, v6 = addr("203.0.113.5", F_SECONDARY), addr("2001:db8::5", F_TEMPORARY)
    assert v4.secondary and not v4.temporary
    assert v6.temporary and not v6.secondary


# --- choosing -----------------------------------------------------------------------------


STABLE = addr("2001:db8::5", F_PERMANENT)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(addr("2001:db8::1", F_TEMPORARY), id="temporary"),
        pytest.param(addr("2001:db8::1", F_PERMANENT | F_DEPRECATED), id="deprecated"),
        pytest.param(addr("2001:db8::1", F_PERMANENT | F_TENTATIVE), id="tentative"),
        pytest.param(addr("2001:db8::1", F_PERMANENT | F_DADFAILED | F_TENTATIVE), id="dadfailed"),
        pytest.param(addr("fe80::1", F_PERMANENT, SCOPE_LINK), id="link-local"),
        pytest.param(addr("fd00::1", F_PERMANENT), id="ula"),
        pytest.param(addr("::1", F_PERMANENT, SCOPE_HOST), id="loopback"),
        pytest.param(addr("::ffff:203.0.113.1", F_PERMANENT), id="v4-mapped"),
        pytest.param(addr("2001:db8::1", F_PERMANENT, SCOPE_LINK), id="link-scope"),
        pytest.param(addr("203.0.113.1", F_PERMANENT), id="ipv4"),
    ],
)
def test_pick_ipv6_passes_over_unstable_and_non_global(other: InterfaceAddress) -> None:
    assert pick_ipv6([other, STABLE]) == STABLE.address
    assert pick_ipv6([other]) is None


def test_pick_ipv6_prefers_permanent_then_lowest_whatever_the_order() -> None:
    slaac_low = addr("2001:db8::2")  # lower, but SLAAC: its interface id changes with hardware
    manual_high = addr("2001:db8::9", F_PERMANENT)
    manual_low = addr("2001:db8::7", F_PERMANENT)
    for order in itertools.permutations([slaac_low, manual_high, manual_low]):
        assert pick_ipv6(order) == IPv6Address("2001:db8::7")
    assert pick_ipv6([addr("2001:db8::9"), slaac_low]) == IPv6Address("2001:db8::2")
    assert pick_ipv6([]) is None


def test_pick_ipv4_prefers_primary_then_preferred_then_lowest() -> None:
    secondary = addr("198.51.100.1", F_PERMANENT | F_SECONDARY)
    deprecated = addr("198.51.100.2", F_DEPRECATED)
    high, low = addr("203.0.113.9", F_PERMANENT), addr("203.0.113.5", F_PERMANENT)
    for order in itertools.permutations([secondary, deprecated, high, low]):
        assert pick_ipv4(order) == IPv4Address("203.0.113.5")
    assert pick_ipv4([secondary, deprecated]) == IPv4Address("198.51.100.2")
    assert pick_ipv4([secondary]) == IPv4Address("198.51.100.1")


def test_pick_ipv4_passes_over_host_scope_and_ipv6() -> None:
    loopback = addr("127.0.0.1", F_PERMANENT, SCOPE_HOST)
    assert pick_ipv4([loopback, STABLE]) is None
    assert pick_ipv4([loopback, addr("192.0.2.1")]) == IPv4Address("192.0.2.1")


# --- errors -------------------------------------------------------------------------------


def test_unknown_interface_is_a_lookup_error_naming_it() -> None:
    with pytest.raises(LookupError, match="no network interface named 'ddnsnope0'") as caught:
        list_addresses("ddnsnope0")
    assert isinstance(caught.value, InterfaceNotFound)


def test_family_is_4_or_6() -> None:
    with pytest.raises(ValueError, match="family"):
        list_addresses(family=5)


class _SocketModuleWithout:
    """The socket module as seen on a system where netlink is forbidden or absent."""

    def __init__(self, *, platform_has_netlink: bool = True) -> None:
        self._has = platform_has_netlink

    def __getattr__(self, name: str) -> Any:
        if name == "AF_NETLINK" and not self._has:
            raise AttributeError(name)
        return getattr(socket, name)

    def socket(self, family: int, *args: Any) -> socket.socket:
        if family == socket.AF_NETLINK:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return socket.socket(family, *args)


@pytest.mark.skipif(not hasattr(socket, "AF_NETLINK"), reason="Linux only")
@pytest.mark.parametrize("platform_has_netlink", [True, False], ids=["forbidden", "not-linux"])
def test_without_netlink_listing_and_watching_raise_netlink_unavailable(
    monkeypatch: pytest.MonkeyPatch, platform_has_netlink: bool
) -> None:
    monkeypatch.setattr(
        netlink, "socket", _SocketModuleWithout(platform_has_netlink=platform_has_netlink)
    )
    with pytest.raises(NetlinkUnavailable, match="rtnetlink") as caught:
        list_addresses()
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == (errno.EPERM if platform_has_netlink else errno.EAFNOSUPPORT)

    async def scenario() -> None:
        watcher = AddressWatcher({"wan0"}, lambda: None)
        with pytest.raises(NetlinkUnavailable):
            await watcher.start()
        watcher.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("ifnames", "debounce", "match"),
    [
        (set(), 0.3, "at least one"),
        ({"an-interface-name-too-long"}, 0.3, "cannot be an interface name"),
        ({"wan0"}, -1.0, "negative"),
    ],
)
def test_watcher_rejects_impossible_arguments(
    ifnames: set[str], debounce: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        AddressWatcher(ifnames, lambda: None, debounce)


# --- watcher timing, on a fake socket -----------------------------------------------------


class FakeNetlinkSocket:
    """Stands in for the subscribed socket: datagrams go in through `announce`."""

    def __init__(self) -> None:
        self._inside, self._outside = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._senders: collections.deque[tuple[int, int] | OSError] = collections.deque()

    def announce(
        self, kind: int, index: int, address: str, flags: int = 0, label: str | None = None
    ) -> None:
        family = socket.AF_INET if ip_address(address).version == 4 else socket.AF_INET6
        attrs = [rtattr(IFA_ADDRESS, packed(address)), rtattr(IFA_FLAGS, struct.pack("=I", flags))]
        if label is not None:
            attrs.append(rtattr(IFA_LABEL, label.encode() + b"\0"))
        self.send(nlmsg(kind, ifaddrmsg(family, 24, flags & 0xFF, 0, index, *attrs)))

    def send(self, data: bytes, sender: tuple[int, int] | OSError = (0, 0)) -> None:
        self._senders.append(sender)
        self._outside.send(data)

    def setblocking(self, flag: bool) -> None:
        self._inside.setblocking(flag)

    def fileno(self) -> int:
        return self._inside.fileno()

    def recvfrom(self, size: int) -> tuple[bytes, tuple[int, int]]:
        data = self._inside.recv(size)
        sender = self._senders.popleft()
        if isinstance(sender, OSError):
            raise sender
        return data, sender

    def close(self) -> None:
        self._inside.close()
        self._outside.close()


def errno_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


LO = 1  # the loopback interface has index 1 in every network namespace
GONE = 0x7FFF_FFF0  # no interface has this index


@pytest.fixture
def fake_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNetlinkSocket]:
    try:
        if socket.if_indextoname(LO) != "lo":
            pytest.skip("index 1 is not the loopback interface 'lo' here")
    except OSError:
        pytest.skip("no interface with index 1")
    fake = FakeNetlinkSocket()
    monkeypatch.setattr(netlink, "_open_socket", lambda groups=0: fake)
    yield fake
    fake.close()


def test_watcher_debounces_a_burst_and_ignores_what_is_not_its_business(
    fake_socket: FakeNetlinkSocket,
) -> None:
    calls: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with AddressWatcher({"lo", "ppp9"}, lambda: calls.append(loop.time()), debounce=0.2):
            start = loop.time()
            for i in range(5):  # del old + add new, several times: one settled change
                fake_socket.announce(RTM_DELADDR, LO, f"203.0.113.{i}")
                fake_socket.announce(RTM_NEWADDR, LO, f"203.0.113.{i + 1}")
                await asyncio.sleep(0.02)
            burst_end = loop.time()
            await asyncio.sleep(0.6)
            assert len(calls) == 1
            assert calls[0] >= burst_end + 0.15 > start + 0.15, "the call trails the last event"

            fake_socket.announce(RTM_NEWADDR, LO, "2001:db8::99", F_TEMPORARY)
            fake_socket.announce(RTM_NEWADDR, GONE, "203.0.113.7")  # no such interface, no label
            fake_socket.announce(RTM_NEWADDR, GONE, "203.0.113.7", label="eth9:1")
            fake_socket.send(
                nlmsg(RTM_NEWADDR, ifaddrmsg(2, 24, 0, 0, LO, rtattr(1, packed("203.0.113.8")))),
                (4242, 0),
            )
            await asyncio.sleep(0.5)
            assert len(calls) == 1, "privacy, unknown-interface and non-kernel messages are ignored"

            # ppp9 has just hung up: its index no longer resolves, the IPv4 label still names it
            fake_socket.announce(RTM_DELADDR, GONE, "203.0.113.7", label="ppp9")
            await asyncio.sleep(0.5)
            assert len(calls) == 2

            fake_socket.send(b"", errno_error(errno.ENOBUFS))  # events were lost: assume a change
            await asyncio.sleep(0.5)
            assert len(calls) == 3

    asyncio.run(scenario())


def test_watcher_never_overlaps_calls_and_catches_up_once(fake_socket: FakeNetlinkSocket) -> None:
    running = 0
    overlaps = 0
    calls = 0

    async def slow_on_change() -> None:
        nonlocal running, overlaps, calls
        calls += 1
        running += 1
        overlaps += running > 1
        await asyncio.sleep(0.4)
        running -= 1

    async def scenario() -> None:
        async with AddressWatcher({"lo"}, slow_on_change, debounce=0.05):
            fake_socket.announce(RTM_NEWADDR, LO, "203.0.113.5")
            await asyncio.sleep(0.15)  # the first call is running now
            for i in range(3):  # three separate changes while it runs
                fake_socket.announce(RTM_NEWADDR, LO, f"198.51.100.{i}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.2)

    asyncio.run(scenario())
    assert (calls, overlaps) == (2, 0)


def test_watcher_storm_still_calls_every_max_delay(fake_socket: FakeNetlinkSocket) -> None:
    calls: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with AddressWatcher(
            {"lo"}, lambda: calls.append(loop.time()), debounce=0.1, max_delay=0.3
        ):
            storm_end = loop.time() + 1.0
            while loop.time() < storm_end:
                fake_socket.announce(RTM_NEWADDR, LO, "203.0.113.5")
                await asyncio.sleep(0.03)
            assert calls, "a storm must not postpone the call forever"
            await asyncio.sleep(0.4)

    asyncio.run(scenario())
    assert 2 <= len(calls) <= 6


def test_watcher_reports_a_failing_callback_and_keeps_watching(
    fake_socket: FakeNetlinkSocket,
) -> None:
    reported: list[dict[str, Any]] = []
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("provider down")

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: reported.append(context)
        )
        async with AddressWatcher({"lo"}, failing, debounce=0.05):
            for _ in range(2):
                fake_socket.announce(RTM_NEWADDR, LO, "203.0.113.5")
                await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert calls == 2
    assert [str(c["exception"]) for c in reported] == ["provider down", "provider down"]


def test_closed_watcher_is_silent_and_cannot_restart(fake_socket: FakeNetlinkSocket) -> None:
    calls = 0

    def on_change() -> None:
        nonlocal calls
        calls += 1

    async def scenario() -> None:
        watcher = AddressWatcher({"lo"}, on_change, debounce=0.05)
        await watcher.start()
        with pytest.raises(RuntimeError, match="already started"):
            await watcher.start()
        fake_socket.announce(RTM_NEWADDR, LO, "203.0.113.5")
        await asyncio.sleep(0.01)
        watcher.close()  # the pending call is dropped
        watcher.close()
        await asyncio.sleep(0.2)
        with pytest.raises(RuntimeError, match="closed"):
            await watcher.start()

    asyncio.run(scenario())
    assert calls == 0


# --- the real kernel, in a network namespace ----------------------------------------------


class Netns:
    """A network namespace with veth pairs wan0/wan0p and lan0/lan0p, all up, DAD off."""

    def __init__(self, name: str) -> None:
        self.name = name

    def ip(self, *args: str) -> None:
        done = subprocess.run(
            ["ip", "-n", self.name, *args], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def sysctl(self, key: str, value: str) -> None:
        path = Path("/proc/sys") / key.replace(".", "/")
        self.child("child_write", str(path), value)

    def child(self, function: str, *args: str) -> Any:
        """Run `function(*args)` of this file inside the namespace; its result, via JSON."""
        code = (
            "import json, sys, test_netlink as t;"
            "print(json.dumps(getattr(t, sys.argv[1])(*sys.argv[2:])))"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, "-c", code, function, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if done.returncode != 0 or not done.stdout.strip():
            raise AssertionError(f"{function} in {self.name} failed:\n{done.stderr}")
        return json.loads(done.stdout.splitlines()[-1])

    def setup(self) -> None:
        for scope in ("all", "default"):  # DAD would add a second, delayed event per address
            self.sysctl(f"net.ipv6.conf.{scope}.accept_dad", "0")
        self.ip("link", "set", "lo", "up")
        for name in ("wan0", "lan0"):
            self.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            self.ip("link", "set", f"{name}p", "up")
            self.ip("link", "set", name, "up")
        self.sysctl("net.ipv6.conf.wan0.use_tempaddr", "2")


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a network namespace")
    if shutil.which("ip") is None:
        pytest.skip("needs the ip command (iproute2)")
    name = f"ddnsagent-test-{uuid.uuid4().hex[:8]}"
    created = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, timeout=30
    )
    try:
        if created.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
        ns = Netns(name)
        ns.setup()
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def child_write(path: str, value: str) -> None:
    Path(path).write_text(value)


def child_list(ifname: str = "", family: str = "") -> list[dict[str, Any]]:
    found = list_addresses(ifname or None, int(family) if family else None)
    return [{**asdict(a), "address": str(a.address), "peer": a.peer and str(a.peer)} for a in found]


def listed(ns: Netns, ifname: str = "", family: str = "") -> list[InterfaceAddress]:
    rows = ns.child("child_list", ifname, family)
    for row in rows:
        row["address"] = ip_address(row["address"])
        row["peer"] = row["peer"] and ip_address(row["peer"])
    return [InterfaceAddress(**row) for row in rows]


@pytest.mark.root
def test_lists_ipv4_addresses_of_one_interface(netns: Netns) -> None:
    netns.ip("addr", "add", "203.0.113.5/24", "dev", "wan0")
    netns.ip("addr", "add", "198.51.100.7/24", "dev", "lan0")

    wan = listed(netns, "wan0", "4")
    assert [(a.ifname, a.address, a.prefixlen, a.scope, a.peer) for a in wan] == [
        ("wan0", IPv4Address("203.0.113.5"), 24, SCOPE_GLOBAL, None)
    ]
    assert wan[0].permanent and wan[0].valid_lifetime is None
    assert pick_ipv4(wan) == IPv4Address("203.0.113.5")

    everything = {(a.ifname, a.address) for a in listed(netns)}
    assert {("lo", IPv4Address("127.0.0.1")), ("lan0", IPv4Address("198.51.100.7"))} <= everything
    assert all(a.address.version == 6 for a in listed(netns, family="6"))


@pytest.mark.root
def test_point_to_point_gives_our_address_not_the_peer(netns: Netns) -> None:
    netns.ip("addr", "add", "203.0.113.5", "peer", "198.51.100.1", "dev", "wan0")
    (only,) = listed(netns, "wan0", "4")
    assert (only.address, only.peer, only.prefixlen) == (
        IPv4Address("203.0.113.5"),
        IPv4Address("198.51.100.1"),
        32,
    )
    assert pick_ipv4([only]) == IPv4Address("203.0.113.5")


@pytest.mark.root
def test_ipv6_flags_and_the_address_to_publish(netns: Netns) -> None:
    # with use_tempaddr=2 the kernel derives a privacy address from a mngtmpaddr one
    netns.ip("-6", "addr", "add", "2001:db8::5/64", "dev", "wan0", "mngtmpaddr", "nodad")
    lifetimes = ["valid_lft", "3600", "preferred_lft"]
    netns.ip("-6", "addr", "add", "2001:db8::3/64", "dev", "wan0", "nodad", *lifetimes, "3600")
    netns.ip("-6", "addr", "add", "2001:db8::1/64", "dev", "wan0", "nodad", *lifetimes, "0")
    netns.sysctl("net.ipv6.conf.lan0.accept_dad", "1")
    netns.sysctl("net.ipv6.neigh.lan0.retrans_time_ms", "20000")  # DAD lasts 20 s, ample time
    netns.ip("-6", "addr", "add", "2001:db8:1::7/64", "dev", "lan0")

    wan = listed(netns, "wan0", "6")
    by_address = {a.address: a for a in wan}
    (privacy,) = [a for a in wan if a.temporary]
    assert privacy.address in IPv6Network("2001:db8::/64") and not privacy.permanent
    assert by_address[IPv6Address("2001:db8::5")].permanent
    dynamic = by_address[IPv6Address("2001:db8::3")]
    assert not dynamic.permanent
    assert dynamic.valid_lifetime is not None and 3500 < dynamic.valid_lifetime <= 3600
    assert by_address[IPv6Address("2001:db8::1")].deprecated
    assert any(a.scope == SCOPE_LINK and a.address.is_link_local for a in wan)
    # ::1 and ::3 are lower, but deprecated and dynamic; the privacy address may be lower too
    assert pick_ipv6(wan) == IPv6Address("2001:db8::5")

    lan = listed(netns, "lan0", "6")
    (fresh,) = [a for a in lan if a.address == IPv6Address("2001:db8:1::7")]
    assert fresh.tentative
    assert pick_ipv6(lan) is None


# (what happens, `ip` commands run 50 ms apart, on_change calls expected once settled)
WATCH_STEPS: list[tuple[str, list[list[str]], int]] = [
    ("add", [["addr", "add", "203.0.113.5/24", "dev", "wan0"]], 1),
    (
        "replace",
        [
            ["addr", "del", "203.0.113.5/24", "dev", "wan0"],
            ["addr", "add", "203.0.113.6/24", "dev", "wan0"],
        ],
        1,
    ),
    (
        "other interface",
        [
            ["addr", "add", "198.51.100.7/24", "dev", "lan0"],
            ["-6", "addr", "add", "2001:db8:1::7/64", "dev", "lan0", "nodad"],
        ],
        0,
    ),
    (
        "burst",
        [["-6", "addr", "add", f"2001:db8::{i}/64", "dev", "wan0", "nodad"] for i in range(10, 15)],
        1,
    ),
    ("privacy address removed", [["-6", "addr", "del", "{temporary}", "dev", "wan0"]], 0),
    (
        "ppp1 comes up",
        [
            ["link", "add", "ppp1", "type", "veth", "peer", "name", "ppp1p"],
            ["link", "set", "ppp1p", "up"],
            ["link", "set", "ppp1", "up"],
            ["addr", "add", "203.0.113.9", "peer", "198.51.100.1", "dev", "ppp1"],
        ],
        1,
    ),
    ("ppp1 hangs up", [["link", "del", "ppp1"]], 1),
    ("remove", [["addr", "del", "203.0.113.6/24", "dev", "wan0"]], 1),
]


def child_watch(watched: str) -> list[int]:
    return asyncio.run(_watch(set(watched.split(","))))


async def _watch(ifnames: set[str]) -> list[int]:
    calls = 0

    async def on_change() -> None:
        nonlocal calls
        calls += 1

    counts = []
    async with AddressWatcher(ifnames, on_change, debounce=0.3):
        for _what, commands, _expected in WATCH_STEPS:
            before = calls
            for command in commands:
                await _run_ip(command)
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            counts.append(calls - before)
    return counts


async def _run_ip(command: list[str]) -> None:
    if "{temporary}" in command:
        (privacy,) = [a for a in list_addresses("wan0", 6) if a.temporary]
        real = f"{privacy.address}/{privacy.prefixlen}"
        command = [real if word == "{temporary}" else word for word in command]
    process = await asyncio.create_subprocess_exec(
        "ip", *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, error = await asyncio.wait_for(process.communicate(), 30)
    if process.returncode != 0:
        raise RuntimeError(f"ip {' '.join(command)}: {error.decode().strip()}")


@pytest.mark.root
def test_watcher_calls_once_per_settled_change_of_watched_interfaces(netns: Netns) -> None:
    netns.ip("-6", "addr", "add", "2001:db8::5/64", "dev", "wan0", "mngtmpaddr", "nodad")
    counts = netns.child("child_watch", "wan0,ppp1")  # ppp1 does not exist yet
    assert dict(zip([w for w, _, _ in WATCH_STEPS], counts, strict=True)) == {
        what: expected for what, _, expected in WATCH_STEPS
    }
