"""The one exception tree of proxlb-opt; every error knows its process exit code.

The CLI has a single handler that prints `error: <message>` on stderr and exits with
`exit_code`: input 2, collection 3, infeasible 4, timeout 5, a failed migration 6, a migration of
unknown outcome 7, internal 70, and 130/143 when SIGINT/SIGTERM stopped apply or a service round. Messages are one line, name the file/field/rule involved, and never carry secrets.
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
    """A migration failed: the guest did not move."""

    exit_code = 6


class OutcomeUnknownError(ApplyError):
    """No migration failed, but one's outcome is unknown: still running in PVE, or it could not be read."""

    exit_code = 7


class StoppedBySignal(ProxlbOptError):
    """SIGINT or SIGTERM stopped apply or a service round; the exit code is 128 + the signal (130, 143)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)


class UnsafePlanError(ProxlbOptError):
    """No capacity-safe migration order exists; `blockers` says which guests block which nodes."""

    exit_code = 4

    def __init__(self, message: str, blockers: tuple[str, ...] = (), guests: tuple[int, ...] = ()):
        super().__init__(message)
        self.blockers = blockers
        self.guests = guests  # indices of the guests whose moves could not be ordered


class InternalError(ProxlbOptError):
    """Our bug: the checker or the replay disagreed with what the solver or sequencer produced."""

    exit_code = 70
