"""End-to-end world for the relay watchdog: an ISP namespace with MyDNS and its submission relay,
a home namespace with a real Postfix, joined by one veth pair on documentation addresses."""
