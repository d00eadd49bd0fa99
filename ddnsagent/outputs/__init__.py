"""What the outside world hears of the agent: notifications to people, Prometheus metrics,
systemd's status and watchdog, and the printed report of a sync.

Observers only: they read the outcome types (ddnsagent.outcome) and never reach back into the
orchestrator. Nothing is re-exported here, so importing one output costs only that output.
"""
