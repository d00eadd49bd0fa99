"""dnsmasq: the managed names in an extra hosts file, and a SIGHUP so dnsmasq reads it again.

The hosts file (`hosts_file`, default /var/lib/ddnsagent/dnsmasq.hosts) is given to dnsmasq with
`addn-hosts=<path>` in its configuration. The agent owns it: it is replaced whole, atomically, at
every change, in its opened directory (a link or FIFO planted there is refused, never followed),
with a header saying so; each line is `ADDRESS FQDN [SHORT]`, the short name only
for single-label names. Point addn-hosts at the file, not at its directory: atomic replacement
creates a temporary file beside it for a moment.

What dnsmasq(8) says and what follows from it:

- On SIGHUP dnsmasq clears its cache and re-reads /etc/hosts, every --addn-hosts file and the
  DHCP host files. It does NOT re-read its configuration file: adding `addn-hosts=` itself
  needs a restart of dnsmasq, once.
- It reads the hosts files at start too, so a dnsmasq that is down when the file is written
  serves the new addresses as soon as it starts.
- Hosts-file answers carry the TTL of `local-ttl` (0 by default), not this zone's `ttl`.
- The address also gets a PTR answer, to the first name listed for it.

Order: the file is written first, then the pid in `pidfile` (default /run/dnsmasq/dnsmasq.pid,
dnsmasq's `--pid-file`) gets SIGHUP. Before signalling, the process behind the pid must call
itself "dnsmasq" (/proc/PID/comm): a stale pidfile whose number now belongs to another program
must not have that program hung up on (SIGHUP ends most programs). The check and the signal go
through a pidfd, so the pid cannot be reused in between. A missing or stale pidfile, or a pid of
another program, is a ZoneApplyError that says how to fix it; the file is in place by then.

Signalling needs the same user as dnsmasq runs as (it drops to user "dnsmasq" on Debian) or
CAP_KILL; an unprivileged agent gets a ZoneApplyError saying so.
"""

from __future__ import annotations

import ipaddress
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from ddnsagent.errors import UnsafeFile, ZoneApplyError
from ddnsagent.safefile import Directory
from ddnsagent.table import Table
from ddnsagent.zones.base import Desired, ZoneBackend, ZoneCommon, read_common
from ddnsagent.zones.owned import (
    OwnedFile,
    Records,
    absolute_path,
    carry_over,
    check_hostnames,
    check_served,
    count,
    header,
    peek,
    summary,
)

TYPE = "dnsmasq"
KEYS = "hosts_file, pidfile"

DEFAULT_HOSTS_FILE = "/var/lib/ddnsagent/dnsmasq.hosts"
DEFAULT_PIDFILE = "/run/dnsmasq/dnsmasq.pid"
PROGRAM = "dnsmasq"  # what /proc/PID/comm must say
PIDFILE_LIMIT = 64  # a pid and a newline


@dataclass(frozen=True)
class Settings(ZoneCommon):
    hosts_file: Path
    pidfile: Path


def from_table(t: Table) -> Settings:
    common = read_common(t)
    check_hostnames(t, common)
    return Settings(
        **common,
        hosts_file=absolute_path(t, "hosts_file", DEFAULT_HOSTS_FILE),
        pidfile=absolute_path(t, "pidfile", DEFAULT_PIDFILE),
    )


def render(settings: Settings, records: Records) -> str:
    lines = [
        header(settings, "dnsmasq reads it through addn-hosts= at start and on SIGHUP."),
    ]
    for fqdn, families in records.items():
        name = fqdn.rstrip(".")
        relative = fqdn[: -len(settings.origin) - 1] if fqdn.endswith("." + settings.origin) else ""
        short = f" {relative}" if relative and "." not in relative else ""
        for _, addresses in sorted(families.items()):
            lines += [f"{address} {name}{short}\n" for address in addresses]
    return "".join(lines)


def parse(text: str) -> Records:
    """The records of a hosts file this module wrote: the first name of each line is the
    absolute one."""
    out: Records = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        fqdn = fields[1].lower().rstrip(".") + "."
        out.setdefault(fqdn, {}).setdefault(address.version, []).append(address)
    return out


def hang_up(pidfile: Path) -> int:
    """SIGHUP the dnsmasq whose pid `pidfile` holds; its pid, or ZoneApplyError."""
    start = "start dnsmasq (it reads the hosts file at start), or set pidfile to its --pid-file"
    try:
        # dnsmasq's user may write its pid directory: no link followed, no FIFO waited on.
        with Directory(pidfile.parent) as directory:
            data = directory.read(pidfile.name, PIDFILE_LIMIT)
        text = data.decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        raise ZoneApplyError(f"{pidfile} does not exist: is dnsmasq running? {start}") from None
    except UnsafeFile as exc:
        raise ZoneApplyError(f"{exc}; dnsmasq was not signalled") from None
    except OSError as exc:
        raise ZoneApplyError(f"cannot read {pidfile}: {exc.strerror or exc}") from None
    if not text.isdigit() or int(text) < 1:
        # 0 and negative numbers would signal whole process groups: never pass them on.
        raise ZoneApplyError(f"{pidfile} holds something that is not a process id; {start}")
    pid = int(text)
    stale = f"{pidfile} is stale: no process {pid} is running, so dnsmasq is down; {start}"
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ZoneApplyError(stale) from None
    except OSError:
        handle = None  # kernels before 5.3: check, then kill by number
    try:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text(errors="replace").strip()
        except FileNotFoundError:
            raise ZoneApplyError(stale) from None
        if comm != PROGRAM:
            raise ZoneApplyError(
                f"{pidfile} names process {pid}, which is {comm!r}, not dnsmasq: not signalled. "
                f"The pidfile is stale and its number reused; {start}"
            )
        try:
            if handle is not None:
                signal.pidfd_send_signal(handle, signal.SIGHUP)
            else:
                os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise ZoneApplyError(stale) from None
        except PermissionError:
            raise ZoneApplyError(
                f"not allowed to signal dnsmasq (pid {pid}): run the agent as root or as "
                "dnsmasq's user, or give it CAP_KILL (AmbientCapabilities=CAP_KILL)"
            ) from None
    finally:
        if handle is not None:
            os.close(handle)
    return pid


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, want: Desired) -> str:
        s = self.settings
        records = carry_over(s, want, parse(peek(s.hosts_file)))
        return f"write {s.hosts_file} and SIGHUP the pid in {s.pidfile}: {summary(records)}"

    async def apply(self, want: Desired) -> str:
        s = self.settings
        with OwnedFile(s.hosts_file) as owned:
            previous = parse(owned.read(s))
            records = carry_over(s, want, previous)
            await owned.write(render(s, records))
        done = f"wrote {count(records)} records to {s.hosts_file}"
        try:
            pid = hang_up(s.pidfile)
        except ZoneApplyError as exc:
            raise ZoneApplyError(f"{done}, but {exc}") from None
        done += f" and sent SIGHUP to dnsmasq (pid {pid})"
        if s.verify is not None:
            try:
                await check_served(s.verify, records)
            except ZoneApplyError as exc:
                raise ZoneApplyError(f"{done}, but {exc}") from None
            done += f"; {s.verify[0]} port {s.verify[1]} serves them"
        return done


_: type[ZoneBackend] = Backend  # mypy checks the class against the protocol
