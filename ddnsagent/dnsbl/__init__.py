"""The DNSBL check of our own address: is the address the ISP just gave us on a blocklist
that receivers consult (the previous holder may have been infected)?

`lists` knows the lists and reads `[dnsbl]` (pure), `check` asks them through dnsclient.py and
words the result for the log, `status` and `ddnsagent dnsbl`, `watch` runs the check in the
daemon after each address change and daily, and reconnects once for a listed address when
`[dnsbl] reconnect = true`.
"""
