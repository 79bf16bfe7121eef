"""Injected failures of the PVE simulator, as immutable values and pure decisions.

Owns the fault vocabulary: `Faults` (everything that can go wrong, replaced as a whole at run
time), `RequestFault` (what a matching HTTP request gets instead of its normal answer: an error,
a lost response, an empty list, an error echoing its headers, or data of the wrong shape), `NodeEvent` (a node entering
HA maintenance, leaving it, going offline or coming back, after N migrate calls or at a moment),
and the texts PVE uses for them. The counters behind "the first N" and "every k-th" live in
SimState, which applies the faults; the server turns a request fault into an answer.
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

TASK_ERROR_DEFAULT = "migration problems"
STORAGE_ERROR_DEFAULT = ""  # "": the failed `pvesm export | ssh … pvesm import` pipe PVE reports for the volume
REQUEST_ACTIONS = ("error", "lost", "late", "empty", "echo", "garbled")
NODE_STATES = ("maintenance", "active", "offline", "online")

# pveproxy's own wording where PVE has one; other statuses get the standard phrase.
_STATUS_TEXT = {
    401: "permission denied - invalid PVE ticket",
    403: "Permission check failed",
    595: "No route to host",
    596: "Connection timed out",
}


def status_text(status: int) -> str:
    """The message PVE answers a bare `status` with."""
    if status in _STATUS_TEXT:
        return _STATUS_TEXT[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "simulated error"


@dataclass(frozen=True)
class RequestFault:
    """What matching requests get instead of their normal answer.

    Matching: `method` ("GET", "POST", … or "*") and `path`, relative to /api2/json: a route
    template ("/nodes/{node}/qemu/{vmid}/migrate"), a concrete path ("/nodes/pve1/qemu/100/migrate")
    or "*"; with `regex=True`, a regular expression that must match the whole concrete path.
    Requests before `since` (simulated epoch seconds; None: at once) do not match.

    Which matches fire: with `first` N > 0 only the first N, with `every` k > 0 only the k-th, 2k-th,
    …; both conditions hold when both are set. Matches are counted from when the faults were set.

    `action`: "error" answers `status` with `message` (default: PVE's text for the status) and
    processes nothing; "lost" processes the request (a migration really starts) and then closes the
    connection without an answer; "late" processes it and then answers the error all the same (a
    proxy's 504 after PVE did the work); "empty" answers `[]` where the answer is a list; "echo" answers
    `status` with a message that repeats the request headers and body, secrets included (a canary for
    clients that must never print them); "garbled" processes the request and answers 200 with data of the
    wrong shape (fields of the wrong types, unknown values: a proxy or a PVE bug a client must survive).
    """

    path: str = "*"
    method: str = "*"
    action: str = "error"
    status: int = 500
    message: str | None = None
    regex: bool = False
    first: int = 0
    every: int = 0
    since: float | None = None

    def __post_init__(self) -> None:
        if self.action not in REQUEST_ACTIONS:
            raise ValueError(f"action must be one of {REQUEST_ACTIONS}, not {self.action!r}")
        if self.first < 0 or self.every < 0:
            raise ValueError("first and every must be >= 0")
        if self.regex:
            try:  # a bad pattern fails when the fault is made, not on a request
                re.compile(self.path)
            except re.error as exc:
                raise ValueError(f"bad path pattern {self.path!r}: {exc}") from None
        object.__setattr__(self, "method", self.method.upper())

    def matches(self, method: str, path: str, template: str | None, now: float) -> bool:
        """Whether a request is one this fault counts (before `first`/`every` decide if it fires)."""
        if self.method != "*" and self.method != method:
            return False
        if self.since is not None and now < self.since:
            return False
        if self.regex:
            return re.fullmatch(self.path, path) is not None
        return self.path in ("*", path.rstrip("/") or "/", template)

    def fires(self, n: int) -> bool:
        """Whether the n-th match (1-based) is hit."""
        return (self.first == 0 or n <= self.first) and (self.every == 0 or n % self.every == 0)

    def text(self) -> str:
        return self.message if self.message is not None else status_text(self.status)


@dataclass(frozen=True)
class NodeEvent:
    """A node changes state mid-run, once: after the N-th accepted migrate call, or at a moment.

    `state`: "maintenance" (the node's LRM enters HA maintenance mode: the CRM moves its running
    HA guests away), "active" (maintenance ends: they come back), "offline" (the node stops
    answering: 595 when routed to, `offline` in lists) or "online" (it is back).
    `after_migrations` counts migrate calls answered with a UPID since the faults were set;
    `at` is simulated epoch seconds. Exactly one of them is given.
    """

    node: str
    state: str
    after_migrations: int = 0
    at: float | None = None

    def __post_init__(self) -> None:
        if self.state not in NODE_STATES:
            raise ValueError(f"state must be one of {NODE_STATES}, not {self.state!r}")
        if (self.after_migrations > 0) == (self.at is not None):
            raise ValueError("give exactly one of after_migrations (> 0) and at")


def _frozen_map(value: Mapping | Iterable | None, default: str) -> Mapping[int, str]:
    if not value:
        return MappingProxyType({})
    if isinstance(value, Mapping):
        return MappingProxyType({int(k): str(v) for k, v in value.items()})
    return MappingProxyType({int(k): default for k in value})


@dataclass(frozen=True)
class Faults:
    """Injected failures; set at start or replaced at run time (`SimState.set_faults`).

    Task faults are decided when a migration task starts. Transport faults (delay, drops) and
    request faults apply to every HTTP request; their counters and the random generator restart
    whenever faults are set, and so do the node events' triggers.

    Storage: for a guest in `storage_error` with a local disk, the disk copy (phase 1) fails
    halfway and the task ends "migration aborted" with PVE's "storage migration for '<volid>' to
    storage 'local' failed - <detail>" in its log (detail "": the failed pvesm export/import pipe);
    with shared storage, QEMU refuses before the task (500 "storage 'ceph-vm' is not available on
    node '<target>'") and LXC aborts in the task with that text.

    Tickets: `ticket_lifetime_s` makes login tickets expire after that many *simulated* seconds
    (by default they live two hours of real time, so a fast clock does not log clients out);
    tickets issued before `tickets_revoked_at` (simulated epoch seconds) are invalid from that
    moment on. Either way the request gets 401 "permission denied - invalid PVE ticket", and a
    renewal with such a ticket fails. As in PVE, a ticket is user + whole second + signature: two
    logins within the same real second get the same ticket, whose issue time is the later one.
    """

    locked: Mapping[int, str] = field(default_factory=dict)  # vmid → config lock, e.g. "backup"
    offline_nodes: frozenset[str] = frozenset()  # 595 when routed to, `offline` in lists
    task_error: Mapping[int, str] = field(default_factory=dict)  # vmid → exitstatus; guest stays
    task_hang: frozenset[int] = frozenset()  # vmids whose migration task never ends
    task_warnings: frozenset[int] = frozenset()  # vmids whose task ends "WARNINGS: 1" (guest moves)
    storage_error: Mapping[int, str] = field(default_factory=dict)  # vmid → failure detail ("": PVE's copy error)
    no_quorum: bool = False  # writes fail with "cluster not ready - no quorum?"
    delay: float = 0.0  # real seconds before every answer
    drop_first: int = 0  # close the connection without answering for the next N requests
    drop_probability: float = 0.0  # ... or with this probability (seeded)
    seed: int = 0
    requests: tuple[RequestFault, ...] = ()  # the first one that fires on a request wins
    node_events: tuple[NodeEvent, ...] = ()
    ticket_lifetime_s: float | None = None
    tickets_revoked_at: float | None = None

    def __post_init__(self) -> None:
        # Accept sets, lists and dicts from callers; store immutable, normalised values.
        object.__setattr__(self, "locked", _frozen_map(self.locked, "backup"))
        object.__setattr__(self, "task_error", _frozen_map(self.task_error, TASK_ERROR_DEFAULT))
        object.__setattr__(self, "storage_error", _frozen_map(self.storage_error, STORAGE_ERROR_DEFAULT))
        object.__setattr__(self, "offline_nodes", frozenset(map(str, self.offline_nodes)))
        object.__setattr__(self, "task_hang", frozenset(map(int, self.task_hang)))
        object.__setattr__(self, "task_warnings", frozenset(map(int, self.task_warnings)))
        object.__setattr__(self, "requests", tuple(self.requests))
        object.__setattr__(self, "node_events", tuple(self.node_events))


def echo_message(headers: Iterable[tuple[str, str]], body: bytes = b"") -> str:
    """An error text that repeats every request header verbatim (Authorization, Cookie, CSRF token) and
    the request body (a login's password, form-encoded as the client sent it)."""
    shown = "; ".join(f"{name}: {value}" for name, value in headers)
    text = f"proxy error - unable to forward request (headers: {shown})"
    if body:
        text += f" (body: {body.decode('utf-8', 'replace')})"
    return text
