"""unbound: the managed names as `local-data`, both in a file unbound includes and, at once, in the
running server through unbound-control.

The include file (`include`, default /etc/unbound/unbound.conf.d/ddnsagent.conf, which Debian's
unbound.conf already includes with `include-toplevel: "/etc/unbound/unbound.conf.d/*.conf"`) is
owned by the agent: it is replaced whole, atomically, at every change, and starts with a header
saying so. It opens its own `server:` clause, so it works with `include:` and `include-toplevel:`.
unbound refuses to start when a plain include names a missing file: create it empty once (an
empty file counts as the agent's), or include it through a glob as Debian does.
The file makes the records survive a restart or `unbound-control reload`; unbound-control puts
them into the running server without a reload (which would flush the cache).

What unbound-control(8) says and what follows from it:

- `local_data RR` *adds* an RR, to whatever the name already holds; `local_datas` adds the RRs
  read from stdin, one a line. So replacing an address needs a removal first.
- `local_data_remove NAME` (`local_datas_remove`, names on stdin) removes *all* data of the name,
  of every type. A managed name must therefore get its A/AAAA from this file only, and no other
  local-data (MX, TXT) of that exact name may live elsewhere: it would be gone from the running
  server until the next reload. Records of other names in the zone are not touched.
- Without a covering `local-zone`, local data gets a `transparent` zone of its own name, which
  answers NODATA for the types it does not hold. Declare the zone yourself, once, in your own
  configuration: `local-zone: "example.net." typetransparent` keeps every other name and type
  of a public zone resolving normally; `static` when unbound is the only source of the zone.
- The command exits 1 on any error (a refused connection, a line it cannot parse).

Order: the file is written first, then unbound-control runs (remove every name the file held or
now holds, then add the new RRs, two calls). When unbound is down the file is still in place,
so its next start serves the right addresses, and the failure is reported (ZoneApplyError); the
agent tries again at the next sync. When the file cannot be written, the running server is not
touched either, so the server and its configuration never disagree because of us.

A family missing from an update (its address is unknown this time) keeps the records the file
held for it. The helpers below that are not unbound-specific are shared with the dnsmasq backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype

from ddnsagent.address import IPAddress
from ddnsagent.errors import ZoneApplyError
from ddnsagent.table import Table
from ddnsagent.zones.base import Desired, ZoneCommon, read_common
from ddnsagent.zones.edit.atomic import atomic_write

TYPE = "unbound"
KEYS = "include, control"

DEFAULT_INCLUDE = "/etc/unbound/unbound.conf.d/ddnsagent.conf"
DEFAULT_CONTROL = ("unbound-control",)
CONTROL_TIMEOUT = 15.0

Records = dict[str, dict[int, list[IPAddress]]]  # absolute name → family → addresses

MARK = "# Managed by ddnsagent"
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
_LOCAL_DATA = re.compile(
    r'^\s*local-data:\s*"(?P<name>\S+)\s+\d+\s+IN\s+(?P<type>A|AAAA)\s+(?P<address>\S+)"\s*$'
)
_RRTYPE = {4: "A", 6: "AAAA"}


@dataclass(frozen=True)
class Settings(ZoneCommon):
    include: Path
    control: tuple[str, ...]


def from_table(t: Table) -> Settings:
    common = read_common(t)
    check_hostnames(t, common)
    include = absolute_path(t, "include", DEFAULT_INCLUDE)
    control = t.str_list("control", list(DEFAULT_CONTROL))
    if not control or not control[0]:
        raise t.error(
            "control",
            "is empty",
            'give the program and its options, e.g. ["unbound-control", "-c", '
            '"/etc/unbound/unbound.conf"]',
        )
    return Settings(**common, include=include, control=tuple(control))


# -- shared with the dnsmasq backend -------------------------------------------------------------


def check_hostnames(t: Table, common: dict[str, Any]) -> None:
    """Refuse names that are not host names: they would break the file's syntax (a quote, a
    '#') or be refused by the server, and the error belongs at configuration time."""
    origin = str(common["origin"])
    if not all(_LABEL.match(label) for label in origin.rstrip(".").split(".")):
        raise t.error("origin", f"{origin!r} is not a host name", 'e.g. "example.net"')
    for name in common["names"]:
        if name != "@" and not all(_LABEL.match(label) for label in name.split(".")):
            raise t.error(
                "names", f"{name!r} is not a host name", "use letters, digits and '-' per label"
            )
    for host, _ in common["hosts"]:
        if not all(_LABEL.match(label) for label in host.split(".")):
            raise t.error(f"hosts.{host}", "is not a host name", "use letters, digits and '-'")
    if len(origin) > 254:
        raise t.error("origin", "is longer than 253 characters")


def absolute_path(t: Table, key: str, default: str) -> Path:
    path = Path(t.string(key, default))
    if not path.is_absolute():
        raise t.error(key, f"found {str(path)!r}, expected an absolute path")
    return path


def managed_names(settings: ZoneCommon) -> list[str]:
    """Every name the zone keeps, relative to the origin, in configuration order."""
    return list(dict.fromkeys([*settings.names, *(host for host, _ in settings.hosts)]))


def carry_over(settings: ZoneCommon, want: Desired, previous: Records) -> Records:
    """The records to hold now, by absolute name: `want` for its families; for the other
    families what `previous` held, since their address is unknown this time. Names no longer
    configured are dropped; names left with no address are left out."""
    out: Records = {}
    for rel in managed_names(settings):
        fqdn = settings.fqdn(rel)
        families: dict[int, list[IPAddress]] = {}
        for family in (4, 6):
            if family in want.families:
                addresses = want.records.get(rel, {}).get(family, [])
            else:
                addresses = previous.get(fqdn, {}).get(family, [])
            if addresses:
                families[family] = list(dict.fromkeys(addresses))
        if families:
            out[fqdn] = families
    return out


def header(settings: ZoneCommon, how: str) -> str:
    """The first lines of an owned file; `owner()` reads the zone name back from them."""
    return (
        f'{MARK} (zone "{settings.name}", origin {settings.origin}).\n'
        "# The agent replaces this file whole whenever an address changes: edits are lost.\n"
        f"# {how}\n"
    )


def owner(text: str) -> str | None:
    """The zone named in an owned file's header; "" for an empty file; None when the file was
    not written by the agent."""
    if not text.strip():
        return ""
    first = text.splitlines()[0]
    match = re.match(re.escape(MARK) + r' \(zone "([^"]*)"', first)
    return match.group(1) if match else None


def read_owned(path: Path, settings: ZoneCommon) -> str:
    """The current text of an owned file ("" when missing), or ZoneApplyError when the file
    belongs to someone else: it is never overwritten then."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ZoneApplyError(f"cannot read {path}: {exc}; nothing changed") from None
    who = owner(text)
    if who is None:
        raise ZoneApplyError(
            f"{path} exists and was not written by ddnsagent; nothing changed. The agent owns "
            "this file entirely: move your own content elsewhere and delete it, or choose "
            "another path for this zone"
        )
    if who and who != settings.name:
        raise ZoneApplyError(
            f'{path} belongs to zone "{who}"; nothing changed. Give each [[zone]] its own file '
            "(or delete this one if you renamed the zone)"
        )
    return text


async def write_owned(path: Path, text: str) -> None:
    """Atomically, mode 0644 so the server's own user can read it, no backup: a `.bak` beside
    it could be picked up by a directory include and serve stale addresses."""
    try:
        await asyncio.to_thread(atomic_write, path, text.encode(), 0o644, False)
    except OSError as exc:
        fix = " (create the directory first)" if isinstance(exc, FileNotFoundError) else ""
        raise ZoneApplyError(
            f"cannot write {path}: {exc}{fix}; the running server was not touched"
        ) from None


def summary(records: Records) -> str:
    parts = []
    for fqdn, families in records.items():
        for family, addresses in sorted(families.items()):
            parts += [f"{fqdn} {_RRTYPE[family]} {a}" for a in addresses]
    return ", ".join(parts) if parts else "no records"


def count(records: Records) -> int:
    return sum(len(a) for families in records.values() for a in families.values())


async def check_served(
    server: tuple[str, int],
    records: Records,
    attempts: int = 10,
    delay: float = 0.2,
    timeout: float = 2.0,
) -> None:
    """Ask `server` for every record held, until all answers match or `attempts` rounds are
    spent (a server may load a change a moment after being told to)."""
    host, port = server
    pending = [
        (fqdn, family, {str(a) for a in addresses})
        for fqdn, families in records.items()
        for family, addresses in families.items()
    ]
    wrong: list[str] = []
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(delay)
        wrong = []
        still = []
        for fqdn, family, expected in pending:
            got = await _lookup(host, port, fqdn, family, timeout)
            if got != expected:
                shown = ", ".join(sorted(got)) if isinstance(got, set) else got
                wrong.append(f"{fqdn} {_RRTYPE[family]} is {shown or 'empty'}")
                still.append((fqdn, family, expected))
        pending = still
        if not pending:
            return
    raise ZoneApplyError(f"{host} port {port} does not serve the new records: {'; '.join(wrong)}")


async def _lookup(host: str, port: int, fqdn: str, family: int, timeout: float) -> set[str] | str:
    rdtype = dns.rdatatype.A if family == 4 else dns.rdatatype.AAAA
    query = dns.message.make_query(fqdn, rdtype)
    try:
        answer = await dns.asyncquery.udp(query, host, timeout=timeout, port=port)
    except (dns.exception.DNSException, OSError) as exc:
        return f"unknown ({type(exc).__name__}: {exc})"
    return {
        str(ipaddress.ip_address(rr.address))
        for rrset in answer.answer
        if rrset.rdtype == rdtype
        for rr in rrset
    }


async def run_command(
    argv: Sequence[str], stdin: str = "", timeout: float = CONTROL_TIMEOUT
) -> tuple[int, str]:
    """(exit code, stdout and stderr together); FileNotFoundError and PermissionError for a
    program that cannot be started, TimeoutError after killing one that hangs."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(stdin.encode()), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace").strip()


# -- unbound -------------------------------------------------------------------------------------


def render(settings: Settings, records: Records) -> str:
    lines = [
        header(
            settings,
            "unbound reads it through include: or include-toplevel:, and the agent loads the "
            "same records with unbound-control.",
        ),
        "server:\n",
    ]
    lines += [f'    local-data: "{rr}"\n' for rr in resource_records(settings, records)]
    return "".join(lines)


def resource_records(settings: ZoneCommon, records: Records) -> list[str]:
    return [
        f"{fqdn} {settings.ttl} IN {_RRTYPE[family]} {address}"
        for fqdn, families in records.items()
        for family, addresses in sorted(families.items())
        for address in addresses
    ]


def parse(text: str) -> Records:
    """The records of an include file this module wrote; other lines are ignored."""
    out: Records = {}
    for line in text.splitlines():
        match = _LOCAL_DATA.match(line)
        if not match:
            continue
        try:
            address = ipaddress.ip_address(match["address"])
        except ValueError:
            continue
        family = 4 if match["type"] == "A" else 6
        if address.version != family:
            continue
        fqdn = match["name"].lower()
        out.setdefault(fqdn if fqdn.endswith(".") else fqdn + ".", {}).setdefault(
            family, []
        ).append(address)
    return out


class Backend:
    TYPE = TYPE

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, want: Desired) -> str:
        s = self.settings
        records = carry_over(s, want, self._previous_quietly())
        return f"write {s.include} and load with {' '.join(s.control)}: {summary(records)}"

    def _previous_quietly(self) -> Records:
        try:
            return parse(self.settings.include.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return {}

    async def apply(self, want: Desired) -> str:
        s = self.settings
        previous = parse(read_owned(s.include, s))
        records = carry_over(s, want, previous)
        await write_owned(s.include, render(s, records))
        done = f"wrote {count(records)} records to {s.include}"
        names = list(dict.fromkeys([*previous, *(s.fqdn(n) for n in managed_names(s))]))
        await self._control("local_datas_remove", names, done)
        rrs = resource_records(s, records)
        if rrs:
            await self._control("local_datas", rrs, done)
        done += " and loaded them with unbound-control"
        if s.verify is not None:
            try:
                await check_served(s.verify, records)
            except ZoneApplyError as exc:
                raise ZoneApplyError(f"{done}, but {exc}") from None
            done += f"; {s.verify[0]} port {s.verify[1]} serves them"
        return done

    async def _control(self, command: str, lines: Iterable[str], done: str) -> None:
        argv = [*self.settings.control, command]
        shown = " ".join(argv)
        later = "unbound serves the file's records from its next start or reload"
        try:
            code, output = await run_command(argv, "".join(f"{line}\n" for line in lines))
        except (FileNotFoundError, PermissionError) as exc:
            raise ZoneApplyError(
                f"{done}, but cannot run {argv[0]}: {exc}; install unbound (unbound-control) "
                f"or set control = [...] to its path; {later}"
            ) from None
        except TimeoutError:
            raise ZoneApplyError(
                f"{done}, but `{shown}` did not finish within {CONTROL_TIMEOUT:g}s; {later}"
            ) from None
        if code != 0:
            detail = " | ".join(line for line in output.splitlines()[-3:] if line) or "no output"
            raise ZoneApplyError(
                f"{done}, but `{shown}` failed (exit {code}: {detail}); is unbound running with "
                f"remote-control enabled (control-enable: yes)? {later}"
            )
