"""The audit log: JSON lines for every run that may migrate: its start, its planned moves, every step's
start and outcome, and its end.

One JSON object per line; every line has `time` (ISO 8601 in UTC, `2026-11-30T08:00:03.123Z`), `run` (an
id shared by the lines of one process: one `apply`, or one service's life), `command` (`apply` or
`service`), `round` (the service's round number from 1, null for apply) and `event`:

  run_start  a run is about to migrate: `migrations` (how many steps are planned)
  planned    one per planned step, before any is started: vmid, name, type (`vm`/`ct`), from, to,
             reason (balance, maintenance, affinity, ...), wave, hop
  step       a step's event from apply.Executor's `emit`, with the planned fields and `outcome`:
             `started` when the migrate call was accepted, then the step's end (`done`, `skipped`,
             `failed`, or another state the executor reports), `upid` (the PVE task, null before one
             was started), `message` and `seconds` (the task's duration)
  run_end    `outcome` (`ok`; `failed`: some step failed; `error`: the run stopped on another error),
             `done`, `skipped`, `failed` (step counts) and `error` (the message, or null)

A `step` line with outcome `started` without a later line for the same run, vmid and hop, or a run
without its `run_end`, is a migration the run did not see end (the process died): the `upid` names the
PVE task to look at.

Each line is one write() to a file opened with O_APPEND, then fsync'd before the run goes on, so a crash
loses at most the line being written and lines of two processes never interleave. The file is opened
for every line, so logrotate may rename it at any time. Credentials never appear: lines carry only the
fields above, and the API password and token secret are masked should a message ever quote them.

Where: `optimizer.audit_log`; by default `$STATE_DIRECTORY/audit.jsonl` (systemd's StateDirectory=), else
/var/lib/proxlb-opt/audit.jsonl; `none` turns it off. Before a run migrates, the log is opened: when
`optimizer.audit_log` names a file that cannot be opened, the run refuses to migrate (ConfigError, exit 2:
who configured a record expects one); the default path only warns, so that a user without access to
/var/lib/proxlb-opt can still run `apply`. A line that cannot be written later is logged as an error and
the run goes on: stopping half-way through a plan would be worse than a missing line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from proxlb_opt.adapters.files import open_shared
from proxlb_opt.errors import ConfigError

log = logging.getLogger("proxlb_opt.audit")

DEFAULT_AUDIT_LOG = "/var/lib/proxlb-opt/audit.jsonl"
#: Events that are not steps: the service's plan and round summaries, apply's summary.
NOT_STEPS = frozenset({"plan", "round", "summary"})
#: The fields of a planned step, as apply.PlannedStep names them → as the audit line names them.
STEP_FIELDS = (("vmid", "vmid"), ("name", "name"), ("type", "type"), ("source", "from"), ("target", "to"),
               ("reason", "reason"), ("wave", "wave"), ("hop", "hop"))
MASK = "********"


def default_audit_path(env: Mapping[str, str] | None = None) -> Path:
    """audit.jsonl in systemd's STATE_DIRECTORY (beside the service's state.json), else DEFAULT_AUDIT_LOG."""
    env = os.environ if env is None else env
    directory = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory) / "audit.jsonl" if directory else Path(DEFAULT_AUDIT_LOG)


def secrets_of(settings: Any) -> tuple[str, ...]:
    """The credentials of `settings.api` (password, token secret) that a line must never carry."""
    api = getattr(settings, "api", None)
    values = (getattr(api, "password", None), getattr(api, "token_secret", None))
    return tuple(str.__str__(v) for v in values if v)


@dataclass
class AuditLog:
    """Appends run and step lines to `path` (None: off). `round` is set by the service before each round."""

    path: Path | None
    command: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    round: int | None = None
    secrets: tuple[str, ...] = ()
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _counts: dict[str, int] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, configured: str | None, command: str, secrets: Iterable[str] = ()) -> "AuditLog":
        """The audit log of a run about to migrate. `configured` is `optimizer.audit_log`: None for the
        default path, "" for off. Refuses (ConfigError) a configured file it cannot open; warns and records
        nothing when the default cannot be opened."""
        secrets = tuple(s for s in secrets if s)
        if configured == "":
            return cls(None, command, secrets=secrets)
        path = Path(configured) if configured else default_audit_path()
        try:
            os.close(open_shared(path, os.O_WRONLY | os.O_APPEND, 0o640))
        except OSError as exc:
            why = exc.strerror or exc.__class__.__name__
            if configured:
                raise ConfigError(f"optimizer.audit_log: cannot open {path} for appending ({why}); refusing to "
                                  f"migrate without the record it asks for (or set audit_log: none)") from None
            log.warning("audit log %s cannot be opened (%s): the migrations of this run are not recorded; set "
                        "optimizer.audit_log to a file this user may write, or to none", path, why)
            return cls(None, command, secrets=secrets)
        return cls(path, command, secrets=secrets)

    # ------------------------------------------------------------------------------------------ lines

    def _head(self, event: str) -> dict[str, Any]:
        stamp = self.clock().astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"time": stamp, "run": self.run, "command": self.command, "round": self.round, "event": event}

    def line(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """The audit line of an executor event, or None for events that are not a step's."""
        kind = event.get("event")
        if kind in NOT_STEPS or "vmid" not in event:
            return None
        return {**self._head("step"),
                "vmid": event["vmid"], "name": event.get("name"), "type": event.get("type"),
                "from": event.get("from"), "to": event.get("to"), "reason": event.get("reason"),
                "wave": event.get("wave"), "hop": event.get("hop"),
                "outcome": "started" if kind == "start" else kind, "upid": event.get("upid"),
                "message": event.get("message", ""), "seconds": event.get("seconds")}

    def begin(self, steps: Iterable[Any]) -> None:
        """`run_start`, then a `planned` line per step (apply.PlannedStep, or anything with its fields)."""
        steps = list(steps)
        self._counts = {}
        self._write({**self._head("run_start"), "migrations": len(steps)})
        for step in steps:
            self._write({**self._head("planned"), **{name: getattr(step, attr) for attr, name in STEP_FIELDS}})

    def end(self, error: str | None = None) -> None:
        """`run_end` with the step counts seen since `begin` (none when no run is open)."""
        counts, self._counts = self._counts, None
        if counts is None:
            return
        failed = counts.get("failed", 0)
        outcome = "failed" if failed else "error" if error is not None else "ok"
        self._write({**self._head("run_end"), "outcome": outcome, "done": counts.get("done", 0),
                     "skipped": counts.get("skipped", 0), "failed": failed, "error": error})

    @contextlib.contextmanager
    def running(self, steps: Iterable[Any]) -> Iterator["AuditLog"]:
        """`begin` on entry, `end` on the way out; an exception (Ctrl-C included) ends the run as `error`."""
        self.begin(steps)
        try:
            yield self
        except BaseException as exc:
            self.end(error=str(exc) or exc.__class__.__name__)
            raise
        self.end()

    def record(self, event: Mapping[str, Any]) -> None:
        """The line of one executor event (events that are not a step's are passed over)."""
        entry = self.line(event)
        if entry is None:
            return
        if self._counts is not None and entry["outcome"] != "started":
            self._counts[entry["outcome"]] = self._counts.get(entry["outcome"], 0) + 1
        self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        text = json.dumps(entry, ensure_ascii=False)
        for secret in self.secrets:
            text = text.replace(json.dumps(secret, ensure_ascii=False)[1:-1], MASK)
        data = (text + "\n").encode("utf-8")
        try:
            fd = open_shared(self.path, os.O_WRONLY | os.O_APPEND, 0o640)
            try:
                written = os.write(fd, data)
                if written != len(data):  # a full disk; a partial line is still better than none
                    raise OSError(f"wrote {written} of {len(data)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("audit log %s: cannot record the %s line of run %s (%s)", self.path, entry["event"], self.run,
                      getattr(exc, "strerror", None) or exc)

    def tee(self, downstream: Callable[[dict], None]) -> Callable[[dict], None]:
        """An emitter that records each event, then passes it on (the record comes first: it must not be
        lost to a printer that fails)."""
        def emit(event: dict) -> None:
            self.record(event)
            downstream(event)

        return emit
