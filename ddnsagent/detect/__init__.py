"""Where the WAN address is found.

settings   the [detect] section: sources per family, accept policy, quorum
finder     `detect()`: sources in order, the quorum over remote echoes, the accept policy
interface  an interface's own address (through netlink, which also watches for changes)
web, dns   remote echo services over HTTP(S) and DNS
command    a program of the user's that prints the address
nat        double NAT / CGNAT: an interface source and the echoes judged together (pure)

The package itself imports nothing, so reading the configuration (detect.settings) does not
load the sources.
"""
