"""Authentication of the simulated PVE API: tickets, CSRF tokens and API tokens.

Owns the credential checks PVE makes in pveproxy: `POST /access/ticket` (a password, or a still
valid ticket as the password for renewal), the `PVEAuthCookie` ticket with a `CSRFPreventionToken`
header on every write, and `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET` (no CSRF).
Tickets are HMAC-signed with a per-process key and expire after two hours of real time. The
ticket faults (faults.py: a lifetime in simulated seconds, revocation at a simulated moment) are
judged on the simulated clock, from the simulated time each ticket was issued at, which is
remembered here; a ticket they reject gets PVE's 401 "permission denied - invalid PVE ticket".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Mapping

from proxlb_opt.simulator.faults import Faults
from proxlb_opt.simulator.state import PveError

TICKET_LIFETIME_S = 7200
CLOCK_SKEW_S = 300
INVALID_TICKET = "permission denied - invalid PVE ticket"


@dataclass(frozen=True)
class Identity:
    """Who made a request: `userid` as it appears in UPIDs (`root@pam` or `root@pam!proxlb`)."""

    userid: str
    via_token: bool


def _sign(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode().rstrip("=")


class Authenticator:
    """One user with a password and one API token; thread-safe.

    `clock` is real time (ticket stamps, the two-hour lifetime); `sim_clock` the simulated one,
    for the ticket faults.
    """

    def __init__(self, user: str, password: str, token_name: str, token_secret: str,
                 clock: Callable[[], float] = time.time, sim_clock: Callable[[], float] | None = None):
        self.user = user
        self._password = password
        self._token_id = f"{user}!{token_name}"
        self._token_secret = token_secret
        self._key = secrets.token_bytes(32)
        self._clock = clock
        self._sim_clock = sim_clock or clock
        self._issued: dict[str, tuple[float, float, int]] = {}  # signature → (real, simulated time, serial)
        self._serial = 0
        self._revoked_below = 0  # tickets with a lower serial were revoked by revoke_all()
        self._issued_lock = threading.Lock()

    # ------------------------------------------------------------------ tickets

    def _ticket(self, user: str) -> str:
        real = self._clock()
        plain = f"PVE:{user}:{int(real):08X}"
        signature = _sign(self._key, plain)
        with self._issued_lock:
            # Forget tickets past their real lifetime: they can never be valid again.
            stale = [s for s, (r, _, _) in self._issued.items() if real - r > TICKET_LIFETIME_S + CLOCK_SKEW_S]
            for s in stale:
                del self._issued[s]
            self._serial += 1
            self._issued[signature] = (real, self._sim_clock(), self._serial)
        return f"{plain}::{signature}"

    def revoke_all(self) -> None:
        """Every ticket issued so far is invalid from now on (a new login gets a valid one). PVE
        tickets carry whole seconds, so a login within the same second re-issues, and so re-validates,
        the very same ticket string."""
        with self._issued_lock:
            self._revoked_below = self._serial + 1

    def _rejected(self, signature: str, faults: Faults | None) -> bool:
        """Whether revocation or the ticket faults make a (signature-valid) ticket invalid now."""
        with self._issued_lock:
            issued, revoked_below = self._issued.get(signature), self._revoked_below
        if issued is None:
            return True
        if issued[2] < revoked_below:
            return True
        if faults is None:
            return False
        now, born = self._sim_clock(), issued[1]
        if faults.ticket_lifetime_s is not None and now - born > faults.ticket_lifetime_s:
            return True
        revoked = faults.tickets_revoked_at
        return revoked is not None and now >= revoked and born < revoked

    def _csrf(self, user: str, stamp: int) -> str:
        return f"{stamp:08X}:{_sign(self._key, f'{stamp:08X}:{user}')}"

    def ticket_user(self, ticket: str, faults: Faults | None = None) -> str | None:
        """The user of a valid, unexpired ticket (also under the ticket `faults`), else None."""
        plain, sep, signature = ticket.partition("::")
        parts = plain.split(":")
        if not sep or len(parts) != 3 or parts[0] != "PVE":
            return None
        if not hmac.compare_digest(_sign(self._key, plain), signature):
            return None
        try:
            age = self._clock() - int(parts[2], 16)
        except ValueError:
            return None
        if not -CLOCK_SKEW_S <= age <= TICKET_LIFETIME_S or self._rejected(signature, faults):
            return None
        return parts[1]

    def login(self, params: Mapping[str, str], cluster_name: str, faults: Faults | None = None) -> dict:
        """`POST /access/ticket`; 401 "authentication failure" on any mismatch."""
        username = params.get("username", "")
        if "@" not in username and params.get("realm"):
            username = f"{username}@{params['realm']}"
        password = params.get("password", "")
        ok = username == self.user and (
            hmac.compare_digest(password.encode(), self._password.encode())
            or self.ticket_user(password, faults) == username
        )
        if not ok:
            raise PveError(401, "authentication failure")
        ticket = self._ticket(username)
        stamp = int(ticket.split(":")[2], 16)
        return {"username": username, "ticket": ticket, "CSRFPreventionToken": self._csrf(username, stamp),
                "clustername": cluster_name,
                "cap": {"vms": {"VM.Migrate": 1, "VM.Audit": 1}, "nodes": {"Sys.Audit": 1},
                        "storage": {"Datastore.Audit": 1}, "access": {}, "dc": {"Sys.Audit": 1}, "sdn": {},
                        "mapping": {}}}

    # ------------------------------------------------------------------ per request

    def identify(self, method: str, headers: Mapping[str, str], faults: Faults | None = None) -> Identity:
        """Check a request's credentials; writes with a ticket also need the CSRF header."""
        authorization = headers.get("Authorization") or ""
        if authorization.startswith("PVEAPIToken="):
            return self._check_token(authorization[len("PVEAPIToken="):])
        ticket = _cookie(headers.get("Cookie") or "", "PVEAuthCookie")
        if not ticket:
            raise PveError(401, "No ticket")
        user = self.ticket_user(ticket, faults)
        if user is None:
            raise PveError(401, INVALID_TICKET)
        if method != "GET" and not self._csrf_ok(user, headers.get("CSRFPreventionToken") or ""):
            raise PveError(401, "Permission denied - invalid csrf token")
        return Identity(user, via_token=False)

    def _check_token(self, value: str) -> Identity:
        token_id, sep, secret = value.rpartition("=")
        if not sep or "!" not in token_id:
            raise PveError(401, "invalid token value!")
        if token_id != self._token_id or not hmac.compare_digest(secret.encode(), self._token_secret.encode()):
            raise PveError(401, "invalid token value!")
        return Identity(token_id, via_token=True)

    def _csrf_ok(self, user: str, token: str) -> bool:
        stamp_hex, _, signature = token.partition(":")
        try:
            stamp = int(stamp_hex, 16)
        except ValueError:
            return False
        fresh = -CLOCK_SKEW_S <= self._clock() - stamp <= TICKET_LIFETIME_S
        return fresh and hmac.compare_digest(self._csrf(user, stamp), token) and bool(signature)


def _cookie(header: str, name: str) -> str | None:
    """One cookie's value; tolerant of quoting and %-escapes (tickets contain ':' and '+')."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return urllib.parse.unquote(value.strip().strip('"'))
    return None
