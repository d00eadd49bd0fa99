"""The kernel's own view of interface addresses, over rtnetlink (Linux), with the stdlib only.

`list_addresses` dumps addresses (RTM_GETADDR); `pick_ipv4` / `pick_ipv6` choose the one to
publish; `AddressWatcher` wakes the agent when the kernel announces an address change, so a
PPPoE reconnect is noticed at once instead of at the next poll.

Importing this module must stay cheap (the daemon is small): asyncio is imported only when a
watcher starts, and nothing here logs — watcher errors go to the event loop's exception handler.
Struct layouts and constants are the kernel's: rtnetlink(7), <linux/netlink.h>,
<linux/if_addr.h>, <linux/rtnetlink.h>.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from ddnsagent.errors import DdnsagentError

TYPE_CHECKING = False  # mypy reads this name as True; avoids importing typing (~3 ms) at run time
if TYPE_CHECKING:
    import asyncio

__all__ = [
    "AddressWatcher",
    "InterfaceAddress",
    "InterfaceNotFound",
    "NetlinkUnavailable",
    "list_addresses",
    "pick_ipv4",
    "pick_ipv6",
]

_NETLINK_ROUTE = 0

# nlmsg_type
_NLMSG_NOOP = 1
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLMSG_OVERRUN = 4
_RTM_NEWADDR = 20
_RTM_DELADDR = 21
_RTM_GETADDR = 22

# nlmsg_flags
_NLM_F_REQUEST = 0x01
_NLM_F_DUMP_INTR = 0x10
_NLM_F_DUMP = 0x300

# Multicast groups (legacy bitmask form, given to bind()).
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV6_IFADDR = 0x100

# struct rtattr types for ifaddrmsg
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_LABEL = 3
_IFA_CACHEINFO = 6
_IFA_FLAGS = 8

# ifa_flags / IFA_FLAGS bits
_IFA_F_SECONDARY = 0x01  # IPv4 meaning of bit 0 ...
_IFA_F_TEMPORARY = 0x01  # ... and its IPv6 meaning
_IFA_F_DADFAILED = 0x08
_IFA_F_DEPRECATED = 0x20
_IFA_F_TENTATIVE = 0x40
_IFA_F_PERMANENT = 0x80

_RT_SCOPE_UNIVERSE = 0
_INFINITY_LIFE_TIME = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_CACHEINFO = struct.Struct("=II")  # ifa_prefered, ifa_valid (cstamp, tstamp follow)
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")

_RECV_BUFSIZE = 65536  # the kernel never sends rtnetlink datagrams larger than this
_DUMP_TIMEOUT = 5.0  # seconds for a whole dump; the kernel answers in milliseconds
_DUMP_ATTEMPTS = 3  # a dump interrupted by a concurrent change is repeated this often
_MAX_READS_PER_WAKEUP = 64  # keeps an event storm from starving the event loop
_IFNAMSIZ = 16

_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")

_sequence = itertools.count(1)


class NetlinkUnavailable(DdnsagentError, OSError):
    """An rtnetlink socket cannot be opened: not Linux, or forbidden by a sandbox/seccomp."""


class InterfaceNotFound(DdnsagentError, LookupError):
    """No network interface has the given name."""


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address as the kernel reports it.

    `flags` are the full 32-bit IFA_FLAGS when the kernel sends them, else the 8-bit ifa_flags.
    `scope` is the rtnetlink scope: 0 global, 200 site, 253 link, 254 host.
    `peer` is the far end of a point-to-point address (PPP), else None.
    Lifetimes are seconds left at the time of the query, None meaning forever; they are left
    out of equality so that two queries of an unchanged interface compare equal.
    """

    ifname: str
    index: int
    address: IPv4Address | IPv6Address
    prefixlen: int
    scope: int = _RT_SCOPE_UNIVERSE
    flags: int = 0
    peer: IPv4Address | IPv6Address | None = None
    preferred_lifetime: int | None = field(default=None, compare=False)
    valid_lifetime: int | None = field(default=None, compare=False)

    @property
    def temporary(self) -> bool:
        """An IPv6 privacy address (RFC 8981); it changes daily, so it is never published."""
        return self.address.version == 6 and bool(self.flags & _IFA_F_TEMPORARY)

    @property
    def secondary(self) -> bool:
        """An IPv4 address added to a subnet that already had a primary one."""
        return self.address.version == 4 and bool(self.flags & _IFA_F_SECONDARY)

    @property
    def deprecated(self) -> bool:
        return bool(self.flags & _IFA_F_DEPRECATED)

    @property
    def tentative(self) -> bool:
        """Duplicate address detection has not finished (optimistic addresses included)."""
        return bool(self.flags & _IFA_F_TENTATIVE)

    @property
    def dadfailed(self) -> bool:
        return bool(self.flags & _IFA_F_DADFAILED)

    @property
    def permanent(self) -> bool:
        """Configured by hand (infinite lifetime), as opposed to SLAAC, DHCP or privacy."""
        return bool(self.flags & _IFA_F_PERMANENT)


def list_addresses(ifname: str | None = None, family: int | None = None) -> list[InterfaceAddress]:
    """The addresses the kernel has, in the kernel's order; of one interface if `ifname` is given.

    `family` is 4 or 6 (socket.AF_INET / AF_INET6 are accepted too), None for both.
    Raises InterfaceNotFound (a LookupError) for an unknown interface, NetlinkUnavailable when
    rtnetlink cannot be used, and OSError when the kernel refuses or does not answer in time.
    """
    af = _address_family(family)
    if ifname is None:
        wanted = None
        names: dict[int, str | None] = {}
    else:
        wanted = _index_of(ifname)
        names = {wanted: ifname}

    def name_of(index: int, _label: str | None) -> str | None:
        if wanted is not None and index != wanted:
            return None
        if index not in names:
            try:
                names[index] = socket.if_indextoname(index)
            except OSError:  # the interface went away during the dump, and its addresses too
                names[index] = None
        return names[index]

    request = _IFADDRMSG.pack(af, 0, 0, 0, 0)
    with _open_socket() as sock:
        payloads = _dump(sock, _RTM_GETADDR, request, _RTM_NEWADDR)
    found = (_decode_ifaddrmsg(p, name_of) for p in payloads)
    return [a for a in found if a is not None and (af == 0 or _family_of(a) == af)]


def pick_ipv6(addrs: Iterable[InterfaceAddress]) -> IPv6Address | None:
    """The IPv6 address to publish, or None when no address qualifies.

    Only stable global addresses qualify: global scope and inside 2000::/3 (so no link-local,
    ULA, loopback, multicast or v4-mapped ones), and not temporary (privacy), deprecated,
    tentative or DAD-failed. Special-purpose ranges inside 2000::/3 (documentation, Teredo)
    are the caller's to refuse.

    Among those, an address configured by hand (permanent) wins over SLAAC/DHCPv6 ones, then
    the numerically lowest wins. Lifetimes are deliberately ignored: they change with every
    router advertisement, and the choice must not, or the DNS record would flap.
    """
    candidates = [
        a
        for a in addrs
        if isinstance(a.address, IPv6Address)
        and a.address in _GLOBAL_UNICAST_V6
        and a.scope == _RT_SCOPE_UNIVERSE
        and not (a.temporary or a.deprecated or a.tentative or a.dadfailed)
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda a: (not a.permanent, a.address))
    assert isinstance(best.address, IPv6Address)
    return best.address


def pick_ipv4(addrs: Iterable[InterfaceAddress]) -> IPv4Address | None:
    """The IPv4 address to publish, or None when there is no global-scope one.

    Global scope is the only test of kind here (host- and link-scoped addresses are out);
    whether an address is public is the caller's to check. Tentative and DAD-failed addresses
    are skipped. The choice is deterministic: a primary address wins over a secondary one, one
    still preferred over a deprecated one, then the numerically lowest wins.
    """
    candidates = [
        a
        for a in addrs
        if isinstance(a.address, IPv4Address)
        and a.scope == _RT_SCOPE_UNIVERSE
        and not (a.tentative or a.dadfailed)
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda a: (a.secondary, a.deprecated, a.address))
    assert isinstance(best.address, IPv4Address)
    return best.address


class AddressWatcher:
    """Calls `on_change` once the addresses of the watched interfaces have settled after a change.

    Events are matched by interface name, resolved when each event arrives, so an interface
    that does not exist yet (ppp0 before the first connection) can be watched. Events about
    IPv6 temporary (privacy) addresses are ignored: they never affect what is published.

    A burst of events closer together than `debounce` seconds gives one call, `debounce`
    after the last of them; a never-ending storm still gives one call every `max_delay`
    seconds. `on_change` may be a plain function or return an awaitable; calls never overlap —
    changes seen while one runs give exactly one more call when it ends. Its exceptions, and a
    failure of the socket (which ends watching), go to the event loop's exception handler.

    When idle the watcher costs nothing: it is a file descriptor in the event loop's selector,
    with no timer. `start()` raises NetlinkUnavailable when rtnetlink cannot be used; the
    caller then falls back to polling.
    """

    def __init__(
        self,
        ifnames: Iterable[str],
        on_change: Callable[[], Awaitable[None] | None],
        debounce: float = 0.3,
        *,
        max_delay: float = 5.0,
    ) -> None:
        names = frozenset(ifnames)
        if not names:
            raise ValueError("AddressWatcher needs at least one interface name")
        for name in names:
            if not 0 < len(name.encode()) < _IFNAMSIZ:
                raise ValueError(f"{name!r} cannot be an interface name (1 to 15 bytes)")
        if debounce < 0:
            raise ValueError(f"debounce must not be negative, not {debounce}")
        if max_delay < debounce:
            raise ValueError(f"max_delay ({max_delay}) must not be shorter than debounce")
        self._ifnames = names
        self._on_change = on_change
        self._debounce = debounce
        self._max_delay = max_delay
        self._indexes: dict[int, str] = {}  # last known index of each watched name
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._burst_started: float | None = None
        self._running: asyncio.Future[None] | None = None
        self._again = False
        self._closed = False

    @property
    def ifnames(self) -> frozenset[str]:
        return self._ifnames

    async def start(self) -> None:
        """Subscribe to address events; must run in the loop that will deliver them."""
        import asyncio

        if self._closed:
            raise RuntimeError("this AddressWatcher is closed")
        if self._sock is not None:
            raise RuntimeError("this AddressWatcher is already started")
        loop = asyncio.get_running_loop()
        sock = _open_socket(_RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR)
        try:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._sock, self._loop = sock, loop
        for name in self._ifnames:  # so a deletion is recognised even if the link is gone
            with contextlib.suppress(OSError):
                self._indexes[socket.if_nametoindex(name)] = name

    def close(self) -> None:
        """Stop watching; a pending call is dropped, one already running is left to finish."""
        if self._closed:
            return
        self._closed = True
        self._again = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    async def __aenter__(self) -> AddressWatcher:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None or self._closed:
            return
        changed = False
        for _ in range(_MAX_READS_PER_WAKEUP):
            try:
                data, sender = sock.recvfrom(_RECV_BUFSIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: assume a change
                    changed = True
                    continue
                self._fail(exc)
                return
            if sender[0] != 0:  # only the kernel speaks for the kernel
                continue
            for msg_type, _flags, _seq, payload in _iter_messages(data):
                if msg_type in (_RTM_NEWADDR, _RTM_DELADDR) and self._concerns_us(payload):
                    changed = True
        if changed:
            self._changed()

    def _concerns_us(self, payload: bytes) -> bool:
        address = _decode_ifaddrmsg(payload, self._watched_name)
        return address is not None and not address.temporary

    def _watched_name(self, index: int, label: str | None) -> str | None:
        try:
            name = socket.if_indextoname(index)
        except OSError:  # the link is already gone, e.g. ppp0 after a hang-up
            known = self._indexes.get(index) or (label.partition(":")[0] if label else None)
            return known if known in self._ifnames else None
        if name not in self._ifnames:
            self._indexes.pop(index, None)  # renamed away from a watched name
            return None
        for old in [i for i, n in self._indexes.items() if n == name and i != index]:
            del self._indexes[old]
        self._indexes[index] = name
        return name

    def _changed(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if self._burst_started is None:
            self._burst_started = now
        if self._timer is not None:
            self._timer.cancel()
        due = min(now + self._debounce, self._burst_started + self._max_delay)
        self._timer = self._loop.call_at(due, self._settled)

    def _settled(self) -> None:
        self._timer = None
        self._burst_started = None
        if self._running is not None:
            self._again = True
        else:
            self._call()

    def _call(self) -> None:
        import asyncio

        assert self._loop is not None
        try:
            result = self._on_change()
        except Exception as exc:
            self._report("AddressWatcher on_change callback failed", exc)
            return
        if isinstance(result, Awaitable):
            self._running = asyncio.ensure_future(result, loop=self._loop)
            self._running.add_done_callback(self._call_done)

    def _call_done(self, future: asyncio.Future[None]) -> None:
        self._running = None
        if not future.cancelled() and future.exception() is not None:
            self._report("AddressWatcher on_change callback failed", future.exception())
        if self._again and not self._closed:
            self._again = False
            self._call()

    def _fail(self, exc: OSError) -> None:
        self._report("AddressWatcher stopped: the rtnetlink socket failed", exc)
        self.close()

    def _report(self, message: str, exc: BaseException | None) -> None:
        assert self._loop is not None
        self._loop.call_exception_handler({"message": message, "exception": exc})


def _address_family(family: int | None) -> int:
    if family is None:
        return socket.AF_UNSPEC
    if family in (4, socket.AF_INET):
        return socket.AF_INET
    if family in (6, socket.AF_INET6):
        return socket.AF_INET6
    raise ValueError(f"family must be 4, 6 or None, not {family!r}")


def _family_of(address: InterfaceAddress) -> int:
    return socket.AF_INET if address.address.version == 4 else socket.AF_INET6


def _index_of(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except (OSError, ValueError):
        raise InterfaceNotFound(f"no network interface named {ifname!r}") from None


def _open_socket(groups: int = 0) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
    except AttributeError:
        raise NetlinkUnavailable(
            errno.EAFNOSUPPORT, "rtnetlink is not available: this is not Linux"
        ) from None
    except OSError as exc:
        raise NetlinkUnavailable(
            exc.errno, f"cannot open an rtnetlink socket: {exc.strerror or exc}"
        ) from exc
    try:
        sock.bind((0, groups))
    except OSError as exc:
        sock.close()
        raise NetlinkUnavailable(
            exc.errno, f"cannot bind an rtnetlink socket: {exc.strerror or exc}"
        ) from exc
    return sock


def _dump(sock: socket.socket, request_type: int, body: bytes, reply_type: int) -> list[bytes]:
    """Payloads of the `reply_type` messages of one dump.

    A dump the kernel flags as interrupted (a change raced with it) is repeated, at most
    _DUMP_ATTEMPTS times in all; the last one is returned even if it was interrupted too —
    a watcher sees the change and asks again anyway.
    """
    payloads: list[bytes] = []
    for _ in range(_DUMP_ATTEMPTS):
        payloads, interrupted = _dump_once(sock, request_type, body, reply_type)
        if not interrupted:
            break
    return payloads


def _dump_once(
    sock: socket.socket, request_type: int, body: bytes, reply_type: int
) -> tuple[list[bytes], bool]:
    seq = next(_sequence)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), request_type, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0
    )
    sock.sendto(header + body, (0, 0))
    deadline = time.monotonic() + _DUMP_TIMEOUT
    payloads: list[bytes] = []
    interrupted = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the kernel did not finish an rtnetlink dump in {_DUMP_TIMEOUT} s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(_RECV_BUFSIZE)
        except TimeoutError:
            continue
        for msg_type, flags, msg_seq, payload in _iter_messages(data):
            if msg_seq != seq:
                continue
            if msg_type == _NLMSG_DONE:
                _raise_for_status(payload, "rtnetlink dump")
                return payloads, interrupted
            if msg_type == _NLMSG_ERROR:
                _raise_for_status(payload, "rtnetlink request")
            elif msg_type == _NLMSG_OVERRUN:
                raise OSError(errno.EOVERFLOW, "rtnetlink dump overran")
            elif msg_type == reply_type:
                payloads.append(payload)
                interrupted = interrupted or bool(flags & _NLM_F_DUMP_INTR)


def _raise_for_status(payload: bytes, what: str) -> None:
    """NLMSG_ERROR and NLMSG_DONE start with a negated errno; 0 means success."""
    if len(payload) >= _S32.size:
        (status,) = _S32.unpack_from(payload)
        if status < 0:
            code = -status
            raise OSError(code, f"{what} failed: {os.strerror(code)}")


def _iter_messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in one datagram; stops at garbage."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield msg_type, flags, seq, data[offset + _NLMSGHDR.size : offset + length]
        offset += _align(length)


def _iter_attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset + _RTATTR.size <= len(data):
        length, attr_type = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            return
        yield attr_type, data[offset + _RTATTR.size : offset + length]
        offset += _align(length)


def _align(length: int) -> int:
    return (length + 3) & ~3


def _decode_ifaddrmsg(
    payload: bytes, name_of: Callable[[int, str | None], str | None]
) -> InterfaceAddress | None:
    """An RTM_NEWADDR/RTM_DELADDR payload as an InterfaceAddress.

    None when it is malformed, not IPv4/IPv6, or `name_of(index, label)` gives no name (the
    interface is not wanted, or gone).
    """
    if len(payload) < _IFADDRMSG.size:
        return None
    af, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(payload)
    if af == socket.AF_INET:
        make: type[IPv4Address] | type[IPv6Address] = IPv4Address
        size = 4
    elif af == socket.AF_INET6:
        make, size = IPv6Address, 16
    else:
        return None
    attrs = dict(_iter_attributes(payload, _IFADDRMSG.size))
    # On point-to-point links IFA_LOCAL is ours and IFA_ADDRESS the peer; elsewhere the kernel
    # sends IFA_ADDRESS alone (IPv6) or both, equal (IPv4).
    local, remote = attrs.get(_IFA_LOCAL), attrs.get(_IFA_ADDRESS)
    own = local if local is not None else remote
    if own is None or len(own) != size:
        return None
    peer = None
    if local is not None and remote is not None and remote != local and len(remote) == size:
        peer = make(remote)
    extended = attrs.get(_IFA_FLAGS)
    if extended is not None and len(extended) == _U32.size:
        (flags,) = _U32.unpack(extended)
    preferred = valid = None
    cacheinfo = attrs.get(_IFA_CACHEINFO)
    if cacheinfo is not None and len(cacheinfo) >= _CACHEINFO.size:
        raw_preferred, raw_valid = _CACHEINFO.unpack_from(cacheinfo)
        preferred = None if raw_preferred == _INFINITY_LIFE_TIME else raw_preferred
        valid = None if raw_valid == _INFINITY_LIFE_TIME else raw_valid
    raw_label = attrs.get(_IFA_LABEL)
    label = raw_label.split(b"\0", 1)[0].decode(errors="replace") if raw_label else None
    ifname = name_of(index, label)
    if ifname is None:
        return None
    return InterfaceAddress(
        ifname=ifname,
        index=index,
        address=make(own),
        prefixlen=prefixlen,
        scope=scope,
        flags=flags,
        peer=peer,
        preferred_lifetime=preferred,
        valid_lifetime=valid,
    )
