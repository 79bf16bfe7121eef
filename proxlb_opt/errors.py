"""The one exception tree of proxlb-opt; every error knows its process exit code.

The CLI has a single handler that prints `error: <message>` on stderr and exits with
`exit_code`. Messages are one line, name the file/field/rule involved, and never carry secrets.
"""

from __future__ import annotations


class ProxlbOptError(Exception):
    """Base class: anything the user can act on."""

    exit_code = 1


class InputError(ProxlbOptError):
    """Bad model file, config file or command-line value."""

    exit_code = 2


class ConfigError(InputError):
    """A config file (proxlb.yaml) that cannot be used."""


class ModelError(InputError):
    """A cluster model file that cannot be used."""


class CollectionError(ProxlbOptError):
    """The live cluster could not be read (API unreachable, refused, malformed answers)."""

    exit_code = 3


class InfeasibleError(ProxlbOptError):
    """The rules cannot all hold; `conflicts` names the rules involved."""

    exit_code = 4

    def __init__(self, message: str, conflicts: tuple[str, ...] = ()):
        super().__init__(message)
        self.conflicts = conflicts


class SolveTimeoutError(ProxlbOptError):
    """No valid placement was found within the time limit."""

    exit_code = 5


class ApplyError(ProxlbOptError):
    """A migration failed or the run stopped before finishing."""

    exit_code = 6


class UnsafePlanError(ProxlbOptError):
    """No capacity-safe migration order exists; `blockers` says which guests block which nodes."""

    exit_code = 4

    def __init__(self, message: str, blockers: tuple[str, ...] = (), guests: tuple[int, ...] = ()):
        super().__init__(message)
        self.blockers = blockers
        self.guests = guests  # indices of the guests whose moves could not be ordered


class LockHeldError(ProxlbOptError):
    """Another proxlb-opt run that may migrate holds the lock on this host (adapters/lock.py).

    75 is sysexits' EX_TEMPFAIL: nothing is wrong with the command; run it again when the other one ends.
    """

    exit_code = 75


class InternalError(ProxlbOptError):
    """Our bug: the checker or the replay disagreed with what the solver or sequencer produced."""

    exit_code = 70
