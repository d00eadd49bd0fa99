"""The local authoritative zone kept in step with the WAN address.

`registry` maps each `[[zone]] type` to its backend module (zonefile, rfc2136, unbound,
dnsmasq); `base` holds what they share and the `ZoneBackend` protocol; `owned` the file an
unbound or dnsmasq backend owns whole; `edit/` the byte-preserving zone-file editor. This
package imports nothing, so reading the configuration loads no backend until a zone names it.
"""
