"""The one exception tree of proxlb-opt; every error knows its process exit code.

The CLI has a single handler that prints `error: <message>` on stderr and exits with
`exit_code`: input 2, collection 3, infeasible 4, timeout 5, a failed migration 6, a migration of
unknown outcome 7, internal 70, 75 when another run holds the lock, and 130/143 when SIGINT/SIGTERM
stopped apply or a service round. Messages are one line, name the file/field/rule involved, and never
carry secrets.

Also owns `scrub`, the one filter every text shown to a user passes (the error line, every log record,
JSON on stdout): it removes the secrets registered when the settings were loaded (password, API token
secret) and the login ticket, CSRF token and token secret in PVE's own header and cookie forms, in
case a server or proxy echoes a request into its error text.
"""

from __future__ import annotations

import re
from typing import Any


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


class LockHeldError(ProxlbOptError):
    """Another proxlb-opt run that may migrate holds the lock on this host (adapters/lock.py).

    75 is sysexits' EX_TEMPFAIL: nothing is wrong with the command; run it again when the other one ends.
    """

    exit_code = 75


class InternalError(ProxlbOptError):
    """Our bug: the checker or the replay disagreed with what the solver or sequencer produced."""

    exit_code = 70


# ----------------------------------------------------------------------------- secrets scrubbing

#: What stands in for a removed secret.
MASK = "***"
#: Shorter values are not scrubbed: PVE refuses passwords below 5 characters, and masking every "a" or
#: "1" of a message would hide more than it protects.
MIN_SECRET_LENGTH = 4
# Replaced, never mutated: a reader in another thread (the service's) sees the old tuple or the new one.
_secrets: tuple[str, ...] = ()
# PVE's credentials as they travel: the ticket cookie, the CSRF header, the API token header, and a bare
# ticket (PVE:user@realm:HEXTIME::signature).
_PATTERNS = (
    (re.compile(r"(PVEAuthCookie\s*[=:]\s*)[^\s;,]+", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"(CSRFPreventionToken\s*[=:]\s*)[^\s;,]+", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"(PVEAPIToken\s*=\s*[^\s=;,]+=)[^\s;,]+", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"(Authorization\s*:[ \t]*)[^;,\s][^;,]*", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"PVE:[^\s:;,]+:[0-9A-Fa-f]{8}::[A-Za-z0-9+/=_-]+"), "PVE:" + MASK),
    # a login's form body (password=…) and the same URL-encoded ticket (PVE%3Auser%40realm%3A…)
    (re.compile(r"((?:^|[\s&?;,(\"'{])password\"?\s*[=:]\s*\"?)[^\s&;,\"')}]+", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"PVE%3A[^\s;,&]+", re.IGNORECASE), "PVE%3A" + MASK),
)

#: Every pattern above needs one of these words: one search decides for most strings (a plan's JSON
#: has tens of thousands of them) that no pattern can match.
_TRIGGER = re.compile(r"pve|csrf|authorization|password", re.IGNORECASE)


def register_secret(value: Any) -> None:
    """Remember a secret (password, token secret, ticket) so that `scrub` removes it from any text."""
    text = value.reveal() if hasattr(value, "reveal") else (value if isinstance(value, str) else None)
    global _secrets
    if text and len(text) >= MIN_SECRET_LENGTH and text not in _secrets:
        # Longest first: a secret inside a longer one goes with it.
        _secrets = tuple(sorted(set(_secrets) | {text}, key=len, reverse=True))


def scrub(text: str) -> str:
    """`text` without any registered secret and without PVE credentials in header or cookie form."""
    if not isinstance(text, str) or not text:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if _TRIGGER.search(text):
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
    return text


def scrub_data(data: Any) -> Any:
    """`scrub` on every string of JSON-ready data (keys included); containers are copied."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {scrub_data(k): scrub_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrub_data(v) for v in data]
    return data
