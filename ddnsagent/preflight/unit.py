"""What the systemd unit says, as far as the pre-flight needs it: the user and groups the daemon
runs as, the sandbox settings that decide what it may read, write and run, and where its
credentials come from.

Read from the installed unit and its drop-ins (`/etc`, `/run`, `/usr/lib`, `/lib`, in systemd's
order of precedence, see systemd.unit(5) "Unit File Load Path"), or, without an installed unit,
from the values of the unit this project ships (`packaging/systemd/ddnsagent.service`; a test
checks that both agree). Only `[Service]` is read, and only the keys below.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

UNIT = "ddnsagent.service"
RECONNECT_UNIT = "ddnsagent-reconnect.service"
BOUNCE_HOLD_UNIT = "ddnsagent-bounce-hold.service"
# systemd.unit(5): /etc/systemd/system overrides /run/systemd/system overrides the vendor dirs.
UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/lib/systemd/system"),
)
# The PATH systemd gives a system service (systemd.exec(5), "Environment variables in spawned
# processes": the default search path; Debian 12's systemd 252 is built with /sbin and /bin).
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# systemd.exec(5), NoNewPrivileges=: a non-root service with any of these gets no_new_privs,
# exactly as with NoNewPrivileges=yes (they install seccomp filters).
_IMPLY_NNP = (
    "SystemCallFilter",
    "SystemCallArchitectures",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectClock",
    "ProtectHostname",
    "MemoryDenyWriteExecute",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
)
_LISTS = (
    "SupplementaryGroups",
    "ReadWritePaths",
    "LoadCredential",
    "Environment",
    "EnvironmentFile",
    "StateDirectory",
    "ExecStart",
)
_TRUE = ("1", "yes", "true", "on")


@dataclass(frozen=True)
class Unit:
    """The settings of ddnsagent.service that decide what the daemon can do."""

    source: str  # the files read, or "the shipped unit's defaults"
    settings: dict[str, str]  # single-valued keys, last assignment wins
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)  # list keys, resets applied

    @property
    def user(self) -> str:
        return self.settings.get("User", "root") or "root"

    @property
    def group(self) -> str | None:
        return self.settings.get("Group") or None

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(g for v in self.lists.get("SupplementaryGroups", ()) for g in v.split())

    def flag(self, key: str) -> bool:
        return self.settings.get(key, "").lower() in _TRUE

    @property
    def no_new_privileges(self) -> bool:
        """no_new_privs is set: sudo and every other setuid program are powerless."""
        if self.flag("NoNewPrivileges"):
            return True
        if self.user in ("root", "0"):
            return False
        for key in _IMPLY_NNP:
            value = self.settings.get(key, "")
            if key in ("SystemCallFilter", "RestrictAddressFamilies", "SystemCallArchitectures"):
                if value:
                    return True
            elif value.lower() in _TRUE:
                return True
        return False

    @property
    def protect_system(self) -> str:
        return self.settings.get("ProtectSystem", "no").lower()

    @property
    def protect_home(self) -> str:
        return self.settings.get("ProtectHome", "no").lower()

    @property
    def protect_proc(self) -> str:
        return self.settings.get("ProtectProc", "default").lower()

    @property
    def state_directories(self) -> tuple[Path, ...]:
        """StateDirectory=, made by systemd and given to the user at each start."""
        return tuple(
            Path("/var/lib") / d for v in self.lists.get("StateDirectory", ()) for d in v.split()
        )

    @property
    def writable(self) -> tuple[Path, ...]:
        """Where the daemon may write under ProtectSystem=strict: ReadWritePaths= and the
        StateDirectory=/RuntimeDirectory= it owns."""
        out = [
            Path(p.lstrip("-+")) for v in self.lists.get("ReadWritePaths", ()) for p in v.split()
        ]
        out += self.state_directories
        for d in self.settings.get("RuntimeDirectory", "").split():
            out.append(Path("/run") / d)
        return tuple(out)

    def may_write(self, path: Path) -> bool:
        """Whether the sandbox leaves `path` writable (permissions aside)."""
        if self.protect_system != "strict":
            return not (self.protect_system in ("full", "yes") and _under(path, Path("/etc")))
        return any(_under(path, w) for w in self.writable)

    def hidden_by(self, path: Path) -> str | None:
        """The setting that keeps the service from seeing the host's `path`, or None:
        ProtectHome= (/home, /root, /run/user empty or read-only), PrivateTmp= (a /tmp and
        /var/tmp of the unit's own)."""
        if self.protect_home not in ("no", "false", "0", "off", "") and any(
            _under(path, Path(p)) for p in ("/home", "/root", "/run/user")
        ):
            return f"ProtectHome={self.protect_home}"
        if self.flag("PrivateTmp") and any(_under(path, Path(p)) for p in ("/tmp", "/var/tmp")):
            return "PrivateTmp=yes"
        return None

    @property
    def credentials(self) -> dict[str, str]:
        """LoadCredential=NAME:PATH, by name."""
        out = {}
        for value in self.lists.get("LoadCredential", ()):
            name, _, path = value.partition(":")
            out[name] = path or name
        return out

    @property
    def environment(self) -> set[str]:
        """Variables set by Environment= (EnvironmentFile= contents are not read)."""
        names = set()
        for value in self.lists.get("Environment", ()):
            try:
                words = shlex.split(value)
            except ValueError:
                continue
            names |= {w.partition("=")[0] for w in words if "=" in w}
        return names

    @property
    def config_file(self) -> Path | None:
        """The --config of ExecStart=, the file the daemon runs with."""
        for value in self.lists.get("ExecStart", ()):
            try:
                words = shlex.split(value.lstrip("-@:+!"))
            except ValueError:
                continue
            for i, word in enumerate(words):
                if word == "--config" and i + 1 < len(words):
                    return Path(words[i + 1])
                if word.startswith("--config="):
                    return Path(word.partition("=")[2])
        return None


def _under(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


SHIPPED = Unit(
    "the shipped unit's defaults (no ddnsagent.service installed)",
    {
        "User": "ddnsagent",
        "Group": "ddnsagent",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "ProtectProc": "invisible",
        "PrivateTmp": "yes",
        "RuntimeDirectory": "ddnsagent",
    },
    {
        "SupplementaryGroups": ("adm postdrop",),
        "StateDirectory": ("ddnsagent",),
        "ExecStart": ("/usr/bin/ddnsagent run --config /etc/ddnsagent/config.toml",),
    },
)


def find(name: str = UNIT, dirs: tuple[Path, ...] = UNIT_DIRS) -> Path | None:
    """The unit file systemd would load for `name`, or None when it is not installed."""
    for d in dirs:
        path = d / name
        if path.is_file():
            return path
    return None


def drop_ins(unit_file: Path, dirs: tuple[Path, ...] = UNIT_DIRS) -> list[Path]:
    """`NAME.d/*.conf` in every unit directory of `dirs`; for one file name the directory
    earlier in the load path wins, and all are applied in file-name order."""
    chosen: dict[str, Path] = {}
    for d in dirs:
        folder = d / f"{unit_file.name}.d"
        if not folder.is_dir():
            continue
        for conf in sorted(folder.glob("*.conf")):
            chosen.setdefault(conf.name, conf)
    return [chosen[n] for n in sorted(chosen)]


def read(unit_file: Path, dirs: tuple[Path, ...] = UNIT_DIRS) -> Unit:
    """The unit file and its drop-ins, merged as systemd merges them: a later assignment of a
    single-valued key wins; an empty assignment of a list key empties it."""
    settings: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    files = [unit_file, *drop_ins(unit_file, dirs)]
    for path in files:
        section = ""
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for raw in _logical_lines(text):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            if section != "Service" or "=" not in line:
                continue
            key, _, value = (part.strip() for part in line.partition("="))
            if key in _LISTS:
                if value:
                    lists.setdefault(key, []).append(value)
                else:
                    lists[key] = []
            else:
                settings[key] = value
    return Unit(", ".join(str(p) for p in files), settings, {k: tuple(v) for k, v in lists.items()})


def _logical_lines(text: str) -> list[str]:
    """Lines with systemd's trailing-backslash continuations joined."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def timeout_start(unit_file: Path | None, dirs: tuple[Path, ...] = UNIT_DIRS) -> float | None:
    """TimeoutStartSec= of a unit in seconds (plain seconds or "2min 30s"), None if unset."""
    if unit_file is None:
        return None
    value = read(unit_file, dirs).settings.get("TimeoutStartSec")
    if not value:
        return None
    total = 0.0
    units = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "ms": 0.001}
    for word in value.replace("min", "min ").split():
        number = word.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit_name = word[len(number) :] or "s"
        try:
            total += float(number) * units.get(unit_name, 1)
        except ValueError:
            return None
    return total
