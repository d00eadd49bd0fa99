"""Exceptions raised while reading or editing a zone file."""


class ZoneEditError(Exception):
    """The zone could not be edited safely; the caller should leave the file alone."""


class ZoneSyntaxError(ZoneEditError):
    """The zone text is not a well-formed master file at ``line``."""

    def __init__(self, line: int, message: str, filename: str = "<zone>") -> None:
        super().__init__(f"{filename}:{line}: {message}")
        self.line = line
        self.filename = filename
