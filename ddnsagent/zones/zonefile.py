"""Local zone kept in a zone file that a name server (BIND, NSD, Knot) loads.

One apply: read the file, let `edit_zone` rewrite only the managed A/AAAA records and the SOA
serial, run `check` on a copy of the result, replace the file atomically (keeping the previous
one as FILE.bak), run `reload`, and ask `verify` whether the server now answers the new
addresses.  When the reload fails the previous file is put back and reloaded, so the server is
never left without a loadable zone; the error names both outcomes.

Validation: zones up to 20,000 lines are loaded whole with dnspython after the edit ("full");
bigger ones are re-scanned instead ("scan": the managed names and the serial are checked, other
records are not), because dnspython needs seconds per hundred thousand records.  `check`
(named-checkzone by default) still checks the whole file either way.

A zone that BIND serves as dynamic has a journal (FILE.jnl) beside it, and BIND writes the file
itself; editing it behind BIND's back loses updates.  With `dynamic = "freeze"` (the default)
the edit happens between `rndc freeze` and `rndc thaw` (thaw reloads the zone); with
`dynamic = "refuse"` such a zone is refused with a pointer to `type = "rfc2136"`.  Two BIND
habits are handled: `rndc freeze` returns before the journal is written into the file (we wait
until the file's serial reaches the journal's last one), and BIND deletes the journal when it
loads a newer file, so a dynamic zone may have none; its `rndc reload` then fails with "dynamic
zone", and the previous file is put back and the freeze/thaw path taken.
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ddnsagent.address import IPAddress
from ddnsagent.errors import UnsafeFile, ZoneApplyError, ZoneEditError, ZoneSyntaxError
from ddnsagent.safefile import Directory
from ddnsagent.table import Table
from ddnsagent.zones.base import Desired, ZoneBackend, ZoneCommon, absolute_records, read_common
from ddnsagent.zones.edit.serial import SERIAL_POLICIES, SerialPolicy, next_serial

if TYPE_CHECKING:  # loaded by the apply itself: check-config and status read only the settings
    from ddnsagent import dnsclient, process
    from ddnsagent.zones.edit import atomic
    from ddnsagent.zones.edit.editor import Validation
    from ddnsagent.zones.edit.includes import IncludeReader

TYPE = "zonefile"
KEYS = (
    "path, serial (date|increment|unixtime), check, reload, dynamic (freeze|refuse), "
    "freeze, thaw, include_dir, owners, timeout"
)

FULL_VALIDATION_MAX_LINES = 20_000
# The largest zone file read: a 100,000-record zone is about 4 MB, so this is far above any zone
# a home server keeps, and low enough that a runaway file ends in a refusal, not in MemoryError.
# A constant, not a key: nobody needs to tune it, and a key would be one more thing to get wrong.
MAX_ZONE_BYTES = 64 * 1024 * 1024
DYNAMIC_POLICIES = ("freeze", "refuse")
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])


@dataclass(frozen=True)
class Settings(ZoneCommon):
    path: str
    serial: SerialPolicy
    check: tuple[str, ...]  # {path} is the candidate file; () = no check
    reload: tuple[str, ...]  # () = the server is not told
    freeze: tuple[str, ...]
    thaw: tuple[str, ...]
    dynamic: str
    include_dir: str  # where relative $INCLUDE names are resolved (BIND's `directory`)
    timeout: float  # per command
    owners: tuple[int, ...] = ()  # uids trusted to own the zone's files, besides root and the
    # owner of its directory (e.g. bind, where named rewrites a dynamic zone in a root-owned dir)


def from_table(t: Table) -> Settings:
    common = read_common(t)
    path = Path(t.string("path"))
    if not path.is_absolute():
        path = t.file.parent / path
    zone = common["origin"].rstrip(".")
    check = _argv(t, "check", _default_check(zone))
    if check and not any("{path}" in arg for arg in check):
        raise t.error(
            "check",
            "does not name the file to check",
            'write {path} where the candidate file goes, e.g. ["named-checkzone", '
            f'"{zone}", "{{path}}"]',
        )
    reload = _argv(t, "reload", ())
    freeze = _argv(t, "freeze", _rndc_variant(reload, "freeze"))
    thaw = _argv(t, "thaw", _rndc_variant(reload, "thaw"))
    if bool(freeze) != bool(thaw):
        raise t.error("freeze" if not freeze else "thaw", "is missing", "give both or neither")
    include_dir = t.string("include_dir", str(path.parent))
    return Settings(
        **common,
        path=str(path),
        serial=t.string("serial", "date", choices=SERIAL_POLICIES),
        check=check,
        reload=reload,
        freeze=freeze,
        thaw=thaw,
        dynamic=t.string("dynamic", "freeze", choices=DYNAMIC_POLICIES),
        include_dir=include_dir,
        timeout=t.duration("timeout", 30.0),
        owners=_owners(t),
    )


def _owners(t: Table) -> tuple[int, ...]:
    uids = []
    for user in t.str_list("owners", []):
        if user.isdecimal():
            uids.append(int(user))
            continue
        try:
            uids.append(pwd.getpwnam(user).pw_uid)
        except KeyError:
            raise t.error(
                "owners", f"there is no user {user!r}", 'name a user of this machine, e.g. "bind"'
            ) from None
    return tuple(uids)


def _argv(t: Table, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = t.str_list(key, None)
    return default if value is None else tuple(value)


def _default_check(zone: str) -> tuple[str, ...]:
    found = shutil.which("named-checkzone", path=_SEARCH_PATH)
    if found is None:
        return ()
    program = "named-checkzone" if shutil.which("named-checkzone") else found
    return (program, zone, "{path}")


def _rndc_variant(reload: tuple[str, ...], verb: str) -> tuple[str, ...]:
    """`rndc [options] reload ZONE` → `rndc [options] freeze ZONE`; () for anything else."""
    if not reload or os.path.basename(reload[0]) != "rndc" or "reload" not in reload:
        return ()
    i = reload.index("reload")
    return (*reload[:i], verb, *reload[i + 1 :])


Groups = list[tuple[list[str], dict[int, list[IPAddress]]]]


def _groups(want: Desired) -> Groups:
    """Names that must hold the same addresses, together: edit_zone takes one address set."""
    groups: dict[tuple[tuple[int, tuple[str, ...]], ...], list[str]] = {}
    sets: dict[tuple[tuple[int, tuple[str, ...]], ...], dict[int, list[IPAddress]]] = {}
    for name, families in want.records.items():
        kept = {f: list(a) for f, a in sorted(families.items()) if f in want.families}
        if not kept:
            continue
        key = tuple((f, tuple(sorted(map(str, a)))) for f, a in kept.items())
        groups.setdefault(key, []).append(name)
        sets[key] = kept
    return [(names, sets[key]) for key, names in groups.items()]


class _Untouched(ZoneApplyError):
    """Failed before the zone file was replaced."""


class _DynamicAfterAll(ZoneApplyError):
    """The reload was refused because the zone is dynamic (its journal had been removed); the
    previous file is back in place."""

    def __init__(self, outcome: process.Outcome) -> None:
        super().__init__(outcome.describe())


@dataclass
class _Result:
    text: str
    old_serial: int
    new_serial: int
    changes: int
    warnings: list[str]


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self, want: Desired) -> str:
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent import dnsclient

        s = self.settings
        records = dnsclient.show_records(absolute_records(s, want))
        steps = [f"edit {s.path}: {records}"]
        if s.check:
            steps.append(f"check with `{' '.join(s.check)}`")
        steps.append(f"reload with `{' '.join(s.reload)}`" if s.reload else "no reload")
        if s.verify:
            steps.append(f"verify at {s.verify[0]}:{s.verify[1]}")
        return "; ".join(steps)

    async def apply(self, want: Desired) -> str:
        import asyncio  # not at the top: status and check-config read only the settings

        return await asyncio.to_thread(self.apply_now, want)

    def apply_now(self, want: Desired) -> str:
        s = self.settings
        groups = _groups(want)
        if not groups:
            return "nothing to do: no managed name has a known address"
        with self._zone_directory() as zone_dir:
            zone = _ZoneFile(zone_dir, Path(s.path).name, s)
            if zone_dir.exists(zone.journal):
                return self._dynamic_update(
                    zone, want, groups, f"the server keeps its changes in {s.path}.jnl"
                )
            try:
                return self._update(zone, want, groups, s.reload, "reload", dynamic=False)
            except _DynamicAfterAll as exc:
                # BIND removes the journal when it loads a newer file, and then refuses `reload`.
                why = f"the reload answered that it is: {exc}; the previous file was put back"
                return self._dynamic_update(zone, want, groups, why)

    def _zone_directory(self) -> Directory:
        """The zone file's directory, opened once: every name in it is used relative to it."""
        s = self.settings
        try:
            return Directory(Path(s.path).parent)
        except UnsafeFile as exc:
            raise ZoneApplyError(f"{exc}; {s.path} was not touched") from None

    def _dynamic_update(self, zone: _ZoneFile, want: Desired, groups: Groups, why: str) -> str:
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent import process

        s = self.settings
        if s.dynamic == "refuse":
            raise ZoneApplyError(
                f'{s.path} belongs to a dynamic zone ({why}), and dynamic = "refuse": use '
                'type = "rfc2136" to update it with DNS UPDATE, or dynamic = "freeze" to edit '
                "the file between freeze and thaw"
            )
        if not s.freeze:
            raise ZoneApplyError(
                f"{s.path} belongs to a dynamic zone ({why}); editing it needs freeze and thaw "
                '(derived only from an rndc reload): set freeze and thaw, or use type = "rfc2136"'
            )
        frozen = process.run(s.freeze, s.timeout)
        if not frozen.ok:
            hint = ""
            if "not dynamic" in frozen.output:
                hint = f"; if the zone is no longer dynamic, remove the stale {s.path}.jnl"
            raise ZoneApplyError(f"could not freeze the dynamic zone: {frozen.describe()}{hint}")
        thaw_needed = True
        try:
            self._wait_for_dump(zone)
            message = self._update(zone, want, groups, s.thaw, "thaw", dynamic=True)
            thaw_needed = False
            return message
        except _Untouched as exc:
            thaw_needed = False
            thawed = process.run(s.thaw, s.timeout)
            if thawed.ok:
                raise ZoneApplyError(f"{exc}; the zone was thawed again") from None
            raise ZoneApplyError(
                f"{exc}; and thawing failed: {thawed.describe()} — the zone is still frozen, "
                f"thaw it by hand: {' '.join(s.thaw)}"
            ) from None
        except ZoneApplyError:
            thaw_needed = False  # raised after _update ran thaw (and rolled back if it failed)
            raise
        finally:
            if thaw_needed:  # an unexpected error: never leave the zone frozen
                process.run(s.thaw, s.timeout)

    def _wait_for_dump(self, zone: _ZoneFile) -> None:
        """`rndc freeze` returns before BIND has written the journal's changes into the file;
        wait (bounded by `timeout`) until the file's serial has caught up with the journal."""
        s = self.settings
        deadline = time.monotonic() + s.timeout
        for _ in range(max(1, int(s.timeout / _DUMP_POLL) + 1)):
            try:
                if zone.dumped():
                    return
            except UnsafeFile as exc:
                raise _Untouched(zone.refusal(exc)) from None
            if time.monotonic() >= deadline:
                break
            time.sleep(_DUMP_POLL)
        raise _Untouched(
            f"after freeze, the server did not write the journal {s.path}.jnl into {s.path} "
            f"within {s.timeout:g}s; nothing was changed"
        )

    def _update(
        self,
        zone: _ZoneFile,
        want: Desired,
        groups: Groups,
        activate: tuple[str, ...],
        verb: str,
        dynamic: bool,
    ) -> str:
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent import process
        from ddnsagent.zones.edit import atomic  # lazy: see above
        from ddnsagent.zones.edit.editor import MAX_INCLUDED_BYTES  # lazy: see above
        from ddnsagent.zones.edit.includes import IncludeReader  # lazy: see above

        s = self.settings
        path = Path(s.path)
        old = zone.read()
        try:
            old_text = old.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Untouched(
                f"{path} is not UTF-8 text (byte {exc.start}); nothing changed"
            ) from None
        zone.directory.remove_stale_temps(zone.name)  # a kill -9 may have left them
        zone.directory.remove_stale_temps(zone.name + atomic.BACKUP_SUFFIX)
        with IncludeReader(s.include_dir, limit=MAX_INCLUDED_BYTES, extra_owners=s.owners) as inc:
            result = self._edit(old_text, groups, inc, zone.quotable(old))
            records = absolute_records(s, want)
            if result is None:
                if dynamic:
                    thawed = process.run(activate, s.timeout)
                    if not thawed.ok:
                        raise ZoneApplyError(
                            f"{path} is already up to date, but thawing failed: "
                            f"{thawed.describe()} — the zone is still frozen, thaw it by hand: "
                            f"{' '.join(activate)}"
                        )
                self._verify(records, "the file is already up to date")
                return f"{path} already up to date"
            self._check(result.text, inc, zone.quotable(old))

        try:
            atomic.replace(
                zone.directory, zone.name, result.text.encode("utf-8"), old, keep_backup=True
            )
        except OSError as exc:
            raise _Untouched(
                f"cannot replace {path}: {exc.strerror or exc}; nothing changed"
            ) from None
        summary = (
            f"{path}: {result.changes} record change(s), "
            f"serial {result.old_serial} -> {result.new_serial}"
        )
        if activate:
            done = process.run(activate, s.timeout)
            if not done.ok:
                if not dynamic and s.freeze and _DYNAMIC_REFUSAL in done.output:
                    problem = self._put_back(zone, old)
                    if problem:
                        raise ZoneApplyError(f"{verb} failed: {done.describe()}; {problem}")
                    raise _DynamicAfterAll(done)
                raise ZoneApplyError(self._roll_back(zone, old, activate, verb, done))
            summary += f"; {verb}ed"
        else:
            summary += "; not reloaded (no reload command)"
        self._verify(records, f"{path} holds serial {result.new_serial}")
        if s.verify:
            summary += f"; verified at {s.verify[0]}:{s.verify[1]}"
        for warning in result.warnings:
            summary += f"; warning: {warning}"
        return summary

    def _edit(
        self, text: str, groups: Groups, includes: IncludeReader, quotable: bool
    ) -> _Result | None:
        """Edit each group of names; None when the file already holds everything.

        edit_zone takes one address set per call, so names with different sets (LAN hosts)
        are edited one call after another; the serial then advances once, not per call.
        """
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent.zones.edit.editor import edit_zone

        s = self.settings
        validate: Validation = "full" if text.count("\n") <= FULL_VALIDATION_MAX_LINES else "scan"
        today, now = datetime.date.today(), int(time.time())
        current, changes, warnings, changed = text, 0, [], 0
        old_serial: int | None = None
        try:
            for names, addresses in groups:
                edit = edit_zone(
                    current,
                    s.origin,
                    names,
                    addresses,
                    ttl=s.ttl,
                    serial=s.serial,
                    today=today,
                    now=now,
                    include_dir=includes,
                    validate=validate,
                )
                if old_serial is None:
                    old_serial = edit.old_serial
                warnings += [w for w in edit.warnings if w not in warnings]
                if edit.changed:
                    changed += 1
                    changes += sum(not c.startswith("SOA serial") for c in edit.changes)
                    current = edit.text
            if not changed:
                return None
            assert old_serial is not None  # edit_zone refuses to change a zone without one
            new_serial = next_serial(old_serial, s.serial, today=today, now=now)
            if changed > 1:
                current = _set_serial(current, s.origin, new_serial)
        except (ZoneEditError, ValueError) as exc:
            detail = str(exc)
            if not quotable and "$INCLUDE" not in detail:
                # Messages about the zone's own text may quote it (a bad name, a serial): not
                # for a file that not everyone may read (someone may have renamed a secret
                # file to the zone's name).
                line = f" (line {exc.line})" if isinstance(exc, ZoneSyntaxError) else ""
                detail = (
                    f"it cannot be edited safely{line}; the details would quote the file, which "
                    "not everyone may read, so they are not shown: run named-checkzone on it"
                )
            raise _Untouched(f"{s.path}: {detail}; the file was left as it is") from None
        return _Result(current, old_serial, new_serial, changes, warnings)

    def _check(self, text: str, includes: IncludeReader, quotable: bool) -> None:
        """Run `check` on a private copy of exactly the bytes to be installed; its $INCLUDEs
        point at private copies of the included files as they were examined, so the checker
        never opens a name in a directory someone else may write."""
        import tempfile

        import dns.name

        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent import process
        from ddnsagent.zones.edit import masterfile  # lazy: see above

        s = self.settings
        if not s.check:
            return
        try:
            with tempfile.TemporaryDirectory(prefix="ddnsagent-check-") as directory:
                candidate, copies = text, None
                if "$INCLUDE" in text.upper():
                    scan = masterfile.scan(text, dns.name.from_text(s.origin), frozenset())
                    if scan.includes:
                        copies = os.path.join(directory, "included")
                        os.mkdir(copies, 0o700)
                        listed = [(i.filename, i.span) for i in scan.includes]
                        candidate = includes.write_copies(text, listed, Path(copies))
                path = os.path.join(directory, os.path.basename(s.path))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
                    file.write(candidate)
                argv = process.expand(s.check, {"path": path})
                outcome = process.run(argv, s.timeout, cwd=directory)
        except ZoneEditError as exc:
            raise _Untouched(f"{s.path}: {exc}; the file was left as it is") from None
        except OSError as exc:
            raise _Untouched(f"cannot write the copy to check: {exc.strerror or exc}") from None
        if not outcome.ok:
            raise _Untouched(
                f"the edited zone failed the check, so {s.path} was not replaced: "
                f"{_shown_output(outcome, copies is not None, quotable)}"
            )

    def _put_back(self, zone: _ZoneFile, old: atomic.Read) -> str:
        """Put the previous content back (the bytes read before the edit, which FILE.bak also
        holds); an empty string, or what went wrong."""
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent.zones.edit import atomic

        s = self.settings
        try:
            atomic.replace(zone.directory, zone.name, old.data, old, keep_backup=False)
        except OSError as exc:
            return (
                f"putting the previous file back failed too ({exc.strerror or exc}): {s.path} "
                f"holds the new zone, the previous one is in {s.path}{atomic.BACKUP_SUFFIX}"
            )
        return ""

    def _roll_back(
        self,
        zone: _ZoneFile,
        old: atomic.Read,
        activate: tuple[str, ...],
        verb: str,
        failed: process.Outcome,
    ) -> str:
        """Put the previous file back and activate it again; the message names both."""
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent import process

        s = self.settings
        problem = self._put_back(zone, old)
        if problem:
            return f"{verb} failed: {failed.describe()}; {problem}"
        again = process.run(activate, s.timeout)
        if again.ok:
            outcome = f"the previous file was put back and {verb}ed: the server serves it"
        else:
            outcome = f"the previous file was put back, but {verb} failed again: {again.describe()}"
            if verb == "thaw":
                outcome += f" — the zone may still be frozen: {' '.join(activate)}"
        return f"{verb} failed after the edit: {failed.describe()}; {outcome}"

    def _verify(self, records: dnsclient.RecordSets, state: str) -> None:
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent import dnsclient

        s = self.settings
        if s.verify is None:
            return
        try:
            dnsclient.verify(s.verify, records)
        except ZoneApplyError as exc:
            raise ZoneApplyError(f"{exc} ({state}; see the server's log)") from None


_: type[ZoneBackend] = Backend  # mypy checks the class against the protocol


_DYNAMIC_REFUSAL = "dynamic zone"  # rndc: 'reload' failed: dynamic zone
_DUMP_POLL = 0.05


class _ZoneFile:
    """The zone file in its opened directory: read, checked and replaced by plain name."""

    def __init__(self, directory: Directory, name: str, settings: Settings) -> None:
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent.zones.edit import atomic

        self.directory = directory
        self.name = name
        self.journal = name + ".jnl"
        self.settings = settings
        self.owners = atomic.trusted_owners(directory, settings.owners)

    def refusal(self, exc: UnsafeFile) -> str:
        return (
            f"{exc} — a zone file, its journal and its $INCLUDE files must be regular files "
            "(not symbolic links: set path to the real file), with one name, owned by root, by "
            f"the owner of {self.directory.path} or by a user in `owners`; nothing was changed"
        )

    def read(self) -> atomic.Read:
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent.zones.edit import atomic

        try:
            return atomic.read(self.directory, self.name, MAX_ZONE_BYTES, self.owners)
        except UnsafeFile as exc:
            raise _Untouched(self.refusal(exc)) from None
        except FileNotFoundError:
            raise _Untouched(f"cannot read {self.settings.path}: it does not exist") from None
        except OSError as exc:
            raise _Untouched(f"cannot read {self.settings.path}: {exc.strerror or exc}") from None

    @staticmethod
    def quotable(old: atomic.Read) -> bool:
        """Whether messages may quote the file: only when anyone may read it anyway."""
        return bool(old.info.st_mode & stat.S_IROTH)

    def dumped(self) -> bool:
        """Whether the zone file holds at least the journal's last serial (RFC 1982 order).
        UnsafeFile when the journal or the file is not one we read."""
        # lazy: the editor, dnspython and the runner load at the first apply, not for status
        from ddnsagent.zones.edit import atomic

        d = self.directory
        try:
            fd = d.open(self.journal, owners=self.owners)
        except FileNotFoundError:
            return True
        try:
            header = os.read(fd, 28)
        finally:
            os.close(fd)
        if len(header) < 28 or not header.startswith(b";BIND LOG V9"):
            # Not a journal format we know: settle for the file being newer than the journal.
            try:
                zone = os.stat(self.name, dir_fd=d.fd, follow_symlinks=False)
                journal = os.stat(self.journal, dir_fd=d.fd, follow_symlinks=False)
            except OSError:
                return True
            return zone.st_mtime_ns >= journal.st_mtime_ns
        # BIND's journal header: 16 bytes of format, then (serial, offset) of the first and of
        # the last transaction, 4 bytes each, big-endian.
        last = int.from_bytes(header[24:28], "big")
        try:
            text = atomic.read(d, self.name, MAX_ZONE_BYTES, self.owners).data.decode("utf-8")
            serial = _file_serial(text, self.settings.origin)
        except (FileNotFoundError, UnicodeDecodeError, ZoneEditError):
            return False
        return serial is not None and (serial - last) % 2**32 < 2**31


def _shown_output(outcome: process.Outcome, has_includes: bool, quotable: bool) -> str:
    """The failed check's outcome for a message. Its output quotes records, and says nothing
    of which file each came from: with $INCLUDE files (whose content is never quoted), or a
    zone file not everyone may read, only how it ended is shown."""
    if not has_includes and quotable:
        return outcome.describe()
    why = "the zone has $INCLUDE files" if has_includes else "not everyone may read the zone file"
    ended = f"exited {outcome.returncode}" if outcome.returncode is not None else outcome.problem
    return (
        f"`{outcome.argv[0]}` {ended}; its output is not shown because it may quote what the "
        f"files hold and {why}: run the check by hand"
    )


def _serial_span(text: str, origin: str) -> tuple[int, int] | None:
    import dns.name

    # lazy: the scanner (dnspython) loads at the first apply, not for status
    from ddnsagent.zones.edit import masterfile

    scan = masterfile.scan(text, dns.name.from_text(origin), frozenset())
    if len(scan.soa) != 1:
        return None
    soa = scan.soa[0]
    spans = masterfile.token_spans(text, soa)[soa.type_index + 1 :]
    return spans[2] if len(spans) >= 3 else None


def _file_serial(text: str, origin: str) -> int | None:
    span = _serial_span(text, origin)
    if span is None or not text[span[0] : span[1]].isdigit():
        return None
    return int(text[span[0] : span[1]])


def _set_serial(text: str, origin: str, serial: int) -> str:
    """Write `serial` over the SOA serial token (the one edit_zone found)."""
    span = _serial_span(text, origin)
    if span is None:
        raise ZoneEditError("the edited zone lost its SOA serial")
    return text[: span[0]] + str(serial) + text[span[1] :]
