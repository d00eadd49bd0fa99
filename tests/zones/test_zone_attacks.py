"""Issue 11, items 2 and 5, performed for real: a user who may write the zone's directory (as
group `bind` may write /var/lib/bind; here a throwaway uid owns it) plants FIFOs, symbolic links
and hard links where root expects the zone file, its backup, its temporary files, its $INCLUDE
files and the owned hosts file. Root's sync — through the real command line, or the backend as
root — refuses, never blocks, never says "sent", and the victim file is untouched. `$INCLUDE`
of a root-only file never puts a byte of it into stdout, stderr, the log or state.json.

The attacker's moves run in a forked child that has dropped to the throwaway uid, so the
kernel, not the test, decides what that user may do."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.errors import ConfigError, ZoneApplyError, ZoneEditError
from ddnsagent.table import Table
from ddnsagent.zones import dnsmasq, registry, unbound, zonefile
from ddnsagent.zones.base import desired
from ddnsagent.zones.edit import editor
from tests.conftest import child_env, ddnsagent, write_config
from tests.zones.servers import CHECKZONE

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: the attacker is a throwaway uid, the victim root's"
)

ATTACKER = 54321  # no such user: the kernel checks numbers only
OTHER = 54322
ADDRESS = "203.0.113.9"
MARKER = "s3cr3t-7f3a9c"  # what the root-only victim holds; must never be shown

ZONE = f"""$TTL 300
@   IN SOA ns.example.net. hostmaster.example.net. ( 2026010101 3600 600 86400 300 )
    IN NS ns
ns  IN A 192.0.2.53
mail IN A 192.0.2.1
key IN TXT "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{MARKER} attacker@evil"
"""
# What root's files look like: if root ever wrote zone content through a planted name, the
# victim would stop holding exactly this.
VICTIM = f"root:$6${MARKER}$abcdefgh:19000:0:99999:7:::\n"


@dataclass
class Scene:
    root: Path  # tmp_path, root's
    zones: Path  # the zone directory, the attacker's
    zone: Path  # the zone file in it
    victim: Path  # a root-only file
    state: Path
    config: Path

    def victim_intact(self) -> None:
        info = self.victim.lstat()
        assert stat.S_ISREG(info.st_mode) and info.st_uid == 0
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert self.victim.read_text() == VICTIM, "root wrote through a planted name"

    def run(self, *extra: str) -> tuple[dict[str, Any], str]:
        """`ddnsagent notify-now` as root; its JSON report and everything it printed."""
        started = time.monotonic()
        done = ddnsagent(
            "notify-now",
            "--config",
            self.config,
            "--address",
            ADDRESS,
            "--json",
            *extra,
            env=child_env(),
            timeout=60,
        )
        assert time.monotonic() - started < 30, "the sync took too long: something blocked"
        report = json.loads(done.stdout)
        return report, done.stdout + done.stderr

    def everything_written(self, printed: str) -> str:
        """What a reader could see afterwards: the output, the state files, `status`."""
        status = ddnsagent("status", "--json", "--config", self.config, env=child_env())
        parts = [printed, status.stdout, status.stderr]
        for path in self.state.rglob("*"):
            if path.is_file():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


def as_attacker(scene: Scene, action: Callable[[], None], uid: int = ATTACKER) -> None:
    """Run `action` in a child that has become `uid` (cwd: the zone directory)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        code = 1
        try:
            os.chdir(scene.zones)  # root's tmp_path is 0700: the attacker starts from here
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            action()
            code = 0
        finally:
            os._exit(code)
    _reap(pid, "the attacker")


def _reap(pid: int, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, f"{what} failed"
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"{what} did not finish within {timeout:g}s")


def zone_config(scene: Scene, extra: str = "") -> Path:
    return write_config(
        scene.root,
        f'[agent]\nstate_dir = "{scene.state}"\n[detect]\nipv4 = []\naccept = "any"\n'
        f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{scene.zone}"\n'
        f'origin = "example.net"\nnames = ["mail"]\nreload = []\n{extra}',
    )


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    zones = tmp_path / "zones"
    zones.mkdir(mode=0o755)
    os.chown(zones, ATTACKER, ATTACKER)
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    victim.chmod(0o600)
    s = Scene(tmp_path, zones, zones / "db.example.net", victim, tmp_path / "state", Path())
    s.config = zone_config(s, "check = []\n")

    def write_zone() -> None:
        Path("db.example.net").write_text(ZONE)

    as_attacker(s, write_zone)
    return s


def failed_with(report: dict[str, Any], pattern: str) -> str:
    (target,) = report["targets"]
    assert target["action"] == "failed", target  # not "sent"
    assert pattern in target["message"], target["message"]
    return str(target["message"])


# --- the zone file ------------------------------------------------------------------------


def test_baseline_the_attackers_own_zone_is_edited(scene: Scene) -> None:
    """Without an attack the sync works in this directory: the refusals below are real."""
    report, _ = scene.run()
    assert report["targets"][0]["action"] == "sent", report
    assert f"mail IN A {ADDRESS}" in scene.zone.read_text()
    info = scene.zone.stat()
    assert (info.st_uid, info.st_gid) == (ATTACKER, ATTACKER)  # the owner is kept
    assert (scene.zones / "db.example.net.bak").read_text() == ZONE


def test_a_fifo_at_the_zone_path_is_refused_without_blocking(scene: Scene) -> None:
    """The issue's attack: the zone is a FIFO fed a valid zone by the attacker, who would swap
    the name for a link to the victim before EOF. Root never opens it for reading."""

    def plant() -> None:
        os.unlink("db.example.net")
        os.mkfifo("db.example.net", 0o644)

    as_attacker(scene, plant)
    writer = os.fork()
    if writer == 0:  # pragma: no cover - the attacker's feeder
        try:
            os.chdir(scene.zones)
            os.setgroups([])
            os.setgid(ATTACKER)
            os.setuid(ATTACKER)
            signal.alarm(20)
            with open("db.example.net", "w") as fifo:  # blocks until a reader comes
                fifo.write(ZONE)
                fifo.flush()
                os.unlink("db.example.net")
                os.symlink(scene.victim, "db.example.net")
                time.sleep(5)
        finally:
            os._exit(0)
    try:
        report, printed = scene.run()
        failed_with(report, "is a FIFO; refused")
    finally:
        os.kill(writer, signal.SIGKILL)
        os.waitpid(writer, 0)
    scene.victim_intact()
    # Nothing of ours replaced it: still the FIFO, or the link the attacker swapped in once our
    # non-blocking open let its writer go on (a race the attacker wins or not; never our file).
    try:
        mode: int | None = scene.zone.lstat().st_mode
    except FileNotFoundError:  # the attacker was stopped between its unlink and its symlink
        mode = None
    assert (
        mode is None
        or stat.S_ISFIFO(mode)
        or (stat.S_ISLNK(mode) and os.readlink(scene.zone) == str(scene.victim))
    )
    assert MARKER not in scene.everything_written(printed)


def test_a_symlink_at_the_zone_path_is_refused(scene: Scene) -> None:
    def plant() -> None:
        os.unlink("db.example.net")
        os.symlink(scene.victim, "db.example.net")

    as_attacker(scene, plant)
    report, printed = scene.run()
    message = failed_with(report, "is a symbolic link; refused")
    assert str(scene.zone) in message and "set path to the real file" in message
    scene.victim_intact()
    assert scene.zone.is_symlink() and not (scene.zones / "db.example.net.bak").exists()
    assert MARKER not in scene.everything_written(printed)


def test_a_hard_link_to_a_root_only_file_is_refused(scene: Scene) -> None:
    """fs.protected_hardlinks stops the attacker from making this link on most systems; root
    makes it here (a system without that protection), and the sync still refuses."""
    scene.zone.unlink()
    os.link(scene.victim, scene.zone)
    report, printed = scene.run()
    failed_with(report, "has 2 hard links")
    scene.victim_intact()
    assert scene.victim.stat().st_nlink == 2  # nothing renamed over the name either
    assert MARKER not in scene.everything_written(printed)


def test_a_zone_file_of_a_third_user_is_refused(scene: Scene) -> None:
    def plant() -> None:
        Path("db.example.net").write_text(ZONE)

    scene.zone.unlink()
    as_attacker(scene, lambda: os.chmod(".", 0o777))
    as_attacker(scene, plant, uid=OTHER)
    report, _ = scene.run()
    failed_with(report, f"belongs to uid {OTHER}, which is not trusted here")
    assert scene.zone.read_text() == ZONE
    # An explicit `owners` entry trusts that user (a name server writing its own zones).
    scene.config = zone_config(scene, f'check = []\nowners = ["{OTHER}"]\n')
    report, _ = scene.run()
    assert report["targets"][0]["action"] == "sent", report


def test_symlinks_at_the_backup_and_temporary_names_are_never_followed(scene: Scene) -> None:
    """The backup and temporary names are ours: a link planted there is replaced or removed,
    never written through. A planted regular file under a temporary name (a kill -9 leftover,
    or a hard link) is removed by name only."""
    backup = "db.example.net.bak"
    temps = [f".db.example.net.{n:012x}.tmp" for n in range(3)]
    decoy = scene.zones / "decoy"

    def plant() -> None:
        os.symlink(scene.victim, backup)
        os.symlink(scene.victim, temps[0])
        os.mkfifo(temps[1])
        Path(temps[2]).write_text("left by a kill -9\n")
        os.symlink(scene.victim, ".db.example.net.bak.000000000000.tmp")
        Path("decoy").write_text("the attacker's\n")

    as_attacker(scene, plant)
    report, printed = scene.run()
    assert report["targets"][0]["action"] == "sent", report
    scene.victim_intact()
    bak = scene.zones / backup
    assert not bak.is_symlink() and bak.read_text() == ZONE  # the link was replaced
    assert not (scene.zones / temps[2]).exists()  # the stale temporary file is gone
    assert (scene.zones / temps[0]).is_symlink()  # links and FIFOs are left alone, unused
    assert stat.S_ISFIFO((scene.zones / temps[1]).lstat().st_mode)
    assert decoy.read_text() == "the attacker's\n"
    assert MARKER not in printed


def test_a_swap_race_never_writes_through_a_link(scene: Scene) -> None:
    """The attacker keeps swapping the zone name between a valid zone and a link to the
    victim while root syncs: each sync either edits a real file or refuses; the victim is
    never written."""
    racer = os.fork()
    if racer == 0:  # pragma: no cover - the attacker's loop
        try:
            os.chdir(scene.zones)
            os.setgroups([])
            os.setgid(ATTACKER)
            os.setuid(ATTACKER)
            signal.alarm(60)
            for i in range(2_000_000):
                name = f"new{i % 2}"
                if i % 2:
                    os.symlink(scene.victim, name)
                else:
                    Path(name).write_text(ZONE)
                os.rename(name, "db.example.net")
        finally:
            os._exit(0)
    try:
        outcomes = set()
        for _ in range(6):
            report, _ = scene.run()
            outcomes.add(report["targets"][0]["action"])
            scene.victim_intact()
    finally:
        os.kill(racer, signal.SIGKILL)
        os.waitpid(racer, 0)
    assert outcomes <= {"sent", "failed", "unchanged"}
    scene.victim_intact()


def test_a_symlinked_zone_directory_is_refused(scene: Scene) -> None:
    (scene.root / "linked").symlink_to(scene.zones)
    scene.config = write_config(
        scene.root,
        scene.config.read_text().replace(str(scene.zone), str(scene.root / "linked" / "x")),
    )
    report, _ = scene.run()
    failed_with(report, "is a symbolic link; give the real directory instead")
    assert scene.zone.read_text() == ZONE


# --- $INCLUDE -----------------------------------------------------------------------------


def _include(scene: Scene, line: str) -> None:
    def plant() -> None:
        Path("db.example.net").write_text(ZONE + line + "\n")

    as_attacker(scene, plant)


def test_include_of_a_root_only_file_elsewhere_quotes_nothing(scene: Scene) -> None:
    """`$INCLUDE /etc/shadow`, with a root-only file of our own instead of /etc/shadow."""
    _include(scene, f"$INCLUDE {scene.victim}")
    report, printed = scene.run()
    failed_with(report, "is outside")
    assert MARKER not in scene.everything_written(printed)
    scene.victim_intact()


@pytest.mark.skipif(CHECKZONE is None, reason="named-checkzone not installed")
def test_include_of_a_root_only_file_in_the_zone_directory_quotes_nothing(scene: Scene) -> None:
    """A root-only file inside the zone directory may be included (root or the directory's
    owner own it), but neither our errors nor named-checkzone's output may quote it. Its line
    parses, so it reaches the check, whose output names the record (checked below)."""
    secret = scene.zones / "rndc.key"
    secret.write_text(f"@ IN NS ns-{MARKER}\n")  # named-checkzone: "NS 'ns-…' has no address"
    secret.chmod(0o600)
    _include(scene, "$INCLUDE rndc.key")
    scene.config = zone_config(scene)  # with the default check, named-checkzone
    report, printed = scene.run()
    failed_with(report, "its output is not shown")
    assert MARKER not in scene.everything_written(printed)
    assert scene.zone.read_text() == ZONE + "$INCLUDE rndc.key\n"  # not replaced
    # The check did see the included record (through our private copy of it):
    assert CHECKZONE is not None
    shown = subprocess.run(
        [CHECKZONE, "example.net", str(scene.zone)],
        cwd=scene.zones,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert f"ns-{MARKER}" in shown.stdout  # what our message withheld
    # A bad name: our own scanner refuses (it would quote the name), naming the line only.
    secret.write_text(f"x\n{MARKER}..bad IN A 192.0.2.1\n")
    report, printed = scene.run()
    failed_with(report, "rndc.key:2: not a valid master file line")
    assert MARKER not in scene.everything_written(printed)


def test_include_of_dev_zero_is_refused_fast(scene: Scene) -> None:
    _include(scene, "$INCLUDE /dev/zero")
    report, _ = scene.run()  # bounded by Scene.run's 30 s; a read would end in MemoryError
    failed_with(report, "is outside")
    # Even with include_dir pointed at /dev, a device is refused before a byte is read.
    started = time.monotonic()
    with pytest.raises(ZoneEditError, match="zero is a device; refused"):
        editor.edit_zone(
            ZONE + "$INCLUDE zero\n",
            "example.net.",
            ["mail"],
            {4: [ipaddress.IPv4Address(ADDRESS)]},
            today=datetime.date.today(),
            now=int(time.time()),
            include_dir="/dev",
        )
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", ["symlink", "fifo", "hardlink", "big"])
def test_an_unsafe_include_in_the_zone_directory_is_refused(scene: Scene, kind: str) -> None:
    inc = scene.zones / "static.inc"
    if kind == "symlink":
        as_attacker(scene, lambda: os.symlink(scene.victim, "static.inc"))
    elif kind == "fifo":
        as_attacker(scene, lambda: os.mkfifo("static.inc"))
    elif kind == "hardlink":
        os.link(scene.victim, inc)
    else:
        with open(inc, "wb") as file:
            file.truncate(editor.MAX_INCLUDED_BYTES + 1)
    _include(scene, "$INCLUDE static.inc")
    report, printed = scene.run()
    expected = {
        "symlink": "symbolic link",
        "fifo": "FIFO",
        "hardlink": "hard links",
        "big": "larger than",
    }[kind]
    failed_with(report, expected)
    scene.victim_intact()
    assert MARKER not in scene.everything_written(printed)


# --- the owned hosts / include files --------------------------------------------------------


def owned_settings(module: Any, path: Path, **extra: Any) -> Any:
    key = "hosts_file" if module is dnsmasq else "include"
    data = {"name": "home", "type": module.TYPE, "origin": "example.net", key: str(path)}
    return registry.parse_settings(Table({**data, **extra}, "zone.home", path.parent / "c.toml"))


@pytest.mark.parametrize("module", [dnsmasq, unbound], ids=["dnsmasq", "unbound"])
@pytest.mark.parametrize("kind", ["symlink", "fifo", "hardlink"])
def test_the_owned_file_is_never_followed(scene: Scene, module: Any, kind: str) -> None:
    """unbound's include file and dnsmasq's hosts file, in a directory the attacker owns (as
    the service user owns /var/lib/ddnsagent): root's apply refuses, fast."""
    owned_dir = scene.zones
    path = owned_dir / "agent.hosts"
    if kind == "symlink":
        as_attacker(scene, lambda: os.symlink(scene.victim, "agent.hosts"))
    elif kind == "fifo":
        as_attacker(scene, lambda: os.mkfifo("agent.hosts"))
    else:
        os.link(scene.victim, path)
    s = owned_settings(module, path, control=["false"]) if module is unbound else None
    if s is None:
        s = owned_settings(module, path, pidfile=str(owned_dir / "pid"))
    started = time.monotonic()
    with pytest.raises(ZoneApplyError, match="refused; nothing changed"):
        asyncio.run(module.Backend(s).apply(desired(s, {4: ipaddress.IPv4Address(ADDRESS)})))
    assert time.monotonic() - started < 5
    scene.victim_intact()


def test_a_pidfile_link_to_a_device_is_refused(scene: Scene) -> None:
    as_attacker(scene, lambda: os.symlink("/dev/zero", "dnsmasq.pid"))
    with pytest.raises(ZoneApplyError, match="symbolic link"):
        dnsmasq.hang_up(scene.zones / "dnsmasq.pid")


def test_zonefile_settings_owners_key(tmp_path: Path) -> None:
    def parse(owners: Any) -> zonefile.Settings:
        data = {
            "name": "z",
            "type": "zonefile",
            "path": str(tmp_path / "db"),
            "origin": "example.net",
            "owners": owners,
        }
        result: zonefile.Settings = registry.parse_settings(Table(data, "zone.z", tmp_path / "c"))
        return result

    assert parse(["root", "4242"]).owners == (0, 4242)
    with pytest.raises(ConfigError, match="no user 'no-such-user-x'"):
        parse(["no-such-user-x"])
