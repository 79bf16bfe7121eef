"""Service mode (systemd, ProxLB's `service.daemon`): plan and apply on a schedule.

Each round reads the live cluster, plans, and applies the plan when `balancing.enable` is on
(and not in dry-run). Errors of one round are logged and the loop goes on; SIGTERM/SIGINT end it
after the current step, SIGHUP re-reads the config before the next round. With
`service.daemon: false` (or `--once`) one round runs and the exit code is that round's.

`emit` receives every event as a dict: a round's "plan" (with the PlanResult under "result" and
whether it will be applied under "apply"), the apply steps (apply.Executor's), and "round" at
the end of each round with its counts.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from proxlb_opt.adapters.proxmox import ProxmoxClient, collect_cluster
from proxlb_opt.apply import Executor, steps_from_plan
from proxlb_opt.config import Settings, load_settings
from proxlb_opt.errors import ApplyError, ConfigError, ProxlbOptError
from proxlb_opt.planner import make_plan
from proxlb_opt.report import plan_dict

log = logging.getLogger("proxlb_opt.service")


@dataclass
class Round:
    migrations: int = 0
    done: int = 0
    failed: int = 0
    error: ProxlbOptError | None = None


def one_round(settings: Settings, dry_run: bool, emit: Callable[[dict], None]) -> Round:
    outcome = Round()
    try:
        result = make_plan(collect_cluster(settings.api, settings.read_guest_configs), settings)
        for warning in result.warnings:
            log.warning(warning)
        outcome.migrations = len(result.plan.steps)
        log.info("plan: %s, spread %.2f → %.2f pp, %d migrations in %d waves", result.status, result.spread_before,
                 result.spread_after, outcome.migrations, result.plan.waves)
        emit({"event": "plan", "result": result, "apply": not dry_run and settings.enable})  # for the CLI's printer
        if not outcome.migrations or dry_run or not settings.enable:
            return outcome
        if result.violations:
            raise ApplyError("the greedy plan breaks rules; not applied")
        report = Executor(ProxmoxClient(settings.api), settings, emit=emit).run(steps_from_plan(plan_dict(result)))
        outcome.done, outcome.failed = report.count("done"), report.count("failed")
        if outcome.failed:
            raise ApplyError(f"{outcome.failed} migration(s) failed")
    except ProxlbOptError as exc:
        log.error("%s", exc)
        outcome.error = exc
    return outcome


def run_service(config: Path, once: bool, dry_run: bool, emit: Callable[[dict], None]) -> Round:
    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: reload.set())
    settings = load_settings(config)
    if settings.api is None:
        raise ConfigError(f"{config}: service mode needs a proxmox_api section")
    while True:
        if reload.is_set():
            reload.clear()
            try:
                settings = load_settings(config)
                log.info("configuration reloaded from %s", config)
            except ConfigError as exc:
                log.error("reload failed, keeping the previous configuration: %s", exc)
        outcome = one_round(settings, dry_run, emit)
        emit({"event": "round", "migrations": outcome.migrations, "done": outcome.done, "failed": outcome.failed,
              "error": None if outcome.error is None else str(outcome.error)})
        if once or not settings.daemon or stop.is_set():
            return outcome
        log.info("next round in %d s", settings.schedule_seconds)
        stop.wait(settings.schedule_seconds)
        if stop.is_set():
            return outcome
