"""The mail log as a sensor: how the submission relay is treating our WAN address.

settings   [relay] and [reconnect]
sources    where evidence comes from: a log file followed across rotation, or journald; and,
           before a reconnect, Postfix's queue (postqueue -j) and a connection of our own
logparse   Postfix lines → events, from Postfix's own fields only (pure)
guard      the bounce guard: which queued bounces root holds and releases (postsuper)
guardview  the guard's lines in `status` (pure, light)
decide     events → decisions: reconnect, re-notify, recovered; what in the queue backs one (pure)
reconnect  the procedure that gets a new address, tells the providers and flushes the queue
watch      the daemon's loop: source → parser → decider → procedure
"""
