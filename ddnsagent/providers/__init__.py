"""The registry of provider types. Adding one: a module with TYPE, KEYS, Settings,
`from_table` and `Client` (checked against `base.Provider`), plus one line here."""

from __future__ import annotations

from ddnsagent.providers.base import Common, Provider
from ddnsagent.table import Registry

TYPES = {
    "mydns": "ddnsagent.providers.mydns",
    "dyndns2": "ddnsagent.providers.dyndns2",
    "cloudflare": "ddnsagent.providers.cloudflare",
    "duckdns": "ddnsagent.providers.duckdns",
    "dynv6": "ddnsagent.providers.dynv6",
    "desec": "ddnsagent.providers.desec",
    "url": "ddnsagent.providers.url",
    "lexicon": "ddnsagent.providers.lexicon",
    "rfc2136": "ddnsagent.providers.rfc2136",
}

_registry = Registry(TYPES, "Client")
module = _registry.module
parse_settings = _registry.parse


def client_for(settings: Common) -> Provider:
    """The client of one [[provider]] table's settings, loading its module on first use."""
    client: Provider = _registry.build(settings)
    return client
