"""safefile: each attack a user who can write the directory could try, performed for real, with
the victim checked untouched afterwards. Owner checks use a throwaway uid (root only)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddnsagent.errors import FileTooLarge, UnsafeFile
from ddnsagent.safefile import Directory

THROWAWAY_UID = 54321  # no such user: a numeric owner is all the checks look at

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another uid)")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def test_a_planted_symlink_is_neither_read_nor_written(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    (d / "state.json").symlink_to(victim)
    with Directory(d) as directory:
        with pytest.raises(UnsafeFile, match="symbolic link"):
            directory.read("state.json", 1000)
        with pytest.raises(UnsafeFile, match="symbolic link"):
            directory.open("state.json", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        # Replacing the name swaps the link itself for our file; the target is not touched.
        directory.replace("state.json", b"{}\n")
    assert victim.read_text() == "precious\n"
    assert not (d / "state.json").is_symlink() and (d / "state.json").read_bytes() == b"{}\n"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "zone")
    with Directory(tmp_path) as directory:
        with pytest.raises(UnsafeFile, match="FIFO"):
            directory.read("zone", 1000)  # would block for ever if it waited for a writer
        with pytest.raises(UnsafeFile, match="FIFO"):
            directory.open("zone", os.O_WRONLY)


def test_a_hard_link_to_another_file_is_refused(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    os.link(victim, d / "lock")
    with Directory(d) as directory, pytest.raises(UnsafeFile, match="hard links"):
        directory.open("lock", os.O_RDWR)
    assert victim.read_text() == "precious\n"


def test_a_file_over_the_cap_is_refused_not_cut(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 5000)
    with Directory(tmp_path) as directory:
        assert directory.read("big", 5000) == b"x" * 5000
        with pytest.raises(UnsafeFile, match="larger than 4999 bytes") as refused:
            directory.read("big", 4999)
    assert "xxx" not in str(refused.value)
    # its own kind, so that the state's owner can move its history aside instead of refusing
    assert isinstance(refused.value, FileTooLarge) and refused.value.limit == 4999


def test_a_directory_given_as_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        Directory(tmp_path / "link")


def test_names_with_a_slash_are_refused(tmp_path: Path) -> None:
    with Directory(tmp_path) as directory:
        for name in ("../x", "a/b", "..", ""):
            with pytest.raises(UnsafeFile):
                directory.open(name)


def test_stale_temporary_files_are_removed_but_nothing_else(tmp_path: Path, victim: Path) -> None:
    (tmp_path / ".state.json.0123456789ab.tmp").write_text("half")
    (tmp_path / ".state.json.ffffffffffff.tmp").symlink_to(victim)
    (tmp_path / "state.json").write_text("{}")
    with Directory(tmp_path) as directory:
        removed = directory.remove_stale_temps("state.json")
    assert removed == [".state.json.0123456789ab.tmp"]
    assert (tmp_path / ".state.json.ffffffffffff.tmp").is_symlink()  # not ours: left alone
    assert victim.read_text() == "precious\n" and (tmp_path / "state.json").read_text() == "{}"


@needs_root
def test_a_file_of_a_foreign_owner_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zone").write_text("$TTL 1h\n")
    os.chown(tmp_path / "zone", THROWAWAY_UID, THROWAWAY_UID)
    with Directory(tmp_path) as directory:
        with pytest.raises(UnsafeFile, match=f"uid {THROWAWAY_UID}"):
            directory.read("zone", 1000, owners={0})
        assert directory.read("zone", 1000, owners={0, THROWAWAY_UID}) == b"$TTL 1h\n"


@needs_root
def test_a_directory_of_a_foreign_owner_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    os.chown(d, THROWAWAY_UID, THROWAWAY_UID)
    with pytest.raises(UnsafeFile, match="not trusted"):
        Directory(d, owners={0})


@needs_root
def test_replace_gives_the_file_to_the_owner_asked(tmp_path: Path) -> None:
    with Directory(tmp_path) as directory:
        directory.replace("state.json", b"{}", 0o600, owner=(THROWAWAY_UID, THROWAWAY_UID))
    st = (tmp_path / "state.json").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (THROWAWAY_UID, THROWAWAY_UID, 0o600)


def test_a_full_disk_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    """ENOSPC-like: the write fails half-way (a file size limit makes write() fail with EFBIG,
    the same path as a full disk); the old content stays and the temporary file is gone."""
    (tmp_path / "state.json").write_text("old\n")
    script = (
        "import resource, signal, sys\n"
        "from ddnsagent.safefile import Directory\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        f"d = Directory({str(tmp_path)!r})\n"
        "try:\n"
        "    d.replace('state.json', b'x' * 100000)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == str(errno.EFBIG)
    assert (tmp_path / "state.json").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# -- the path to a directory: nobody but the writers can have steered it -------------------------

WRITERS = {0, os.geteuid()}


def test_a_trusted_path_is_walked_and_missing_directories_are_made(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Directory.on_trusted_path(tmp_path / "a" / "b", writers=WRITERS)
    assert not (tmp_path / "a").exists()
    with Directory.on_trusted_path(tmp_path / "a" / "b", writers=WRITERS, create=True) as d:
        d.replace("state.json", b"{}")
    assert (tmp_path / "a" / "b" / "state.json").read_bytes() == b"{}"
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_a_link_of_a_writer_on_the_way_is_followed_but_not_as_the_last_component(
    tmp_path: Path,
) -> None:
    (tmp_path / "real" / "state").mkdir(parents=True)
    (tmp_path / "via").symlink_to("real")  # relative, as /var -> data/var
    (tmp_path / "abs").symlink_to(tmp_path / "real")
    for way in ("via", "abs"):
        with Directory.on_trusted_path(tmp_path / way / "state", writers=WRITERS) as d:
            d.replace("x", b"1")
    assert (tmp_path / "real" / "state" / "x").read_bytes() == b"1"
    with pytest.raises(UnsafeFile, match="symbolic link; give the real directory"):
        Directory.on_trusted_path(tmp_path / "via", writers=WRITERS)


def test_a_loop_of_links_ends_with_a_refusal(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(UnsafeFile, match="too many symbolic links"):
        Directory.on_trusted_path(tmp_path / "a" / "state", writers=WRITERS)


def test_a_group_writable_directory_on_the_way_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "state").mkdir(parents=True)
    shared.chmod(0o775)
    with pytest.raises(UnsafeFile, match=r"writable by group or others \(mode 0775\)"):
        Directory.on_trusted_path(shared / "state", writers=WRITERS)


def _as_throwaway(directory: Path, action: str) -> None:
    """Run `action` (Python; `os` imported, `d` a descriptor of `directory`, opened before the
    switch since the test's parents are root's alone) in a child that is the throwaway uid."""
    script = (
        f"import os\nd = os.open({str(directory)!r}, os.O_RDONLY)\n"
        f"os.setgid({THROWAWAY_UID})\nos.setuid({THROWAWAY_UID})\n{action}\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)


@needs_root
def test_a_path_through_a_directory_of_another_user_is_refused(
    tmp_path: Path, victim: Path
) -> None:
    """The other user swaps a component of the path for a link to a directory of root's."""
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, THROWAWAY_UID, THROWAWAY_UID)
    target = tmp_path / "root-only"
    target.mkdir()
    _as_throwaway(home, f"os.symlink({str(target)!r}, 'sub', dir_fd=d)")
    with pytest.raises(UnsafeFile, match=f"{home} belongs to uid {THROWAWAY_UID}"):
        Directory.on_trusted_path(home / "sub" / "state", writers={0}, create=True)
    assert list(target.iterdir()) == []  # nothing was made where the link led
    # The same link made by root in root's own directory is followed.
    os.symlink(target, tmp_path / "by-root")
    with Directory.on_trusted_path(tmp_path / "by-root" / "state", writers={0}, create=True):
        pass
    assert (target / "state").is_dir()


@needs_root
def test_in_a_sticky_directory_only_entries_of_a_writer_are_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "ours").mkdir()
    _as_throwaway(shared, "os.mkdir('theirs', dir_fd=d)\nos.symlink('ours', 'link', dir_fd=d)")
    Directory.on_trusted_path(shared / "ours", writers={0}).close()
    with pytest.raises(UnsafeFile, match=f"belongs to uid {THROWAWAY_UID} in the shared"):
        Directory.on_trusted_path(shared / "theirs", writers={0})
    with pytest.raises(UnsafeFile, match=f"symbolic link of uid {THROWAWAY_UID}"):
        Directory.on_trusted_path(shared / "link" / "x", writers={0}, create=True)
    assert not (shared / "ours" / "x").exists()


@needs_root
def test_the_owner_of_the_directory_itself_is_checked_when_asked(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    os.chown(d, THROWAWAY_UID, THROWAWAY_UID)
    with Directory.on_trusted_path(d, writers={0}) as opened:  # a service's own directory
        assert (opened.uid, opened.gid) == (THROWAWAY_UID, THROWAWAY_UID)
    with pytest.raises(UnsafeFile, match="not trusted"):
        Directory.on_trusted_path(d, writers={0}, owners={0})
