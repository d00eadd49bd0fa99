"""The `[metrics]` section: where the metrics go out — an HTTP endpoint, a node_exporter
textfile, or both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ddnsagent.address import split_host_port
from ddnsagent.table import Table

DEFAULT_PORT = 9787


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: at least one of `listen` and `textfile`."""

    listen: tuple[str, int] | None = None
    textfile: Path | None = None


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPV6]:PORT`, HOST an address literal or `localhost`; raises ValueError.

    The port is required: a scrape target has no customary port to fall back on."""
    if ":" not in text:  # a lone port or host: say what is missing, not what the host lacks
        raise ValueError(f"{text.strip()!r} is not HOST:PORT")
    return split_host_port(text, names=("localhost",))


def parse_metrics(t: Table) -> MetricsConfig:
    """Read [metrics]; ConfigError naming the key on any mistake."""
    listen_text = t.string("listen", None)
    textfile_text = t.string("textfile", None)
    t.finish()
    if listen_text is None and textfile_text is None:
        raise t.error(
            "listen",
            "neither listen nor textfile is set",
            f'add listen = "127.0.0.1:{DEFAULT_PORT}" or textfile = '
            '"/var/lib/node_exporter/textfile_collector/ddnsagent.prom", or remove [metrics]',
        )
    listen = None
    if listen_text is not None:
        try:
            listen = parse_listen(listen_text)
        except ValueError as exc:
            raise t.error(
                "listen", str(exc), f'write e.g. "127.0.0.1:{DEFAULT_PORT}" or "[::1]:9787"'
            ) from None
    textfile = None
    if textfile_text is not None:
        textfile = Path(textfile_text)
        if not textfile.is_absolute():
            textfile = t.file.parent / textfile
        if textfile.suffix != ".prom" or textfile.name == ".prom":
            raise t.error(
                "textfile",
                f"{textfile_text!r} does not end in .prom",
                "node_exporter's textfile collector reads only *.prom files",
            )
    return MetricsConfig(listen, textfile)
