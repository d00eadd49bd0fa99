"""atomic: reading and replacing a file in an opened directory — content, metadata, the backup,
and what survives a SIGKILL."""

from __future__ import annotations

import errno
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import dns.zone
import pytest

from ddnsagent.errors import UnsafeFile
from ddnsagent.safefile import Directory
from ddnsagent.zones.edit import atomic

LIMIT = 1 << 20


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def write(directory: Path, name: str, data: bytes, keep_backup: bool = True) -> None:
    """Read the current file (if any) and replace it, as the zonefile backend does."""
    with Directory(directory) as d:
        owners = atomic.trusted_owners(d, [os.geteuid()])
        try:
            old: atomic.Read | None = atomic.read(d, name, LIMIT, owners)
        except FileNotFoundError:
            old = None
        atomic.replace(d, name, data, old, keep_backup=keep_backup)


def test_replaces_content_and_keeps_exactly_one_backup(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    write(tmp_path, path.name, b"one\n")
    assert path.read_bytes() == b"one\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not (tmp_path / "db.example.bak").exists()  # nothing to back up yet

    write(tmp_path, path.name, b"two\n")
    backup = tmp_path / "db.example.bak"
    assert (path.read_bytes(), backup.read_bytes()) == (b"two\n", b"one\n")
    # The backup is written from the bytes read, not linked to whatever the name holds.
    assert backup.stat().st_nlink == 1 and path.stat().st_nlink == 1

    write(tmp_path, path.name, b"three\n")
    assert (path.read_bytes(), backup.read_bytes()) == (b"three\n", b"two\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.example", "db.example.bak"]


def test_keeps_mode_unless_told_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    path.chmod(0o640)
    write(tmp_path, path.name, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "db.example.bak").stat().st_mode) == 0o640
    with Directory(tmp_path) as d:
        old = atomic.read(d, path.name, LIMIT, [os.geteuid()])
        atomic.replace(d, path.name, b"newer", old, keep_backup=False, mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_keeps_owner_and_group_as_root(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    os.chown(path, 4242, 4343)
    path.chmod(0o2640)  # setgid survives because mode is set after chown
    with Directory(tmp_path) as d:
        old = atomic.read(d, path.name, LIMIT, [4242])
        atomic.replace(d, path.name, b"new", old, keep_backup=True)
    for name in ("db.example", "db.example.bak"):
        info = (tmp_path / name).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4242, 4343, 0o2640)


def test_a_symlink_is_not_read_and_replacing_swaps_the_link_not_its_target(
    tmp_path: Path,
) -> None:
    """Deliberately changed: atomic_write used to follow a link and replace its target."""
    real = tmp_path / "real.zone"
    real.write_bytes(b"old")
    link = tmp_path / "link.zone"
    link.symlink_to(real)
    with Directory(tmp_path) as d:
        with pytest.raises(UnsafeFile, match="symbolic link"):
            atomic.read(d, "link.zone", LIMIT, [os.geteuid()])
        atomic.replace(d, "link.zone", b"new", None, keep_backup=True)
    assert real.read_bytes() == b"old"
    assert not link.is_symlink() and link.read_bytes() == b"new"


def test_over_the_cap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 101)
    with Directory(tmp_path) as d, pytest.raises(UnsafeFile, match="larger than 100 bytes"):
        atomic.read(d, "big", 100, [os.geteuid()])


def test_without_backup_and_stale_temps_removed(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    # What a kill -9 left behind: the old module's temporary names and safefile's.
    for stale in (".db.example.abc123.tmp", ".db.example.0a1b2c.bak.tmp", ".db.example.bak.f.tmp"):
        (tmp_path / stale).write_bytes(b"half")
    write(tmp_path, path.name, b"new", keep_backup=False)
    assert path.read_bytes() == b"new" and leftovers(tmp_path) == []
    assert not (tmp_path / "db.example.bak").exists()


def test_failed_rename_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def failing_replace(source: str, target: str, **kw: object) -> None:
        if not target.endswith(".bak"):
            raise OSError(errno.EIO, "disk on fire")
        real_replace(source, target, **kw)  # type: ignore[arg-type]

    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write(tmp_path, path.name, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


# --- crash safety -------------------------------------------------------------------------------

# The writer imports only atomic and safefile, so it starts without dnspython.
WRITER = """
import os, sys
from ddnsagent.safefile import Directory
from ddnsagent.zones.edit import atomic
directory, name = os.path.split(sys.argv[1])
contents = [open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()]
def write(data):
    with Directory(directory) as d:
        try:
            old = atomic.read(d, name, 1 << 24, [os.geteuid()])
        except FileNotFoundError:
            old = None
        atomic.replace(d, name, data, old, keep_backup=True)
write(contents[0])
print("writing", flush=True)
i = 1
while True:
    write(contents[i % 2])
    i += 1
"""


def zone_text(serial: int, hosts: int) -> bytes:
    head = f"$TTL 300\n$ORIGIN example.net.\n@ IN SOA ns1 hm {serial} 1 1 1 1\n@ IN NS ns1\n"
    body = "".join(f"h{i} IN A 192.0.2.{i % 250 + 1} ; padding padding\n" for i in range(hosts))
    return (head + body).encode()


def test_sigkill_at_random_moments_leaves_old_or_new_content(tmp_path: Path) -> None:
    # Different sizes, so a torn write could not pass for the other version.
    versions = [zone_text(1, 3000), zone_text(2, 1500)]
    for content in versions:
        zone = dns.zone.from_text(content.decode(), "example.net.", relativize=False)
        assert len(zone.nodes) in (3001, 1501)  # origin + hosts
    sources = []
    for i, content in enumerate(versions):
        source = tmp_path / f"version{i}"
        source.write_bytes(content)
        sources.append(str(source))
    workdir = tmp_path / "zones"
    workdir.mkdir()
    path = workdir / "example.net.zone"
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    seen = set()
    for kill in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), *sources], stdout=subprocess.PIPE
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == b"writing\n"
            time.sleep(rng.uniform(0, 0.05))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            if child.stdout is not None:
                child.stdout.close()
        for name in ("example.net.zone", "example.net.zone.bak"):
            # Byte-equal to a version that loads, so the file loads too.
            content = (workdir / name).read_bytes()
            assert content in versions, f"kill {kill} (seed {seed}): {name} is torn"
        seen.add(path.read_bytes())
        # Temporary files of killed writers may remain; nothing else may appear.
        for name in leftovers(workdir):
            assert name.startswith(".example.net.zone.") and name.endswith(".tmp"), name
    assert len(seen) == 2, f"seed {seed}: every kill found the same version"
    # The next write removes what the kills left behind.
    write(workdir, path.name, versions[0])
    assert leftovers(workdir) == []
