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
held for it. What is not unbound's own (the owned file, carrying records over, asking the server)
is in `owned`, shared with the dnsmasq backend.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ddnsagent.errors import ZoneApplyError
from ddnsagent.table import Table
from ddnsagent.zones.base import Desired, ZoneBackend, ZoneCommon, read_common
from ddnsagent.zones.owned import (
    RRTYPE,
    OwnedFile,
    Records,
    absolute_path,
    carry_over,
    check_hostnames,
    check_served,
    count,
    header,
    managed_names,
    peek,
    summary,
)

TYPE = "unbound"
KEYS = "include, control"

DEFAULT_INCLUDE = "/etc/unbound/unbound.conf.d/ddnsagent.conf"
DEFAULT_CONTROL = ("unbound-control",)
CONTROL_TIMEOUT = 15.0

_LOCAL_DATA = re.compile(
    r'^\s*local-data:\s*"(?P<name>\S+)\s+\d+\s+IN\s+(?P<type>A|AAAA)\s+(?P<address>\S+)"\s*$'
)


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
        f"{fqdn} {settings.ttl} IN {RRTYPE[family]} {address}"
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
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, want: Desired) -> str:
        s = self.settings
        records = carry_over(s, want, self._previous_quietly())
        return f"write {s.include} and load with {' '.join(s.control)}: {summary(records)}"

    def _previous_quietly(self) -> Records:
        return parse(peek(self.settings.include))

    async def apply(self, want: Desired) -> str:
        s = self.settings
        with OwnedFile(s.include) as owned:
            previous = parse(owned.read(s))
            records = carry_over(s, want, previous)
            await owned.write(render(s, records))
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
        # lazy: the process runner loads asyncio (~15 ms); check-config and status need neither
        from ddnsagent import process

        argv = [*self.settings.control, command]
        shown = " ".join(argv)
        later = "unbound serves the file's records from its next start or reload"
        outcome = await process.run_async(
            argv, CONTROL_TIMEOUT, stdin="".join(f"{line}\n" for line in lines)
        )
        if outcome.timed_out:
            raise ZoneApplyError(
                f"{done}, but `{shown}` did not finish within {CONTROL_TIMEOUT:g}s; {later}"
            )
        if not outcome.started:
            raise ZoneApplyError(
                f"{done}, but cannot run {argv[0]} ({outcome.problem}); install unbound "
                f"(unbound-control) or set control = [...] to its path; {later}"
            )
        if not outcome.ok:
            lines_out = outcome.output.splitlines()[-3:]
            detail = " | ".join(line for line in lines_out if line) or "no output"
            raise ZoneApplyError(
                f"{done}, but `{shown}` failed (exit {outcome.returncode}: {detail}); is unbound "
                f"running with remote-control enabled (control-enable: yes)? {later}"
            )


_: type[ZoneBackend] = Backend  # mypy checks the class against the protocol
