"""The one exception tree: every error ddnsagent raises on purpose derives from DdnsagentError,
so a caller catches what it means and the command line catches the root for the rest.

    DdnsagentError
      ConfigError            a mistake in the configuration (file, key, problem, fix)
      SecretUnavailable      a secret's source cannot be read right now
      DetectError            a detection source gave no usable address
      StateLockTimeout       another process held the state lock too long
      UnsafeFile             a path another user could redirect (link, FIFO, foreign owner, size)
        FileTooLarge           … larger than its cap
      HTTPFailure            a request produced no usable answer (network, TLS, size)
      ProviderError          a provider's answer, judged
        TransientError         try again later (min_wait: what the service asked for)
        FatalAnswer            retrying cannot help until the user acts (fix)
      ZoneError              keeping a local zone in step
        ZoneApplyError         applying failed; what was left in place is said
        ZoneEditError          the zone text cannot be edited safely
          ZoneSyntaxError        … because it is not a well-formed master file
        UpdateFailure          a DNS UPDATE was not accepted (fatal or not)
      HookError              the certbot hook ends with `code`
"""

from __future__ import annotations

from pathlib import Path


class DdnsagentError(Exception):
    """Base of every error ddnsagent raises on purpose."""


class ConfigError(DdnsagentError):
    """A mistake in the configuration: names the file, the key, what was found and the fix."""

    def __init__(
        self,
        file: Path | str | None,
        key: str,
        problem: str,
        fix: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.key = key
        self.problem = problem
        self.fix = fix
        where = f"{self.file}: " if self.file else ""
        where += f"{key}: " if key else ""
        text = where + problem
        if fix:
            text += f" — {fix}"
        super().__init__(text)


class SecretUnavailable(DdnsagentError):
    """A secret that the configuration points to cannot be read right now."""


class DetectError(DdnsagentError):
    """A detection source gave no usable address."""


class StateLockTimeout(DdnsagentError):
    """Another ddnsagent process held the state lock for too long."""


class UnsafeFile(DdnsagentError):
    """A file or directory we will not use as it is: a symbolic link, a FIFO or device, a file
    with other hard links, a foreign owner, or larger than its cap. Names the path, never the
    content."""


class FileTooLarge(UnsafeFile):
    """A file larger than its cap (`limit` bytes): a caller that keeps its own file may move
    it aside instead of refusing it."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class HTTPFailure(DdnsagentError):
    """The request did not produce a usable answer (network, TLS, timeout, oversized body)."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class ProviderError(DdnsagentError):
    """A provider's answer, judged: transient or fatal."""


class TransientError(ProviderError):
    """Try again later; `min_wait` seconds at least when the service asked for it (e.g. 911)."""

    def __init__(self, message: str, min_wait: float = 0.0) -> None:
        super().__init__(message)
        self.min_wait = min_wait


class FatalAnswer(ProviderError):
    """The service refused in a way that retrying cannot fix (bad credentials, unknown host…)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class ZoneError(DdnsagentError):
    """Keeping a local zone in step went wrong."""


class ZoneApplyError(ZoneError):
    """Applying failed; the message says what was tried and what was left in place."""


class ZoneEditError(ZoneError):
    """The zone could not be edited safely; the caller should leave the file alone."""


class ZoneSyntaxError(ZoneEditError):
    """The zone text is not a well-formed master file at ``line``."""

    def __init__(self, line: int, message: str, filename: str = "<zone>") -> None:
        super().__init__(f"{filename}:{line}: {message}")
        self.line = line
        self.filename = filename


class UpdateFailure(ZoneError):
    """A DNS UPDATE did not go through. `fatal`: the server refused it in a way only the user
    can fix (key, policy, zone); otherwise retrying later may help."""

    def __init__(self, message: str, fix: str, fatal: bool) -> None:
        super().__init__(message)
        self.fix = fix
        self.fatal = fatal


class HookError(DdnsagentError):
    """Ends the certbot hook with `code` and a message for certbot's log."""

    def __init__(self, code: int, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.fix = fix
