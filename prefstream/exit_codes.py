"""Exit codes of the `prefstream` command (the README's "Exit codes" table lists them).

Every error a person can cause ends in one line on stderr, `prefstream COMMAND: what happened; what to do`,
and one of these codes, never a traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a `prefstream` command's exit status means."""

    OK = 0
    #: The command ran and found a problem: a `doctor` check or a `topics ensure` comparison failed, a broker
    #: not running (`kafka status`), a named user not parked, no profile for the user (`profile`), a worker
    #: that stopped on a fatal condition (restart it).
    FAILED = 1
    #: It could not run: a usage error, a bad setting, Kafka or the read API unreachable, a missing topic or file.
    ERROR = 2
    #: `produce`: lines of the file are not valid events (each reported with its number); nothing was sent.
    BAD_INPUT = 3
    #: `produce`: events were sent but the broker did not acknowledge all of them (they are named).
    NOT_DELIVERED = 4
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130
