"""The exit codes of every command, defined once: 0 done, 1 will retry by itself, 2 the
configuration (or the command line) is wrong, 3 a service refused us and needs the user.

A module of its own, with nothing to import, so that the command line knows them without
loading the outcome records.
"""

EXIT_OK, EXIT_RETRY, EXIT_CONFIG, EXIT_STOPPED = 0, 1, 2, 3

# What each action of a sync (outcome.TargetReport.action) means for the exit code.
EXIT_FOR = {
    "sent": EXIT_OK,
    "unchanged": EXIT_OK,
    "dry-run": EXIT_OK,
    "no-address": EXIT_RETRY,
    "failed": EXIT_RETRY,
    "waiting": EXIT_RETRY,
    "config": EXIT_CONFIG,
    "stopped": EXIT_STOPPED,
}
