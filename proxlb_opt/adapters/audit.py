"""The audit log: a JSON line for every migration step that `apply` or the service starts or ends.

A line per apply event of a step (apply.Executor's `emit`): `outcome` is `started` when the migrate call
was accepted, then the step's outcome (`done`, `skipped`, `failed`, or whatever other outcome the
executor reports). A `started` line without a later line for the same run, vmid and hop is a migration
the run did not see end (the process died): its `upid` names the PVE task to look at. Fields:

  time     when the line was written, ISO 8601 in UTC (`2026-11-30T08:00:03.123Z`)
  run      an id shared by the lines of one process (one `apply`, or one service's life)
  command  `apply` or `service`;  round: the service's round number (from 1), null for apply
  vmid, name, type (`vm`/`ct`), from, to, reason (balance, maintenance, affinity, ...), wave, hop
  outcome, upid (the PVE task, null before one was started), message, seconds (the task's duration)

Each line is one write() to a file opened with O_APPEND, then fsync'd before the run goes on, so a crash
loses at most the line being written and lines of two processes never interleave. The file is opened
for every line, so logrotate may rename it at any time.

Where: `optimizer.audit_log`; by default `$STATE_DIRECTORY/audit.jsonl` (systemd's StateDirectory=), else
/var/lib/proxlb-opt/audit.jsonl; `none` turns it off. Before a run migrates, the log is opened: when
`optimizer.audit_log` names a file that cannot be opened, the run refuses to migrate (ConfigError, exit 2:
who configured a record expects one); the default path only warns, so that a user without access to
/var/lib/proxlb-opt can still run `apply`. A line that cannot be written later is logged as an error and
the run goes on: stopping half-way through a plan would be worse than a missing line.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from proxlb_opt.adapters.files import open_shared
from proxlb_opt.errors import ConfigError

log = logging.getLogger("proxlb_opt.audit")

DEFAULT_AUDIT_LOG = "/var/lib/proxlb-opt/audit.jsonl"
#: Events that are not steps: the service's plan and round summaries, apply's summary.
NOT_STEPS = frozenset({"plan", "round", "summary"})


def default_audit_path(env: Mapping[str, str] | None = None) -> Path:
    """audit.jsonl in systemd's STATE_DIRECTORY (beside the service's state.json), else DEFAULT_AUDIT_LOG."""
    env = os.environ if env is None else env
    directory = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory) / "audit.jsonl" if directory else Path(DEFAULT_AUDIT_LOG)


@dataclass
class AuditLog:
    """Appends step events to `path` (None: off). `round` is set by the service before each round."""

    path: Path | None
    command: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    round: int | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    @classmethod
    def open(cls, configured: str | None, command: str) -> "AuditLog":
        """The audit log of a run about to migrate. `configured` is `optimizer.audit_log`: None for the
        default path, "" for off. Refuses (ConfigError) a configured file it cannot open; warns and records
        nothing when the default cannot be opened."""
        if configured == "":
            return cls(None, command)
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
            return cls(None, command)
        return cls(path, command)

    def line(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """The audit line of an event, or None for events that are not a step's."""
        kind = event.get("event")
        if kind in NOT_STEPS or "vmid" not in event:
            return None
        stamp = self.clock().astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"time": stamp, "run": self.run, "command": self.command, "round": self.round,
                "vmid": event["vmid"], "name": event.get("name"), "type": event.get("type"),
                "from": event.get("from"), "to": event.get("to"), "reason": event.get("reason"),
                "wave": event.get("wave"), "hop": event.get("hop"),
                "outcome": "started" if kind == "start" else kind, "upid": event.get("upid"),
                "message": event.get("message", ""), "seconds": event.get("seconds")}

    def record(self, event: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        entry = self.line(event)
        if entry is None:
            return
        data = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
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
            log.error("audit log %s: cannot record %s of %s (%s)", self.path, entry["outcome"], entry["vmid"],
                      getattr(exc, "strerror", None) or exc)

    def tee(self, downstream: Callable[[dict], None]) -> Callable[[dict], None]:
        """An emitter that records each event, then passes it on (the record comes first: it must not be
        lost to a printer that fails)."""
        def emit(event: dict) -> None:
            self.record(event)
            downstream(event)

        return emit
