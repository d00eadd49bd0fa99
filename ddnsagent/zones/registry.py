"""The registry of local-zone backends. Adding one: a module with TYPE, KEYS, Settings
(extending base.ZoneCommon), `from_table` and a `Backend` class checked against
base.ZoneBackend, plus one line here. Modules load only when a `[[zone]]` names their type."""

from __future__ import annotations

from ddnsagent.table import Registry
from ddnsagent.zones.base import ZoneBackend, ZoneCommon

TYPES = {
    "zonefile": "ddnsagent.zones.zonefile",
    "rfc2136": "ddnsagent.zones.rfc2136",
    "unbound": "ddnsagent.zones.unbound",
    "dnsmasq": "ddnsagent.zones.dnsmasq",
}

_registry = Registry(TYPES, "Backend")
module = _registry.module
parse_settings = _registry.parse


def backend_for(settings: ZoneCommon) -> ZoneBackend:
    """The backend for one zone's settings (its module has checked `Backend` against the
    protocol, so the result is typed as what the agent may call)."""
    backend: ZoneBackend = _registry.build(settings)
    return backend
