"""$INCLUDE files: confined to one directory, read safely, each once, and never quoted.

A zone file may name other files with `$INCLUDE`. Root edits the zone, and whoever can write
the zone's directory can write the zone file, so a `$INCLUDE /etc/shadow` must not make root
read that file, and `$INCLUDE /dev/zero` must not read until memory runs out. The rules:

- only files directly in `include_dir` (BIND's `directory`; by default the zone file's own
  directory) are read: a plain name, or an absolute path whose directory is `include_dir`;
  anything else is refused, naming the $INCLUDE line;
- each file is opened through the same opened directory as the zone (no links followed, a
  regular file with one link and a trusted owner, O_NONBLOCK so a FIFO cannot block);
- all included files together are capped at `limit` bytes, and at MAX_VISITS inclusions;
- no message ever quotes an included file's content: errors name the file and the line only
  (such a file may be one root can read and the author of the zone cannot).

Included files are read once and kept (`texts`), so the check command can be given copies of
exactly what was examined instead of opening the names again (`write_copies`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ddnsagent.errors import UnsafeFile, ZoneEditError
from ddnsagent.safefile import Directory
from ddnsagent.zones.edit import atomic

MAX_VISITS = 256  # inclusions followed per zone (depth is capped separately by the editor)


class IncludeReader:
    """Reads the $INCLUDE files of one zone from `directory`, each at most once.

    `owners`: who may own an included file (None: root and the directory's owner). `limit`:
    the total size of all included files.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        limit: int,
        owners: Iterable[int] | None = None,
        extra_owners: Iterable[int] = (),
    ) -> None:
        self.path = Path(directory)
        self.limit = limit
        self._owners = None if owners is None else frozenset(owners)
        self._extra = tuple(extra_owners)
        self._directory: Directory | None = None
        self.texts: dict[str, str] = {}  # plain name → text, in the order first read
        self.spans: dict[str, list[tuple[str, tuple[int, int] | None]]] = {}  # name → $INCLUDEs
        self._total = 0
        self._visits = 0

    def close(self) -> None:
        if self._directory is not None:
            self._directory.close()
            self._directory = None

    def __enter__(self) -> IncludeReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def resolve(self, filename: str, where: str) -> str:
        """The plain name in the include directory that `filename` stands for; ZoneEditError
        when it is outside. `where` says which $INCLUDE line (for the message)."""
        if os.path.isabs(filename):
            parent, name = os.path.split(os.path.normpath(filename))
            inside = parent == os.path.normpath(self.path)
        else:
            name, inside = filename, "/" not in filename
        if not inside or name in ("", ".", "..") or "/" in name:
            raise ZoneEditError(
                f"{where}: the file is outside {self.path}; refused (only files directly in the "
                "zone's include_dir are read: move it there, or set include_dir)"
            )
        return name

    def read(self, name: str, where: str) -> str:
        """The text of `name` (read once); ZoneEditError naming the file, never its content."""
        if name in self.texts:
            self._visit(where)
            return self.texts[name]
        self._visit(where)
        shown = self.path / name
        try:
            if self._directory is None:
                self._directory = Directory(self.path)
            directory = self._directory
            owners = (
                self._owners
                if self._owners is not None
                else atomic.trusted_owners(directory, self._extra)
            )
            data = atomic.read(directory, name, self.limit - self._total, owners).data
        except UnsafeFile as exc:
            raise ZoneEditError(f"{where}: {exc}") from None
        except FileNotFoundError:
            raise ZoneEditError(f"{where}: {shown} does not exist") from None
        except OSError as exc:
            raise ZoneEditError(f"{where}: cannot read {shown}: {exc.strerror}") from None
        self._total += len(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ZoneEditError(f"{where}: {shown} is not UTF-8 text") from None
        self.texts[name] = text
        return text

    def _visit(self, where: str) -> None:
        self._visits += 1
        if self._visits > MAX_VISITS:
            raise ZoneEditError(f"{where}: more than {MAX_VISITS} $INCLUDEs; refused")

    def write_copies(
        self, text: str, includes: list[tuple[str, tuple[int, int] | None]], into: Path
    ) -> str:
        """Write every file read into the private directory `into` and return `text` with its
        $INCLUDE names pointing at those copies (the copies' own $INCLUDEs too), so a checker
        reads exactly what was examined here, not whatever the names hold by then."""
        copies = {name: into / f"include-{i}.db" for i, name in enumerate(self.texts)}
        for name, content in self.texts.items():
            rewritten = self._point_at_copies(content, self.spans.get(name, []), copies, name)
            fd = os.open(copies[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
                file.write(rewritten)
        return self._point_at_copies(text, includes, copies, None)

    def _point_at_copies(
        self,
        text: str,
        includes: list[tuple[str, tuple[int, int] | None]],
        copies: dict[str, Path],
        inside: str | None,
    ) -> str:
        parts: list[str] = []
        position = 0
        for filename, span in includes:
            try:
                name = self.resolve(filename, "$INCLUDE")
            except ZoneEditError:
                name = ""
            if span is None or name not in copies:
                where = f"in {self.path / inside}" if inside else "in the zone"
                raise ZoneEditError(
                    f"an $INCLUDE {where} cannot be handed to the check (write its file name on "
                    "the line of the $INCLUDE, and name a file in include_dir)"
                )
            parts += [text[position : span[0]], f'"{copies[name]}"']
            position = span[1]
        parts.append(text[position:])
        return "".join(parts)
