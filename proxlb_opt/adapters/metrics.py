"""Prometheus metrics of the service: what the last round planned and did, totals since start, the lock.

`ServiceMetrics` reads the service's events (a round's `plan`, the apply steps, the `round` summary; see
service.py) into its own CollectorRegistry (never the global one: tests and several services in one
process stay apart), and exposes them over HTTP (`optimizer.metrics_listen`, off by default) and/or as a
node_exporter textfile (`optimizer.metrics_textfile`, written atomically at start and after each round).

Names follow Prometheus' conventions: the `proxlb_opt_` prefix, base units in the name (`_seconds`,
`_ratio` for fractions: a spread of 12.5 percentage points is 0.125), `_total` for counters. The README
("Running as a service") lists every metric with its labels.
"""

from __future__ import annotations

import logging
import math
import socket
import socketserver
import threading
import time
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, make_wsgi_app, write_to_textfile

from proxlb_opt import __version__

log = logging.getLogger("proxlb_opt.metrics")

PREFIX = "proxlb_opt"
#: Outcomes always present (at 0) so that a query never finds them missing; others appear when seen.
OUTCOMES = ("done", "failed", "skipped")


class ServiceMetrics:
    """The service's metrics; `observe` takes every service event, `begin_round` marks a round's start."""

    def __init__(self, clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.clock, self.monotonic = clock, monotonic
        self.registry = CollectorRegistry(auto_describe=True)
        r, p = self.registry, PREFIX
        Info(f"{p}_build", "proxlb-opt version", registry=r).info({"version": __version__})
        self.spread_before = Gauge(f"{p}_spread_before_ratio", "Spread of node load (most minus least loaded "
                                   "node) before the last round's plan, per balanced resource", ["resource"],
                                   registry=r)
        self.spread_after = Gauge(f"{p}_spread_after_ratio", "Spread of node load the last round's plan leads to, "
                                  "per balanced resource", ["resource"], registry=r)
        self.balance_before = Gauge(f"{p}_balance_spread_before_ratio", "The spread the planner minimizes (the "
                                    "method's resource, or the weighted mean with method multi), before the plan",
                                    registry=r)
        self.balance_after = Gauge(f"{p}_balance_spread_after_ratio", "The spread the planner minimizes, after "
                                   "the last round's plan", registry=r)
        self.bound = Gauge(f"{p}_balance_spread_lower_bound_ratio", "Proven lower bound on that spread within the "
                           "round's budget (NaN when the plan has none)", registry=r)
        self.planned_total = Counter(f"{p}_migrations_planned", "Migrations planned, summed over rounds "
                                     "(dry runs and planning-only rounds included)", registry=r)
        self.outcomes_total = Counter(f"{p}_migrations", "Migration steps by outcome, summed over rounds",
                                      ["outcome"], registry=r)
        self.rounds_total = Counter(f"{p}_rounds", "Rounds by result (ok, error)", ["result"], registry=r)
        self.refusals_total = Counter(f"{p}_lock_refusals", "Rounds skipped because another run held the lock",
                                      registry=r)
        self.last_status = Gauge(f"{p}_last_round_plan_status", "1 for the status of the last round's plan "
                                 "(optimal, feasible, balanced, greedy), absent before the first plan", ["status"],
                                 registry=r)
        self.last_planned = Gauge(f"{p}_last_round_migrations_planned", "Migrations the last round planned",
                                  registry=r)
        self.last_outcomes = Gauge(f"{p}_last_round_migrations", "Migration steps of the last round by outcome",
                                   ["outcome"], registry=r)
        self.last_error = Gauge(f"{p}_last_round_error", "1 when the last round ended with an error, else 0",
                                registry=r)
        self.last_applied = Gauge(f"{p}_last_round_applied", "1 when the last round applied its plan, 0 when it "
                                  "only planned (dry run, balancing.enable false, not the HA master, no moves)",
                                  registry=r)
        self.last_timestamp = Gauge(f"{p}_last_round_timestamp_seconds", "When the last round ended (Unix time)",
                                    registry=r)
        self.last_solve = Gauge(f"{p}_last_round_solve_seconds", "The last round's planner time: search and "
                                "ordering of the migrations", registry=r)
        self.last_apply = Gauge(f"{p}_last_round_apply_seconds", "Time the last round spent migrating (0 when "
                                "it only planned)", registry=r)
        self.last_duration = Gauge(f"{p}_last_round_duration_seconds", "The last round from start to end: "
                                   "reading, planning, migrating", registry=r)
        self.lock_held = Gauge(f"{p}_lock_held", "1 while this service holds the run lock (a round that may "
                               "migrate), else 0", registry=r)
        for outcome in OUTCOMES:
            self.outcomes_total.labels(outcome)
            self.last_outcomes.labels(outcome)
        for result in ("ok", "error"):
            self.rounds_total.labels(result)
        self.bound.set(math.nan)
        self._round: dict[str, Any] = self._new_round()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------- events

    def _new_round(self) -> dict[str, Any]:
        return {"started": self.monotonic(), "planned": 0, "outcomes": {}, "apply": False, "applying_since": None}

    def begin_round(self) -> None:
        self._round = self._new_round()

    def observe(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "plan":
            self._plan(event["result"], bool(event.get("apply")))
        elif kind == "round":
            self._end(event)
        elif kind != "start" and "vmid" in event:
            self._round["outcomes"][kind] = self._round["outcomes"].get(kind, 0) + 1
            self.outcomes_total.labels(kind).inc()

    def _plan(self, result: Any, apply: bool) -> None:
        steps = len(result.plan.steps)
        self._round.update(planned=steps, apply=apply, applying_since=self.monotonic() if apply else None)
        self.planned_total.inc(steps)
        for gauge, spreads in ((self.spread_before, result.spread_per_resource_before),
                               (self.spread_after, result.spread_per_resource_after)):
            gauge.clear()  # a reload may change the balanced resources
            for resource, pp in spreads.items():
                gauge.labels(resource).set(pp / 100)
        self.balance_before.set(result.spread_before / 100)
        self.balance_after.set(result.spread_after / 100)
        self.bound.set(math.nan if result.bound is None else result.bound / 100)
        self.last_solve.set(result.solve_seconds + result.sequence_seconds)
        self.last_status.clear()
        self.last_status.labels(result.status).set(1)

    def _end(self, event: dict[str, Any]) -> None:
        now = self.monotonic()
        current = self._round
        error = event.get("error") is not None
        self.rounds_total.labels("error" if error else "ok").inc()
        self.last_planned.set(current["planned"])
        self.last_outcomes.clear()
        for outcome in sorted(set(OUTCOMES) | set(current["outcomes"])):
            self.last_outcomes.labels(outcome).set(current["outcomes"].get(outcome, 0))
        self.last_error.set(1 if error else 0)
        self.last_applied.set(1 if current["apply"] else 0)
        since = current["applying_since"]
        self.last_apply.set(0.0 if since is None else now - since)
        self.last_duration.set(now - current["started"])
        self.last_timestamp.set(self.clock())

    def set_lock_held(self, held: bool) -> None:
        self.lock_held.set(1 if held else 0)

    def lock_refused(self) -> None:
        self.refusals_total.inc()

    # ------------------------------------------------------------------------------------------- export

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve /metrics on host:port in a background thread; the address bound (port 0: any free one)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("MetricsServer", (_ThreadingServer,), {"address_family": family})
        self._server = make_server(host, port, make_wsgi_app(self.registry), server_class=server_class,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="proxlb-opt metrics", daemon=True)
        self._thread.start()
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def write_textfile(self, path: str) -> None:
        """The node_exporter textfile, replaced atomically (written beside it, then renamed); a failure is a
        warning: the service goes on."""
        try:
            write_to_textfile(path, self.registry)
        except OSError as exc:
            log.warning("metrics textfile %s cannot be written (%s)", path, exc.strerror or exc)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds up the service's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the journal; they are not logged."""
