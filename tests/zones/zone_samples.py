"""Constants shared by the zone tests."""

from __future__ import annotations

import datetime
import ipaddress

TODAY = datetime.date(2024, 1, 1)
NOW = 1_704_067_200  # 2024-01-01T00:00:00Z
V4 = ipaddress.IPv4Address("198.51.100.7")
V6 = ipaddress.IPv6Address("2001:db8::77")

MINIMAL = """\
$TTL 3600
$ORIGIN example.net.
@\tIN\tSOA\tns1 hostmaster 2024010101 7200 3600 1209600 300
\tIN\tNS\tns1
ns1\tIN\tA\t192.0.2.53
"""
