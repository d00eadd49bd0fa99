"""Root in the service user's state directory: each plant the issue names, performed for real.

The service user (a throwaway uid that owns the state directory, as `ddnsagent` owns
/var/lib/ddnsagent) plants a link, a hard link or a FIFO where ddnsagent keeps its files; then
root runs `hook ip-up` (with the control socket missing, so it syncs itself, as pppd's hook does
when the service user has deleted the socket), `reconnect` and `notify-now` as real processes.
The victim, a root-only file, must come out untouched — content, owner, mode and ctime — and the
command must say what it refused. A full disk while saving and a state directory whose path the
service user could steer are tried the same way.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddnsagent.store import FILENAME, HISTORY_FILENAME
from tests.conftest import (
    FIRST,
    child_env,
    config_text,
    ddnsagent,
    dyndns2_provider,
)
from tests.fakes import Dyndns2Server, EchoServer

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: the attacks are on root, by another uid"
)

SERVICE_UID = 54321  # a throwaway uid standing for the service user
PRECIOUS = b"root:secret-hash-that-must-stay\n"
HOOK_ADDRESS = "203.0.113.9"


def as_service_user(directory: Path, action: str) -> None:
    """Run `action` (Python; `os` imported, `d` a descriptor of `directory`) as the service
    user. The directory is opened before the switch, as the test's parents are root's alone."""
    script = (
        f"import os\nd = os.open({str(directory)!r}, os.O_RDONLY)\n"
        f"os.setgid({SERVICE_UID})\nos.setuid({SERVICE_UID})\n{action}\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)


def snapshot(path: Path) -> tuple[object, ...]:
    st = path.stat()
    return path.read_bytes(), st.st_uid, st.st_gid, st.st_mode, st.st_mtime_ns, st.st_ctime_ns


class Scene:
    """A state directory of the service user after one good sync, a root-only victim beside it,
    and a configuration for root with a missing control socket and a [reconnect] section."""

    def __init__(self, tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server) -> None:
        self.tmp = tmp_path
        self.dyn = dyn
        self.state = tmp_path / "state"
        self.state.mkdir(mode=0o700)
        os.chown(self.state, SERVICE_UID, SERVICE_UID)
        self.victim = tmp_path / "victim"
        fd = os.open(self.victim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, PRECIOUS)
        os.close(fd)
        self.marker = tmp_path / "reconnect-ran"
        text = config_text(
            self.state,
            echo.echo_url,
            dyndns2_provider(dyn.update_url),
            agent=f'control_socket = "{tmp_path / "gone.sock"}"',
        )
        text += (
            f'[reconnect]\ncommand = ["/bin/touch", "{self.marker}"]\n'
            'wait_for_address = "1s"\ncooldown = "1s"\nmax_per_day = 100\n'
        )
        self.config = tmp_path / "config.toml"
        self.config.write_text(text)
        self.config.chmod(0o600)
        first = self.run("notify-now")
        assert first.returncode == 0, first.stdout + first.stderr
        assert sorted(os.listdir(self.state)) == [HISTORY_FILENAME, "lock", FILENAME]
        for name in os.listdir(self.state):  # root's writes were given to the service user
            assert (self.state / name).stat().st_uid == SERVICE_UID, name

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        if command == "hook":
            env = child_env(IFNAME="ppp0", IPLOCAL=HOOK_ADDRESS)
            return ddnsagent("hook", "ip-up", "--config", self.config, env=env)
        return ddnsagent(command, "--config", self.config)

    def plant(self, kind: str, name: str) -> None:
        """The service user replaces `name` with a plant pointing at the victim."""
        if kind == "hard link":
            # protected_hardlinks=1 stops a user from linking a file it cannot read; where it
            # is 0 the service user can, and root making the link here stands for that.
            with contextlib.suppress(FileNotFoundError):
                (self.state / name).unlink()
            os.link(self.victim, self.state / name)
            return
        make = {
            "symlink": f"os.symlink({str(self.victim)!r}, {name!r}, dir_fd=d)",
            "fifo": f"os.mkfifo({name!r}, dir_fd=d)",
        }[kind]
        as_service_user(
            self.state,
            f"try:\n    os.unlink({name!r}, dir_fd=d)\nexcept FileNotFoundError:\n    pass\n{make}",
        )


@pytest.fixture
def scene(tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server) -> Iterator[Scene]:
    yield Scene(tmp_path, echo, dyn)


COMMANDS = ("hook", "reconnect", "notify-now")
WORDS = {"symlink": "is a symbolic link", "hard link": "has 2 hard links", "fifo": "is a FIFO"}


def refused(path: Path, kind: str, text: str) -> bool:
    """`text` names `path`, what was found there, and that it was refused."""
    said = f"{path} {WORDS[kind]}"
    return said in text and "refused" in text.split(said, 1)[1][:80]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("symlink", "lock"),
        ("hard link", "lock"),
        ("fifo", "lock"),
        ("symlink", FILENAME),
        ("hard link", FILENAME),
        ("fifo", FILENAME),
    ],
)
def test_a_plant_in_the_state_directory_is_refused_and_the_victim_untouched(
    scene: Scene, kind: str, name: str, command: str
) -> None:
    scene.plant(kind, name)
    before = snapshot(scene.victim)
    sent = len(scene.dyn.requests)
    run = scene.run(command)
    assert snapshot(scene.victim) == before
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("ddnsagent: error: ")
    assert refused(scene.state / name, kind, line), line
    assert "find out who made this, then remove it" in line
    assert len(scene.dyn.requests) == sent  # refused before anything was sent
    assert not scene.marker.exists()  # and before the reconnect command ran


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["symlink", "hard link", "fifo"])
def test_a_plant_where_the_history_is_kept_is_refused_and_the_victim_untouched(
    scene: Scene, kind: str, command: str
) -> None:
    """The address history's own file (issue 14): the plant is no longer the file state.json's
    index describes, so the next note reads it — and refuses it like state.json."""
    scene.plant(kind, HISTORY_FILENAME)
    before = snapshot(scene.victim)
    sent = len(scene.dyn.requests)
    run = scene.run(command)
    assert snapshot(scene.victim) == before
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert refused(scene.state / HISTORY_FILENAME, kind, run.stderr), run.stderr
    assert "find out who made this, then remove it" in run.stderr
    if command != "reconnect":  # the sync notes the address before it sends anything
        assert len(scene.dyn.requests) == sent


@pytest.mark.parametrize("kind", ["symlink", "hard link", "fifo"])
def test_a_planted_reconnect_lock_stops_the_reconnect_alone(scene: Scene, kind: str) -> None:
    scene.plant(kind, "reconnect.lock")
    before = snapshot(scene.victim)
    run = scene.run("reconnect")
    assert snapshot(scene.victim) == before
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert refused(scene.state / "reconnect.lock", kind, run.stderr), run.stderr
    assert not scene.marker.exists()
    for command in ("hook", "notify-now"):  # they do not use that lock
        other = scene.run(command)
        assert other.returncode == 0, other.stdout + other.stderr
    assert snapshot(scene.victim) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_a_planted_temporary_file_is_never_opened(scene: Scene, command: str) -> None:
    """`.state.json.tmp` was the fixed temporary name root opened with O_TRUNC; saves now go
    through a new random name, and a leftover of that name is reported, not touched."""
    planted = f".{FILENAME}.tmp"
    scene.plant("symlink", planted)
    before = snapshot(scene.victim)
    run = scene.run(command)
    assert snapshot(scene.victim) == before
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert f"{scene.state / planted} is a symbolic link where ddnsagent keeps" in run.stderr
    assert (scene.state / planted).is_symlink()
    if command == "reconnect":
        assert scene.marker.exists()  # it did run: nothing it needs was refused
    st = (scene.state / FILENAME).stat()
    assert (st.st_uid, st.st_nlink) == (SERVICE_UID, 1)


def test_temporary_files_of_an_interrupted_save_are_removed(scene: Scene) -> None:
    leftovers = [f".{FILENAME}.tmp", f".{FILENAME}.0123456789ab.tmp"]  # old and new names
    leftovers.append(f".{HISTORY_FILENAME}.0123456789ab.tmp")
    for name in leftovers:
        (scene.state / name).write_text('{"half": ')
    run = scene.run("notify-now")
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(os.listdir(scene.state)) == [HISTORY_FILENAME, "lock", FILENAME]


def test_a_state_directory_reached_through_the_service_users_directory_is_refused(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    """The service user swaps a directory on the way to the state for a link to root's own."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chown(home, SERVICE_UID, SERVICE_UID)
    roots = tmp_path / "roots"
    roots.mkdir(mode=0o700)
    as_service_user(home, f"os.symlink({str(roots)!r}, 'var', dir_fd=d)")
    text = config_text(home / "var" / "state", echo.echo_url, dyndns2_provider(dyn.update_url))
    config = tmp_path / "config.toml"
    config.write_text(text)
    config.chmod(0o600)
    for command in ("notify-now", "status"):
        run = ddnsagent(command, "--config", config)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        assert f"{home} belongs to uid {SERVICE_UID}, so someone else could redirect" in run.stderr
    assert list(roots.iterdir()) == []  # nothing was made where the link led
    assert dyn.requests == []


def test_a_state_directory_that_is_a_link_or_open_to_others_is_refused(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    for state_dir, said in (
        (tmp_path / "link", f"{tmp_path / 'link'} is a symbolic link"),
        (real, f"{real} is writable by group or others (mode 0777)"),
    ):
        if state_dir == real:
            real.chmod(0o777)
        text = config_text(state_dir, echo.echo_url, dyndns2_provider(dyn.update_url))
        config = tmp_path / "config.toml"
        config.write_text(text)
        config.chmod(0o600)
        run = ddnsagent("notify-now", "--config", config)
        assert run.returncode == 1, run.stdout + run.stderr
        assert said in run.stderr and "Traceback" not in run.stderr
    assert "chmod 700" in run.stderr
    assert list(real.iterdir()) == [] and dyn.requests == []


# -- a full disk ---------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(where)],
        check=True,
        timeout=30,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True, timeout=30)


def fill(fs: Path) -> None:
    """Write a filler file until the file system is full (bounded: it is 512 KiB)."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(1024):
            try:
                os.write(fd, b"\0" * 4096)
            except OSError:
                return
    finally:
        os.close(fd)
    raise AssertionError("the tmpfs never filled up")


def test_a_full_disk_while_saving_keeps_the_old_state_and_says_so(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    with small_tmpfs(tmp_path / "fs") as fs:
        state = fs / "state"
        text = config_text(state, echo.echo_url, dyndns2_provider(dyn.update_url))
        config = tmp_path / "config.toml"
        config.write_text(text)
        config.chmod(0o600)
        first = ddnsagent("notify-now", "--config", config)
        assert first.returncode == 0, first.stdout + first.stderr
        saved = (state / FILENAME).read_bytes()
        fill(fs)

        run = ddnsagent("notify-now", "--force", "--config", config)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert line == (
            f"ddnsagent: error: cannot save the state in {state / FILENAME}: No space left on "
            f"device — it still holds what it held before this run; free space on the file "
            f"system of {state}"
        )
        assert (state / FILENAME).read_bytes() == saved
        files = [HISTORY_FILENAME, "lock", FILENAME]
        assert sorted(os.listdir(state)) == files  # no temporary file left
        assert len(dyn.requests) == 2  # the second was sent; only its record was lost

        # A new address: the history's file is saved first, and that fails the same way.
        history = (state / HISTORY_FILENAME).read_bytes()
        run = ddnsagent("notify-now", "--address", "203.0.113.77", "--config", config)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stdout + run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert line.startswith(
            f"ddnsagent: error: cannot save the address history in {state / HISTORY_FILENAME}: "
            "No space left on device — it still holds what it held before this run"
        ), line
        assert (state / FILENAME).read_bytes() == saved
        assert (state / HISTORY_FILENAME).read_bytes() == history
        assert sorted(os.listdir(state)) == files

        (fs / "filler").unlink()
        again = ddnsagent("status", "--config", config)
        assert again.returncode == 0 and again.stderr == "", again.stderr
        assert f"sent ipv4 {FIRST}" in again.stdout
