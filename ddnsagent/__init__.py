"""ddnsagent — keeps a home server's dynamic-DNS names, local zone and mail relay in step
with its changing WAN address."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/ddnsagent/ddnsagent"
USER_AGENT = f"ddnsagent/{__version__} (+{PROJECT_URL})"
