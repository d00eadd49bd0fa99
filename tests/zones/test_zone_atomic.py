"""atomic_write: content, metadata, backups, and what survives a SIGKILL."""

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

from ddnsagent.zones.edit import atomic
from ddnsagent.zones.edit.atomic import atomic_write

ATOMIC_SOURCE = Path(atomic.__file__)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_replaces_content_and_keeps_exactly_one_backup(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    atomic_write(path, b"one\n")
    assert path.read_bytes() == b"one\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not (tmp_path / "db.example.bak").exists()  # nothing to back up yet

    first_inode = path.stat().st_ino
    atomic_write(path, b"two\n")
    backup = tmp_path / "db.example.bak"
    assert (path.read_bytes(), backup.read_bytes()) == (b"two\n", b"one\n")
    assert backup.stat().st_ino == first_inode  # a hard link to the replaced file, not a copy

    atomic_write(str(path), b"three\n")
    assert (path.read_bytes(), backup.read_bytes()) == (b"three\n", b"two\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.example", "db.example.bak"]


def test_keeps_mode_unless_told_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write(path, b"new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    atomic_write(path, b"newer", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_keeps_owner_and_group_as_root(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    os.chown(path, 4242, 4343)
    path.chmod(0o2640)  # setgid survives because mode is set after chown
    atomic_write(path, b"new")
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4242, 4343, 0o2640)


def test_follows_a_symlink_and_keeps_it(tmp_path: Path) -> None:
    real = tmp_path / "real.zone"
    real.write_bytes(b"old")
    link = tmp_path / "link.zone"
    link.symlink_to(real)
    atomic_write(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"
    assert (tmp_path / "real.zone.bak").read_bytes() == b"old"


def test_without_backup(tmp_path: Path) -> None:
    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    atomic_write(path, b"new", keep_backup=False)
    assert path.read_bytes() == b"new" and leftovers(tmp_path) == []
    assert not (tmp_path / "db.example.bak").exists()


def test_backup_is_copied_where_hard_links_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object) -> None:
        raise OSError(errno.EPERM, "no hard links here")

    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    monkeypatch.setattr(atomic.os, "link", no_links)
    atomic_write(path, b"new")
    assert (tmp_path / "db.example.bak").read_bytes() == b"old"
    assert path.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_failed_rename_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def failing_replace(source: str, target: str) -> None:
        if not target.endswith(".bak"):
            raise OSError(errno.EIO, "disk on fire")
        real_replace(source, target)

    path = tmp_path / "db.example"
    path.write_bytes(b"old")
    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


# --- crash safety -------------------------------------------------------------------------------

# The writer loads atomic.py by path, so it starts without importing dnspython.
WRITER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
atomic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atomic)
path = sys.argv[2]
contents = [open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()]
atomic.atomic_write(path, contents[0])
print("writing", flush=True)
i = 1
while True:
    atomic.atomic_write(path, contents[i % 2])
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
            [sys.executable, "-c", WRITER, str(ATOMIC_SOURCE), str(path), *sources],
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == b"writing\n"
            time.sleep(rng.uniform(0, 0.05))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
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
