"""The file an unbound or dnsmasq backend owns whole: its header, who wrote it, reading and
replacing it, the records it should hold now, and asking the server whether it serves them.

The agent owns such a file entirely: it is replaced whole, atomically, at every change, and
starts with a header naming the zone, so a file someone else wrote (or another zone's) is never
overwritten. Its directory is opened once and the file is read and replaced by plain name in
it (`OwnedFile`), so a link, FIFO or hard link planted at its name is refused, never followed.
A family whose address is unknown this time keeps what the file held for it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import dns.exception

from ddnsagent import dnsclient
from ddnsagent.address import IPAddress
from ddnsagent.errors import UnsafeFile, ZoneApplyError
from ddnsagent.safefile import Directory
from ddnsagent.table import Table
from ddnsagent.zones.base import Desired, ZoneCommon
from ddnsagent.zones.edit import atomic

Records = dict[str, dict[int, list[IPAddress]]]  # absolute name → family → addresses

MARK = "# Managed by ddnsagent"
RRTYPE = {4: "A", 6: "AAAA"}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)


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


# An owned file holds a few records per name: 1 MiB is thousands of times more than that, and
# small enough that reading a runaway file costs nothing.
MAX_OWNED_BYTES = 1024 * 1024


class OwnedFile:
    """An owned file in its directory, opened once: read through one descriptor (no link
    followed, a regular file with one name, owned by root, by the directory's owner or by us,
    capped), then replaced in the same opened directory. The directory may belong to another
    user (dnsmasq's hosts file in the service user's directory): whatever that user plants at
    the name, root neither reads nor writes through it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.directory = Directory(path.parent)
        except UnsafeFile as exc:
            raise ZoneApplyError(f"{exc}; nothing changed") from None
        self.old: atomic.Read | None = None

    def __enter__(self) -> OwnedFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.directory.close()

    def read(self, settings: ZoneCommon) -> str:
        """The current text ("" when missing), or ZoneApplyError when the file is unsafe or
        belongs to someone else: it is never overwritten then."""
        owners = atomic.trusted_owners(self.directory, [os.geteuid()])
        try:
            self.old = atomic.read(self.directory, self.path.name, MAX_OWNED_BYTES, owners)
            text = self.old.data.decode("utf-8")
        except FileNotFoundError:
            return ""
        except UnsafeFile as exc:
            raise ZoneApplyError(
                f"{exc}; nothing changed. The agent's file must be a regular file (not a link), "
                "with one name, owned by root, by the directory's owner or by the agent's user"
            ) from None
        except UnicodeDecodeError:
            raise ZoneApplyError(f"{self.path} is not UTF-8 text; nothing changed") from None
        except OSError as exc:
            raise ZoneApplyError(
                f"cannot read {self.path}: {exc.strerror or exc}; nothing changed"
            ) from None
        who = owner(text)
        if who is None:
            raise ZoneApplyError(
                f"{self.path} exists and was not written by ddnsagent; nothing changed. The agent "
                "owns this file entirely: move your own content elsewhere and delete it, or "
                "choose another path for this zone"
            )
        if who and who != settings.name:
            raise ZoneApplyError(
                f'{self.path} belongs to zone "{who}"; nothing changed. Give each [[zone]] its '
                "own file (or delete this one if you renamed the zone)"
            )
        return text

    async def write(self, text: str) -> None:
        """Atomically, mode 0644 so the server's own user can read it, no backup: a `.bak`
        beside it could be picked up by a directory include and serve stale addresses."""
        import asyncio  # not at the top: check-config and status read only the settings

        try:
            await asyncio.to_thread(
                atomic.replace,
                self.directory,
                self.path.name,
                text.encode(),
                self.old,
                keep_backup=False,
                mode=0o644,
            )
        except OSError as exc:
            raise ZoneApplyError(
                f"cannot write {self.path}: {exc.strerror or exc}; the running server was not "
                "touched"
            ) from None


def peek(path: Path) -> str:
    """The text of an owned file for a dry run: "" when it cannot be read safely."""
    try:
        with Directory(path.parent) as directory:
            owners = atomic.trusted_owners(directory, [os.geteuid()])
            return atomic.read(directory, path.name, MAX_OWNED_BYTES, owners).data.decode()
    except (OSError, UnicodeDecodeError, UnsafeFile):
        return ""


def summary(records: Records) -> str:
    parts = []
    for fqdn, families in records.items():
        for family, addresses in sorted(families.items()):
            parts += [f"{fqdn} {RRTYPE[family]} {a}" for a in addresses]
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
    import asyncio  # not at the top: check-config and status read only the settings

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
                wrong.append(f"{fqdn} {RRTYPE[family]} is {shown or 'empty'}")
                still.append((fqdn, family, expected))
        pending = still
        if not pending:
            return
    raise ZoneApplyError(f"{host} port {port} does not serve the new records: {'; '.join(wrong)}")


async def _lookup(host: str, port: int, fqdn: str, family: int, timeout: float) -> set[str] | str:
    rdtype = RRTYPE[family]
    try:
        answer = await dnsclient.query_async(host, port, fqdn, rdtype, timeout)
    except (dns.exception.DNSException, OSError) as exc:
        return f"unknown ({type(exc).__name__}: {exc})"
    return {str(ipaddress.ip_address(text)) for text in dnsclient.rdata_texts(answer, fqdn, rdtype)}
