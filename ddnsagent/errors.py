"""One exception hierarchy, so callers catch what they mean."""

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
