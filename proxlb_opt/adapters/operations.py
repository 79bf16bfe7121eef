"""What runs that may migrate share, and what a running service shows: the wiring of the lock, the audit
log and the metrics (adapters/lock.py, adapters/audit.py, adapters/metrics.py) into `apply` and `service`.

`apply` takes the run lock before it reads the cluster for its plan (`apply_lock`) and records its run,
its planned moves and every step in the audit log (`AuditLog.open(...)`, `.running(steps)`,
`.tee(printer)`). The service (`ServiceWatch`) holds its instance lock for its whole life, takes the run
lock for each round that may migrate, records every round that migrates (its plan, its steps, its end) in
the audit log, and feeds every event to its metrics. Dry runs and `plan` take no lock and record nothing:
they never migrate.

The paths and the metrics address are read when the service starts; a reload (SIGHUP) that changes them
says that a restart is needed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, ContextManager

from proxlb_opt.adapters.audit import AuditLog, secrets_of
from proxlb_opt.adapters.lock import RunLock, lock_path, service_lock_path
from proxlb_opt.config import Settings
from proxlb_opt.errors import LockHeldError

log = logging.getLogger("proxlb_opt.service")

Emit = Callable[[dict], None]


def apply_lock(settings: Settings) -> ContextManager:
    """The run lock of an `apply`; none when `balancing.enable` is off, since such a run only plans."""
    if not settings.enable:
        return contextlib.nullcontext()
    return RunLock(lock_path(settings.lock_file), "proxlb-opt apply").acquire()


def _started_with(settings: Settings) -> tuple:
    return settings.lock_file, settings.audit_log, settings.metrics_listen, settings.metrics_textfile


class ServiceWatch:
    """The service's instance lock, run locks, audit log and metrics, for the life of one service process.

    `emits(printer)` gives the emitter the service loop uses; `rounds(round_fn, refused)` wraps its round
    function so that each round that may migrate holds the run lock (`refused(error)` makes the round's
    outcome when another run holds it).
    """

    def __init__(self, settings: Settings, dry_run: bool):
        from proxlb_opt.adapters.metrics import ServiceMetrics  # prometheus_client: only the service needs it

        self.settings, self.dry_run = settings, dry_run
        self.metrics = ServiceMetrics()
        self.audit: AuditLog | None = None
        self.round = 0
        self._instance: RunLock | None = None
        self._warned_reload = False

    def __enter__(self) -> "ServiceWatch":
        s = self.settings
        if not self.dry_run:
            self._instance = RunLock(service_lock_path(lock_path(s.lock_file)), "proxlb-opt service").acquire()
        try:
            self.audit = (AuditLog(None, "service") if self.dry_run
                          else AuditLog.open(s.audit_log, "service", secrets_of(s)))
            if s.metrics_listen is not None:
                host, port = self.metrics.serve(*s.metrics_listen)
                shown = f"[{host}]" if ":" in host else host
                log.info("metrics on http://%s:%d/metrics", shown, port)
            if s.metrics_textfile:
                self.metrics.write_textfile(s.metrics_textfile)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.metrics.close()
        if self._instance is not None:
            self._instance.release()
            self._instance = None

    def emits(self, downstream: Emit) -> Emit:
        """Every event goes to the audit log and the metrics first, then to `downstream` (the printer)."""
        def emit(event: dict) -> None:
            if self.audit is not None:
                self._audit(event)
            self.metrics.observe(event)
            if event.get("event") == "round" and self.settings.metrics_textfile:
                self.metrics.write_textfile(self.settings.metrics_textfile)
            downstream(event)

        return emit

    def _audit(self, event: dict) -> None:
        """A round that migrates is a run of the audit log: its plan starts it, its summary ends it."""
        kind = event.get("event")
        if kind == "plan" and event.get("apply"):
            from proxlb_opt.apply import steps_from_plan
            from proxlb_opt.report import plan_dict

            self.audit.begin(steps_from_plan(plan_dict(event["result"])))
        elif kind == "round":
            self.audit.end(error=event.get("error"))
        else:
            self.audit.record(event)

    def rounds(self, round_fn: Callable[..., Any], refused: Callable[[LockHeldError], Any]) -> Callable[..., Any]:
        def watched(settings: Settings, dry_run: bool, emit: Emit, **kwargs: Any) -> Any:
            self.round += 1
            self._notice_reload(settings)
            if self.audit is not None:
                self.audit.round = self.round
            self.metrics.begin_round()
            if dry_run or not settings.enable:
                return round_fn(settings, dry_run, emit, **kwargs)  # plans only: no lock needed
            try:
                lock = RunLock(lock_path(self.settings.lock_file),
                               f"proxlb-opt service, round {self.round}").acquire()
            except LockHeldError as exc:
                # Skipped rather than waited for: the holder may be an apply waiting for its confirmation.
                log.warning("round %d skipped: %s", self.round, exc)
                self.metrics.lock_refused()
                return refused(exc)
            self.metrics.set_lock_held(True)
            try:
                return round_fn(settings, dry_run, emit, **kwargs)
            finally:
                lock.release()
                self.metrics.set_lock_held(False)

        return watched

    def _notice_reload(self, settings: Settings) -> None:
        if not self._warned_reload and _started_with(settings) != _started_with(self.settings):
            self._warned_reload = True
            log.warning("optimizer.lock_file, audit_log, metrics_listen and metrics_textfile are read at start: "
                        "restart the service for the new values")
