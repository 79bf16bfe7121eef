"""Authentication of the simulated PVE API: tickets, CSRF tokens and API tokens.

Owns the credential checks PVE makes in pveproxy: `POST /access/ticket` (a password, or a still
valid ticket as the password for renewal), the `PVEAuthCookie` ticket with a `CSRFPreventionToken`
header on every write, and `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET` (no CSRF).
Tickets are HMAC-signed with a per-process key and expire after two hours of real time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Mapping

from proxlb_opt.simulator.state import PveError

TICKET_LIFETIME_S = 7200
CLOCK_SKEW_S = 300


@dataclass(frozen=True)
class Identity:
    """Who made a request: `userid` as it appears in UPIDs (`root@pam` or `root@pam!proxlb`)."""

    userid: str
    via_token: bool


def _sign(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode().rstrip("=")


class Authenticator:
    """One user with a password and one API token; thread-safe (no mutable state after init)."""

    def __init__(self, user: str, password: str, token_name: str, token_secret: str,
                 clock: Callable[[], float] = time.time):
        self.user = user
        self._password = password
        self._token_id = f"{user}!{token_name}"
        self._token_secret = token_secret
        self._key = secrets.token_bytes(32)
        self._clock = clock

    # ------------------------------------------------------------------ tickets

    def _ticket(self, user: str) -> str:
        plain = f"PVE:{user}:{int(self._clock()):08X}"
        return f"{plain}::{_sign(self._key, plain)}"

    def _csrf(self, user: str, stamp: int) -> str:
        return f"{stamp:08X}:{_sign(self._key, f'{stamp:08X}:{user}')}"

    def ticket_user(self, ticket: str) -> str | None:
        """The user of a valid, unexpired ticket, else None."""
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
        return parts[1] if -CLOCK_SKEW_S <= age <= TICKET_LIFETIME_S else None

    def login(self, params: Mapping[str, str], cluster_name: str) -> dict:
        """`POST /access/ticket`; 401 "authentication failure" on any mismatch."""
        username = params.get("username", "")
        if "@" not in username and params.get("realm"):
            username = f"{username}@{params['realm']}"
        password = params.get("password", "")
        ok = username == self.user and (
            hmac.compare_digest(password.encode(), self._password.encode()) or self.ticket_user(password) == username
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

    def identify(self, method: str, headers: Mapping[str, str]) -> Identity:
        """Check a request's credentials; writes with a ticket also need the CSRF header."""
        authorization = headers.get("Authorization") or ""
        if authorization.startswith("PVEAPIToken="):
            return self._check_token(authorization[len("PVEAPIToken="):])
        ticket = _cookie(headers.get("Cookie") or "", "PVEAuthCookie")
        if not ticket:
            raise PveError(401, "No ticket")
        user = self.ticket_user(ticket)
        if user is None:
            raise PveError(401, "invalid PVE ticket")
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
