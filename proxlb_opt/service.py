"""Service mode (systemd, ProxLB's `service.daemon`): plan and apply on a schedule.

Each round evaluates the maintenance windows at the round's time, reads the live cluster, plans,
and applies the plan unless `migration_gate` says this process may not migrate: `balancing.enable`
is not true (ProxLB's default), or `service.enable_ha` is on and this node is not the PVE HA
manager master. Then the round plans, logs, and says why in one line. Errors of one round are
logged and the loop goes on. SIGHUP re-reads the config before the next round. `service.delay`
waits once before the first round, as in ProxLB. With `service.daemon: false` (or `--once`) one
round runs and the exit code is that round's.

SIGTERM/SIGINT (apply.Interrupt, handlers installed by `run_service`): between rounds the service
ends at once (exit 143/130). In a round, no migration starts any more from that moment (the executor
checks before
every start, planning included), the running ones are waited for up to `optimizer.interrupt_wait`,
the round's report is logged and the state file saved, and the service exits 143/130; a second
signal stops the waiting and the report names what still runs in PVE.

Between rounds the service remembers its migrations and where every guest was (`optimizer.state_file`,
history.py): a guest it moved for balance is not moved again for balance within `optimizer.cooldown`,
and a guest found elsewhere than the last round left it (moved by hand, or by PVE) stays where it was
put for that time; mandatory moves are never held back. A dry run reads the state but never writes it.

`emit` receives every event as a dict: a round's "plan" (with the PlanResult under "result" and
whether it will be applied under "apply"), the apply steps (apply.Executor's, "interrupt" among
them), and "round" at the end of each round with its counts, what may still run in PVE, the rules
left broken and the moves that repair them.

Who else may run, what is recorded and what is shown (adapters/operations.py): a second service on this host
refuses to start, each round that may migrate holds the run lock that `apply` holds too, every step
goes to the audit log, and the events feed the Prometheus metrics.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from proxlb_opt.adapters.proxmox import ProxmoxClient, collect_live, ha_master
from proxlb_opt.apply import ApplyReport, Executor, Interrupt, steps_from_plan
from proxlb_opt.config import Settings, load_settings
from proxlb_opt.errors import ApplyError, ConfigError, ProxlbOptError, StoppedBySignal
from proxlb_opt.history import History, MoveRecord
from proxlb_opt.limits import loads_json
from proxlb_opt.adapters.operations import ServiceWatch
from proxlb_opt.planner import PlanResult, make_plan
from proxlb_opt.report import plan_dict

log = logging.getLogger("proxlb_opt.service")


@dataclass
class Round:
    migrations: int = 0
    done: int = 0
    failed: int = 0
    unknown: int = 0  # outcome unknown: possibly still running in PVE
    error: ProxlbOptError | None = None
    gate: str | None = None  # why this round only planned (migration_gate), if it did
    result: PlanResult | None = None
    report: ApplyReport | None = None  # the apply report, when the round migrated


def local_node_name(hostname: str | None = None) -> str:
    """This machine's PVE node name: the host name up to the first dot, as PVE names its nodes."""
    return (hostname or socket.gethostname()).split(".", 1)[0]


def migration_gate(settings: Settings, client: ProxmoxClient | None = None, hostname: str | None = None) -> str | None:
    """None when this process may migrate; otherwise one line saying why it only plans.

    `balancing.enable` must be true (ProxLB's default is false). With `service.enable_ha`, this node must
    be the PVE HA manager master, so that copies installed on every node migrate from one place only.
    ProxLB compares the master with the full host name; here the short name is used, as PVE names nodes,
    so a host whose name is fully qualified still recognises itself.
    """
    if not settings.enable:
        return (f"{settings.source}: balancing.enable is not true (ProxLB's default is false): planning only, "
                f"nothing is migrated")
    if settings.enable_ha:
        if settings.api is None:
            return f"{settings.source}: service.enable_ha needs a proxmox_api section: planning only"
        local = local_node_name(hostname)
        master = ha_master(client or ProxmoxClient(settings.api))
        if master is None:
            return f"service.enable_ha: the cluster reports no HA manager master: planning only on {local}"
        if master.lower() != local.lower():
            return (f"service.enable_ha: this node ({local}) is not the HA manager master ({master}): planning "
                    f"only, {master} migrates")
    return None


def one_round(settings: Settings, dry_run: bool, emit: Callable[[dict], None], *, now: datetime | None = None,
              hostname: str | None = None, clock: Callable[[], float] = time.time,
              interrupt: Interrupt | None = None) -> Round:
    """One plan (and apply) of the live cluster; `now` (naive local time) decides the maintenance windows,
    `clock` (seconds since the epoch) the cooldowns; `interrupt` stops the apply (no new migration)."""
    outcome = Round()
    try:
        settings = settings.at(now or datetime.now())
        for node, window in settings.scheduled_maintenance:
            log.info("node %s is in maintenance by schedule (%s)", node, window)
        client = ProxmoxClient(settings.api)
        cluster = collect_live(settings, client)
        placement = {int(cluster.guest_vmid[g]): cluster.node_names[int(cluster.guest_node[g])]
                     for g in range(cluster.n_guests)}
        seconds = clock()
        history = load_history(settings.state_file).notice_manual_moves(placement, seconds)
        held = history.held(placement, seconds, settings.cooldown_seconds)
        for vmid, why in sorted(held.items()):
            log.info("%s stays: %s", vmid, why)
        result = make_plan(cluster, settings, held=held)
        outcome.result = result
        for warning in result.warnings:
            log.warning(warning)
        outcome.migrations = len(result.plan.steps)
        log.info("plan: %s, spread %.2f → %.2f pp, %d migrations in %d waves", result.status, result.spread_before,
                 result.spread_after, outcome.migrations, result.plan.waves)
        apply = not dry_run
        if apply:
            outcome.gate = migration_gate(settings, client, hostname)
            apply = outcome.gate is None
        emit({"event": "plan", "result": result, "apply": apply and bool(outcome.migrations)})  # the CLI prints it
        if outcome.gate is not None:
            log.info("%s", outcome.gate)
        if not apply or not outcome.migrations:
            if not dry_run:
                save_history(settings.state_file, history.after_round(placement, [], seconds,
                                                                      settings.cooldown_seconds))
            return outcome
        if result.violations:
            raise ApplyError("the greedy plan breaks rules; not applied")
        report = Executor(client, settings, emit=emit, interrupt=interrupt).run(steps_from_plan(plan_dict(result)))
        outcome.report = report
        outcome.done, outcome.failed, outcome.unknown = (report.count("done"), report.count("failed"),
                                                         report.count("unknown"))
        applied = [MoveRecord(r.step.vmid, r.step.source, r.step.target, seconds, r.step.reason)
                   for r in report.results if r.state == "done"]
        for move in applied:
            placement[move.vmid] = move.target
        # Saved whatever ended the apply (a signal included): the moves made are remembered.
        save_history(settings.state_file, history.after_round(placement, applied, seconds, settings.cooldown_seconds))
        for rule in report.broken:
            log.warning("rule broken after this round%s: %s: %s", "" if rule.new else " (already before)",
                        rule.rule, rule.what)
        error = report.as_error()
        if error is not None:
            raise error
    except ProxlbOptError as exc:
        log.error("%s", exc)
        outcome.error = exc
    return outcome


def load_history(path: str) -> History:
    """The service's state file, or an empty history when there is none or it cannot be read (said once)."""
    try:
        return History.from_dict(loads_json(Path(path).read_text(encoding="utf-8"), path, ValueError))
    except FileNotFoundError:
        return History()
    except (OSError, ValueError) as exc:
        log.warning("state file %s cannot be read (%s); starting without history", path, exc.__class__.__name__)
        return History()


def save_history(path: str, history: History) -> None:
    """Write the state file atomically (a temporary file, then a rename); a failure is a warning, not an error."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(json.dumps(history.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        log.warning("state file %s cannot be written (%s): cooldowns and hand-moved guests are not remembered",
                    path, exc.strerror or exc.__class__.__name__)


def _apply_log_level(settings: Settings) -> None:
    """`service.log_level`; a logger already at DEBUG (`-v`) stays there."""
    logger = logging.getLogger("proxlb_opt")
    if logger.level != logging.DEBUG:
        logger.setLevel(getattr(logging, settings.log_level, logging.INFO))


def run_service(config: Path, once: bool, dry_run: bool, emit: Callable[[dict], None], *,
                round_fn: Callable[..., Round] = one_round) -> Round:
    """The service loop, watched (adapters/operations.py): one instance per host (LockHeldError, exit 75, when another
    service holds the instance lock), a run lock for each round that may migrate (a round that finds it held
    is skipped with that error), the audit log, and metrics."""
    with ServiceWatch(load_settings(config), dry_run) as watch:
        return _run_rounds(config, once, dry_run, watch.emits(emit),
                           round_fn=watch.rounds(round_fn, refused=lambda error: Round(error=error)))


def _run_rounds(config: Path, once: bool, dry_run: bool, emit: Callable[[dict], None], *,
                round_fn: Callable[..., Round] = one_round) -> Round:
    """Rounds until stopped; the last round's outcome (its error is the exit code: 143/130 after a signal
    that stopped a round's apply). `round_fn(settings, dry_run, emit, interrupt=...)` runs one round."""
    interrupt = Interrupt()
    stop = interrupt.stop
    reload = threading.Event()
    signal.signal(signal.SIGTERM, interrupt.from_handler)
    signal.signal(signal.SIGINT, interrupt.from_handler)
    if hasattr(signal, "SIGHUP"):
        # Set from a helper thread, as the stop: a handler must not take a lock its own thread may hold.
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload.set, daemon=True).start())
    settings = load_settings(config)
    if settings.api is None:
        raise ConfigError(f"{config}: service mode needs a proxmox_api section")
    _apply_log_level(settings)
    if settings.delay_seconds:
        log.info("service.delay: first round in %d s", settings.delay_seconds)
        stop.wait(settings.delay_seconds)
        if stop.is_set():
            return _stopped(Round(), interrupt)
    while True:
        if reload.is_set():
            reload.clear()
            try:
                settings = load_settings(config)
                _apply_log_level(settings)
                log.info("configuration reloaded from %s", config)
            except ConfigError as exc:
                log.error("reload failed, keeping the previous configuration: %s", exc)
        outcome = round_fn(settings, dry_run, emit, interrupt=interrupt)
        emit(_round_event(outcome))
        if once or not settings.daemon or stop.is_set():
            return outcome
        log.info("next round in %d s", settings.schedule_seconds)
        stop.wait(settings.schedule_seconds)
        if stop.is_set():
            return _stopped(outcome, interrupt)


def _stopped(outcome: Round, interrupt: Interrupt) -> Round:
    """A signal between rounds: nothing runs, the service ends at once with 130/143 (the last round's own
    error, if it had one, is kept: it was logged and is the more useful exit code)."""
    if outcome.error is None:
        log.info("stopped by %s between rounds", interrupt.name)
        outcome.error = StoppedBySignal(interrupt.signum or signal.SIGTERM,
                                        f"stopped by {interrupt.name} between rounds")
    return outcome


def _round_event(outcome: Round) -> dict:
    """The "round" event: counts, and from the apply report what may still run in PVE and the broken rules."""
    event = {"event": "round", "migrations": outcome.migrations, "done": outcome.done, "failed": outcome.failed,
             "unknown": outcome.unknown, "error": None if outcome.error is None else str(outcome.error)}
    if outcome.report is not None:
        summary = outcome.report.summary()
        for key in ("still_running", "broken_rules", "repair", "stopped", "signal"):
            if key in summary:
                event[key] = summary[key]
    return event
