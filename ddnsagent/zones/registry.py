"""The registry of local-zone backends. Adding one: a module with TYPE, KEYS, Settings
(extending base.ZoneCommon), `from_table` and `Backend`, plus one line here."""

from __future__ import annotations

from ddnsagent.table import Registry

TYPES = {
    "zonefile": "ddnsagent.zones.zonefile",
    "rfc2136": "ddnsagent.zones.rfc2136",
    "unbound": "ddnsagent.zones.unbound",
    "dnsmasq": "ddnsagent.zones.dnsmasq",
}

_registry = Registry(TYPES, "Backend")
module = _registry.module
parse_settings = _registry.parse
backend_for = _registry.build
